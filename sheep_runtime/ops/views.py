"""What ops hands back to the API: records joined with live kernel state."""

from __future__ import annotations

from dataclasses import dataclass

from sheep_runtime.model import Attachment, Container, LinkState, Network


@dataclass(frozen=True)
class AttachmentView:
    """An attachment with its network's name and the host link's state."""

    attachment: Attachment
    network_name: str
    link_state: LinkState


@dataclass(frozen=True)
class ContainerView:
    """A container with its attachments in attach order."""

    container: Container
    attachments: tuple[AttachmentView, ...]
    log_path: str
    restarting: bool = False  # exited, its restart policy's delay running


@dataclass(frozen=True)
class NetworkView:
    """A network with its lease figures and attached containers."""

    network: Network
    leases_allocated: int
    leases_capacity: int
    containers: tuple[str, ...]
    leases6_allocated: int = 0
