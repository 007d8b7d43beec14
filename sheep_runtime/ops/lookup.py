"""Finding containers and showing them: references, per-container locks, views joined
with the live link state. The read-only half of the container service."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from sheep_runtime.config import Config
from sheep_runtime.errors import InvalidArgument, NotFound
from sheep_runtime.model import Attachment, Container, ContainerState, LinkState
from sheep_runtime.names import HOST_VETH_PREFIX
from sheep_runtime.ops.backends import Links, Store
from sheep_runtime.ops.locks import KeyedLocks
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.views import AttachmentView, ContainerView

#: The filters ListContainers understands.
LIST_FILTERS = frozenset({"all", "state", "name", "network"})


class ContainerLookup:
    """Containers by reference, their locks and their views."""

    def __init__(self, *, config: Config, store: Store, networks: NetworkRegistry,
                 links: Links) -> None:
        self._config = config
        self._store = store
        self._networks = networks
        self._links = links
        self._locks = KeyedLocks()

    def resolve(self, ref: str) -> Container:
        """A container by full id, name or unique id prefix."""
        if not ref:
            raise InvalidArgument("a container id or name is required", field="id")
        # CNI sandboxes belong to their container engine: the API never reaches them.
        found = [c for c in self._store.find_containers(ref) if c.owner == "sheep"]
        if not found:
            raise NotFound(f"no container with id or name {ref!r}", reason="CONTAINER_NOT_FOUND",
                           resource_type="container", resource_name=ref)
        if len(found) > 1:
            raise InvalidArgument(f"id prefix {ref!r} is ambiguous: it matches "
                                  + ", ".join(f"{c.id[:12]} ({c.name})" for c in found),
                                  field="id")
        return found[0]

    def locked(self, container_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the container's lock: its operations and repairs are serialized."""
        return self._locks.hold(container_id)

    def container_dir(self, container_id: str) -> Path:
        return self._config.containers_dir / container_id

    def _get(self, cid: str) -> Container:
        c = self._store.container(cid)
        if c is None:
            raise NotFound(f"container {cid[:12]} was removed", reason="CONTAINER_NOT_FOUND",
                           resource_type="container", resource_name=cid)
        return c

    async def view(self, c: Container, *, links: Mapping[str, bool] | None = None
                   ) -> ContainerView:
        """The container with its attachments and their live link state."""
        attachments = self._store.attachments(container_id=c.id)
        if links is None:
            links = await self._link_states(attachments)
        views = []
        for a in attachments:
            up = links.get(a.host_interface)
            state = LinkState.MISSING if up is None else (LinkState.UP if up else LinkState.DOWN)
            views.append(AttachmentView(attachment=a, link_state=state,
                                        network_name=self._networks.get_by_id(a.network_id).name))
        return ContainerView(container=c, attachments=tuple(views),
                             log_path=str(self.container_dir(c.id) / "log"),
                             restarting=self.restart_pending(c.id))

    def restart_pending(self, container_id: str) -> bool:
        """True while an exited container waits for its restart."""
        return False

    async def _link_states(self, attachments: list[Attachment]) -> dict[str, bool]:
        infos = [await self._links.get_link(a.host_interface) for a in attachments]
        return {i.name: i.up for i in infos if i is not None}

    async def inspect(self, ref: str) -> ContainerView:
        return await self.view(self.resolve(ref))

    async def list_containers(self, filters: Mapping[str, str]) -> list[ContainerView]:
        """Running containers, or those the filters select (`all`, `state`, `name`,
        `network`); an unknown filter is InvalidArgument."""
        unknown = sorted(set(filters) - LIST_FILTERS)
        if unknown:
            raise InvalidArgument(f"unknown filter {unknown[0][:64]!r}: use "
                                  + ", ".join(sorted(LIST_FILTERS)), field="filters")
        show_all = filters.get("all", "").lower() in ("1", "true", "yes")
        links = {link.name: link.up for link in await self._links.list_links(HOST_VETH_PREFIX)}
        out = []
        for c in self._store.containers():
            if c.owner != "sheep":
                continue
            if not show_all and "state" not in filters and c.state != ContainerState.RUNNING:
                continue
            if "state" in filters and c.state.value != filters["state"].lower():
                continue
            if "name" in filters and c.name != filters["name"]:
                continue
            v = await self.view(c, links=links)
            if "network" in filters and filters["network"] not in (
                    a.network_name for a in v.attachments):
                continue
            out.append(v)
        return out
