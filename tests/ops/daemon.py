"""One sheepd of the fast tier: the real ops layer and gRPC API over the in-memory
fakes and a real SQLite store in a temp dir. Needs no privilege, sends no packet."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import grpc
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

from sheep_runtime.api.server import build_server
from sheep_runtime.api.servicer import RuntimeServicer
from sheep_runtime.config import Config
from sheep_runtime.metrics import Metrics
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.runtime import Runtime, build_runtime
from tests.fakes import FaultyStore, Machine


class Daemon:
    """One sheepd over a `Machine`: start, restart (the machine stays), stop."""

    def __init__(self, state: Path, socket_dir: Path) -> None:
        self.machine = Machine()
        self.config = Config(
            state_dir=state, run_dir=state / "run", socket=socket_dir / "sheep.sock",
            listen="", metrics_addr="", log_level="info", log_format="text",
            default_bridge="sheep0", default_subnet=IPv4Network("10.20.0.0/16"))
        for d in (self.config.containers_dir, self.config.netns_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._rt: Runtime | None = None
        self._store: FaultyStore | None = None
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.RuntimeServiceStub | None = None

    @property
    def rt(self) -> Runtime:
        assert self._rt is not None, "daemon not started"
        return self._rt

    @property
    def store(self) -> FaultyStore:
        assert self._store is not None, "daemon not started"
        return self._store

    @property
    def api(self) -> pb_grpc.RuntimeServiceStub:
        assert self._stub is not None, "daemon not started"
        return self._stub

    async def start(self) -> None:
        backends, self._store = self.machine.backends(self.config.db_path)
        self._rt = await build_runtime(self.config, backends, metrics=Metrics(),
                                       events=EventBus())
        await self._rt.start()
        self._server, _ = await build_server(RuntimeServicer(runtime=self._rt),
                                             socket=self.config.socket,
                                             events=self._rt.events)
        self._channel = grpc.aio.insecure_channel(f"unix:{self.config.socket}")
        self._stub = pb_grpc.RuntimeServiceStub(self._channel)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._server is not None:
            await self._server.stop(0)
        if self._rt is not None:
            await self._rt.close()
        if self._store is not None:
            self._store.inner.close()
        self._rt = self._store = self._server = self._channel = self._stub = None

    async def restart(self) -> None:
        """A new daemon on the same state dir and machine (containers keep running)."""
        await self.stop()
        await self.start()

    async def snapshot(self) -> dict[str, Any]:
        """Everything a leak would show in: kernel model, firewall table, processes,
        records, dirs on disk and the pools' lease counts (through the API)."""
        m, inner = self.machine, self.store.inner
        nets = await self.api.ListNetworks(pb.ListNetworksRequest())
        return {
            "kernel": m.kernel.snapshot(),
            "firewall": m.firewall.state,
            "processes": m.processes.live(),
            "containers": {c.id: c for c in inner.containers()},
            "attachments": {f"{a.container_id}/{a.network_id}": a
                            for a in inner.attachments()},
            "networks": {n.name: n for n in inner.networks()},
            "leases": {n.name: n.leases_allocated for n in nets.networks},
            "container_dirs": sorted(p.name for p in self.config.containers_dir.iterdir()),
            "pins": sorted(p.name for p in self.config.netns_dir.iterdir()),
        }


@asynccontextmanager
async def running_daemon(state: Path) -> AsyncIterator[Daemon]:
    """A started daemon over a fresh machine, its state under `state`."""
    # A short directory for the socket: sun_path holds 108 bytes.
    socket_dir = Path(tempfile.mkdtemp(prefix="shp", dir="/tmp"))
    d = Daemon(state, socket_dir)
    try:
        await d.start()
        yield d
    finally:
        await d.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
