"""What the CNI front door needs of the ops layer: `ops.cni.CniService`, seen through
a Protocol so the protocol tests can drive the server over a fake."""

from __future__ import annotations

from typing import Protocol

from sheep_runtime.ops.cni import CniAdd, CniKey, CniResult


class CniOps(Protocol):
    """CNI attachments keyed by (container id, ifname); errors are SheepError kinds."""

    async def add(self, req: CniAdd) -> CniResult:
        """Attach, or return the same result for a repeat with the same netns."""

    async def delete(self, key: CniKey) -> None:
        """Release everything of `key`; unknown keys and gone netns are fine."""

    async def check(self, key: CniKey) -> CniResult:
        """The record, verified against the kernel."""

    async def gc(self, network: str, valid: set[CniKey]) -> list[CniKey]:
        """Remove the attachments of `network` not in `valid`; return them."""

    def ready(self) -> bool:
        """Whether an ADD can be served now."""
