"""Applies the sheep table through libnftables (our ctypes binding, libnft.py), one
atomic transaction per change.

libnftables calls block and a context is not thread-safe, so every call runs on one
dedicated worker thread (ctypes releases the GIL meanwhile). That thread is started
from the thread calling `start`, whose netns it inherits, and the context opens its
netlink socket there: the firewall keeps acting on the daemon's netns even if other
threads join other namespaces later.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sheep_runtime.errors import FirewallError
from sheep_runtime.firewall import libnft
from sheep_runtime.firewall.elements import build_port_update
from sheep_runtime.firewall.rules import (
    FAMILY,
    FirewallState,
    Json,
    PortRule,
    build_ruleset,
    shape,
)

T = TypeVar("T")


class Firewall:
    """Owner of the `inet <table>` nftables table."""

    def __init__(self, *, table: str = "sheep") -> None:
        self.table = table
        self._executor: ThreadPoolExecutor | None = None
        self._ctx: libnft.Context | None = None
        self._thread_id: int | None = None

    @property
    def thread_id(self) -> int | None:
        """Kernel thread id of the worker: nftables notifications of our own commits
        carry it (NFTA_GEN_PROC_PID), which lets the monitor ignore them."""
        return self._thread_id

    async def start(self) -> None:
        """Start the worker thread and open the libnftables context in it."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sheep-nft")

        def open_context() -> int:
            self._ctx = libnft.Context()
            return threading.get_native_id()

        try:
            self._thread_id = await self._call(open_context)
        except OSError as exc:  # libnftables.so.1 missing
            await self.close()
            raise FirewallError(f"open libnftables: {exc}") from exc

    async def apply(self, state: FirewallState) -> None:
        """Replace our table with `state` in one transaction. On failure the previous
        table stays as it was and FirewallError carries nft's message."""
        await self._run(build_ruleset(state, table=self.table), what="apply")

    async def update_ports(self, *, add: Sequence[PortRule] = (),
                           remove: Sequence[PortRule] = ()) -> None:
        """Delete the map elements of `remove` and add those of `add` in one
        transaction, leaving the rest of the table alone. Deleting what is gone is no
        error; a missing table or map, or an element clash (a key taken with other
        data, an overlap), fails it all with FirewallError and changes nothing."""
        commands = build_port_update(add=add, remove=remove, table=self.table)
        if commands:
            await self._run(commands, what="update ports of")

    async def is_intact(self, state: FirewallState) -> bool:
        """True if our table has the chains (with hooks, priorities and policies), rule
        counts and element counts `state` would give it."""
        rc, output, _ = await self._cmd([{"list": {"table": self._table()}}])
        if rc != 0 or not isinstance(output, dict):
            return False
        current = shape(output.get("nftables", ()))
        return current == shape(build_ruleset(state, table=self.table))

    async def close(self) -> None:
        """Free the context and stop the worker thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def free() -> None:
            ctx, self._ctx = self._ctx, None
            if ctx is not None:  # freed on the thread that used it
                ctx.free()

        try:
            await asyncio.get_running_loop().run_in_executor(executor, free)
        finally:
            await asyncio.to_thread(executor.shutdown, wait=True)

    def _table(self) -> Json:
        return {"family": FAMILY, "name": self.table}

    async def _run(self, commands: list[Json], *, what: str) -> None:
        rc, _, error = await self._cmd(commands)
        if rc != 0:
            message = " ".join(str(error).split()) or f"exit code {rc}"
            raise FirewallError(f"{what} nft table {FAMILY} {self.table}: {message}")

    async def _cmd(self, commands: list[Json]) -> tuple[int, Any, str]:
        def run() -> tuple[int, Any, str]:
            if self._ctx is None:
                raise FirewallError("firewall is not started")
            r = self._ctx.run_json({"nftables": commands})
            return r.rc, r.output, r.error
        return await self._call(run)

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise FirewallError("firewall is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
