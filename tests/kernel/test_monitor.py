"""Kernel tests of the netlink event monitor, each inside its own throwaway sandbox netns.

The monitor runs on a loop in a thread that joined the sandbox; the outside actions are
real `ip` commands run with `nsenter --net=<sandbox>`. Nothing touches the root netns;
the sandbox (and every link in it) goes away at teardown, whatever happened.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Interface
from pathlib import Path
from typing import TypeVar

import pytest
import uvloop

from sheep_runtime.model import AddressEvent, Link, LinkEvent, Resync
from sheep_runtime.netlink import NetlinkMonitor, create_pinned_netns, run_in_netns
from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink.monitor import NO_BRIDGE_PORT_MESSAGES
from sheep_runtime.netlink.raw import subscribe
from tests.kernel.conftest import NlRun

pytestmark = pytest.mark.kernel

T = TypeVar("T")
AnyEvent = LinkEvent | AddressEvent | Resync


def _ip_sync(netns: Path, *argv: str) -> None:
    done = subprocess.run(["nsenter", f"--net={netns}", "ip", *argv],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ip {' '.join(argv)}: {done.stderr}"


async def _ip(netns: Path, *argv: str) -> None:
    """Run `ip` in `netns` without blocking the loop (works on asyncio and uvloop)."""
    await asyncio.to_thread(_ip_sync, netns, *argv)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class Recorder:
    """The handler: records every event; `wait_for` finds one by predicate."""

    def __init__(self) -> None:
        self.events: list[AnyEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: AnyEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def mark(self) -> int:
        return len(self.events)

    async def wait_for(self, pred: Callable[[AnyEvent], bool], *, since: int = 0,
                       timeout: float = 2.0) -> AnyEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[since:]:
                    if pred(event):
                        return event
                since = len(self.events)
                self._changed.clear()
                await self._changed.wait()

    async def link(self, name: str, *, since: int = 0, action: str = "new",
                   check: Callable[[Link], bool] = lambda link: True,
                   timeout: float = 2.0) -> LinkEvent:
        def pred(e: AnyEvent) -> bool:
            return (isinstance(e, LinkEvent) and e.link.name == name and e.action == action
                    and check(e.link))

        event = await self.wait_for(pred, since=since, timeout=timeout)
        assert isinstance(event, LinkEvent)
        return event


@contextlib.asynccontextmanager
async def _monitoring(monitor: NetlinkMonitor, handler: Callable[[AnyEvent], Awaitable[None]],
                      recorder: Recorder) -> AsyncIterator[asyncio.Task[None]]:
    """Run the monitor as a task until the block ends; its failure fails the test."""
    task = asyncio.create_task(monitor.run(handler), name="netlink-monitor")
    try:
        await recorder.wait_for(lambda e: isinstance(e, Resync) and e.reason == "start")
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _run_on_uvloop(netns: Path, fn: Callable[[], Awaitable[T]]) -> T:
    def body() -> T:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            assert isinstance(runner.get_loop(), uvloop.Loop)
            return runner.run(fn())  # type: ignore[arg-type]

    return run_in_netns(netns, body)


def test_start_resync_lists_links_and_addresses(nl_run: NlRun, nl_sandbox: Path) -> None:
    _ip_sync(nl_sandbox, "link", "add", "mtbr0", "type", "bridge")
    _ip_sync(nl_sandbox, "addr", "add", "10.98.0.1/24", "dev", "mtbr0")
    _ip_sync(nl_sandbox, "link", "add", "mva", "type", "veth", "peer", "name", "mvb")
    _ip_sync(nl_sandbox, "link", "set", "mva", "master", "mtbr0", "up")

    async def body() -> None:
        fds = _fd_count()
        recorder = Recorder()
        monitor = NetlinkMonitor()
        async with _monitoring(monitor, recorder, recorder):
            first = recorder.events[0]
            assert isinstance(first, Resync) and first.reason == "start"
            links = {link.name: link for link in first.links}
            assert set(links) == {"lo", "mtbr0", "mva", "mvb"}
            bridge = links["mtbr0"]
            assert (bridge.kind, bridge.master) == ("bridge", None)
            assert (links["mva"].kind, links["mva"].master, links["mva"].up) == (
                "veth", bridge.index, True)
            assert (links["mvb"].master, links["mvb"].up) == (None, False)
            assert first.addresses == ((bridge.index, IPv4Interface("10.98.0.1/24")),)
            assert monitor.stats.rcvbuf >= 4 << 20  # SO_RCVBUFFORCE as root
        assert _fd_count() == fds  # both sockets closed on cancellation

    nl_run(body)


def test_handler_error_ends_run_and_closes_sockets(nl_run: NlRun) -> None:
    class Boom(Exception):
        pass

    async def handler(event: AnyEvent) -> None:
        raise Boom

    async def body() -> None:
        fds = _fd_count()
        with pytest.raises(Boom):
            await asyncio.wait_for(NetlinkMonitor().run(handler), 2)
        assert _fd_count() == fds

    nl_run(body)


def test_links_the_handler_ignores_are_counted_not_handled(nl_run: NlRun,
                                                           nl_sandbox: Path) -> None:
    async def body() -> None:
        recorder, skipped = Recorder(), collections.Counter[str]()
        monitor = NetlinkMonitor(skip=lambda name: name.startswith("mvskip"),
                                 on_skip=lambda kind: skipped.update([kind]))
        async with _monitoring(monitor, recorder, recorder):
            await _ip(nl_sandbox, "link", "add", "mvskip0", "type", "veth", "peer", "name",
                      "mvkeep0")
            await recorder.link("mvkeep0")
            await _ip(nl_sandbox, "link", "del", "mvkeep0")
            await recorder.link("mvkeep0", action="del")
        assert [e.link.name for e in recorder.events if isinstance(e, LinkEvent)] == [
            "mvkeep0", "mvkeep0"]
        assert skipped["link.new"] >= 1 and skipped["link.del"] == 1

    nl_run(body)


def test_the_monitor_socket_drops_bridge_port_messages_in_the_kernel(
        nl_run: NlRun, nl_sandbox: Path) -> None:
    groups = (c.RTNLGRP_LINK, c.RTNLGRP_IPV4_IFADDR)

    async def body() -> None:
        with (subscribe(socket.NETLINK_ROUTE, groups, rcvbuf=1 << 20) as plain,
              subscribe(socket.NETLINK_ROUTE, groups, rcvbuf=1 << 20,
                        program=NO_BRIDGE_PORT_MESSAGES) as filtered):
            for argv in (("link", "add", "mtbr0", "type", "bridge"),
                         ("link", "add", "mva", "type", "veth", "peer", "name", "mvb"),
                         ("link", "set", "mva", "master", "mtbr0", "up"),
                         ("addr", "add", "10.98.0.1/24", "dev", "mtbr0"),
                         ("link", "del", "mva")):
                await _ip(nl_sandbox, *argv)
            seen = {sock: collections.Counter(_families(sock)) for sock in (plain, filtered)}
        assert seen[plain][socket.AF_BRIDGE] > 0
        assert seen[filtered] == seen[plain] - collections.Counter(
            {socket.AF_BRIDGE: seen[plain][socket.AF_BRIDGE]})

    nl_run(body)


def _families(sock: socket.socket) -> list[int]:
    """The family byte of every message queued on `sock` (it is drained)."""
    buf, found = bytearray(1 << 17), []
    while True:
        try:
            size = sock.recv_into(buf)
        except BlockingIOError:
            return found
        found += [buf[offset] for _, _, _, offset, _ in c.headers(buf, size)]


async def _link_and_address_scenario(netns: Path) -> None:
    recorder = Recorder()
    measured: list[tuple[str, float]] = []
    monitor = NetlinkMonitor(on_event=lambda kind, lag: measured.append((kind, lag)))
    async with _monitoring(monitor, recorder, recorder):
        await _ip(netns, "link", "add", "mtbr0", "type", "bridge")
        bridge = (await recorder.link("mtbr0", check=lambda li: li.kind == "bridge")).link
        await _ip(netns, "link", "add", "mva", "type", "veth", "peer", "name", "mvb")
        veth = (await recorder.link("mva", check=lambda li: li.kind == "veth")).link
        assert veth.master is None
        await recorder.link("mvb", check=lambda li: li.kind == "veth")

        await _ip(netns, "link", "set", "mva", "master", "mtbr0")
        await recorder.link("mva", check=lambda li: li.master == bridge.index)
        mark = recorder.mark()
        await _ip(netns, "link", "set", "mva", "nomaster")
        await recorder.link("mva", since=mark, check=lambda li: li.master is None)
        # The bridge's own AF_BRIDGE RTM_DELLINK for its leaving port is not a deletion.
        assert not [e for e in recorder.events[mark:]
                    if isinstance(e, LinkEvent) and e.action == "del"]

        await _ip(netns, "link", "set", "mva", "up")
        await recorder.link("mva", check=lambda li: li.up)
        mark = recorder.mark()
        await _ip(netns, "link", "set", "mva", "down")
        down = await recorder.link("mva", since=mark, check=lambda li: not li.up)
        assert down.link.operstate == "DOWN"

        gateway = IPv4Interface("10.98.0.1/24")
        await _ip(netns, "addr", "add", str(gateway), "dev", "mtbr0")
        added = await recorder.wait_for(lambda e: isinstance(e, AddressEvent))
        assert isinstance(added, AddressEvent)
        assert (added.action, added.index, added.address) == ("new", bridge.index, gateway)
        await _ip(netns, "addr", "flush", "dev", "mtbr0")
        removed = await recorder.wait_for(
            lambda e: isinstance(e, AddressEvent) and e.action == "del")
        assert isinstance(removed, AddressEvent)
        assert (removed.index, removed.address) == (bridge.index, gateway)

        started = time.monotonic()
        await _ip(netns, "link", "del", "mva")
        gone = await recorder.link("mva", action="del", timeout=1.0)
        assert (gone.link.index, gone.moved) == (veth.index, False)
        assert gone.received_at - started < 1.0
        await recorder.link("mvb", action="del", timeout=1.0)  # its peer goes with it
    assert monitor.stats.events["link.del"] == 2
    assert monitor.stats.events["address.new"] == monitor.stats.events["address.del"] == 1
    assert monitor.stats.resyncs == 0
    assert len(measured) == sum(monitor.stats.events.values()) == len(recorder.events) - 1
    assert all(0 <= lag < 0.5 for _, lag in measured)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_link_and_address_events(loop: str, nl_run: NlRun, nl_sandbox: Path) -> None:
    if loop == "uvloop":
        _run_on_uvloop(nl_sandbox, lambda: _link_and_address_scenario(nl_sandbox))
    else:
        nl_run(lambda: _link_and_address_scenario(nl_sandbox))


def test_move_to_another_netns_is_a_del_tagged_moved(
    nl_run: NlRun, nl_sandbox: Path, nl_netns_dir: Path
) -> None:
    other = nl_netns_dir / "other"  # removed by the fixture, with whatever moved into it
    create_pinned_netns(other)

    async def body() -> None:
        recorder = Recorder()
        async with _monitoring(NetlinkMonitor(), recorder, recorder):
            await _ip(nl_sandbox, "link", "add", "mva", "type", "veth", "peer", "name", "mvb")
            peer = await recorder.link("mvb")
            mark = recorder.mark()
            await _ip(nl_sandbox, "link", "set", "mvb", "netns", str(other))
            moved = await recorder.link("mvb", action="del", since=mark)
            assert (moved.link.index, moved.moved) == (peer.link.index, True)
            _ip_sync(other, "link", "show", "mvb")  # it lives on in the target netns
            _ip_sync(nl_sandbox, "link", "show", "mva")  # and its peer here
            await _ip(nl_sandbox, "link", "del", "mva")
            deleted = await recorder.link("mva", action="del", since=mark)
            assert not deleted.moved

    nl_run(body)


def _batch(tmp: Path, name: str, lines: list[str]) -> Path:
    path = tmp / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


async def _heartbeat(gaps: list[float], period: float = 0.002) -> None:
    last = time.monotonic()
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


def test_burst_of_1000_link_events_is_absorbed(
    nl_run: NlRun, nl_sandbox: Path, tmp_path: Path
) -> None:
    pairs = 250
    create = _batch(tmp_path, "create", [f"link add mb{i}a type veth peer name mb{i}b"
                                         for i in range(pairs)])
    delete = _batch(tmp_path, "delete", [f"link del mb{i}a" for i in range(pairs)])
    names = {f"mb{i}{end}" for i in range(pairs) for end in "ab"}

    async def body() -> None:
        recorder = Recorder()
        monitor = NetlinkMonitor()
        gaps: list[float] = []
        async with _monitoring(monitor, recorder, recorder):
            beat = asyncio.create_task(_heartbeat(gaps))
            try:
                await _ip(nl_sandbox, "-batch", str(create))
                await _ip(nl_sandbox, "-batch", str(delete))

                def settled(_: AnyEvent) -> bool:
                    dels = {e.link.name for e in recorder.events
                            if isinstance(e, LinkEvent) and e.action == "del"}
                    return names <= dels or any(
                        isinstance(e, Resync) and e.reason == "overflow"
                        and not names & {link.name for link in e.links}
                        for e in recorder.events)

                await recorder.wait_for(settled, timeout=10)
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
        stats = monitor.stats
        assert stats.events["link.new"] + stats.events["link.del"] >= 1000
        assert stats.resyncs == 0  # a 4 MiB buffer holds the whole burst
        assert max(gaps) < 0.1, f"loop stalled {max(gaps) * 1e3:.1f} ms"
        assert stats.max_lag < 0.5

    nl_run(body)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_overflow_resyncs_and_keeps_delivering(
    loop: str, nl_run: NlRun, nl_sandbox: Path, tmp_path: Path
) -> None:
    pairs = 100
    create = _batch(tmp_path, "create", [f"link add mo{i}a type veth peer name mo{i}b"
                                         for i in range(pairs)])

    async def body() -> None:
        recorder = Recorder()
        gate = asyncio.Event()
        resyncs: list[None] = []

        async def blocking(event: AnyEvent) -> None:
            await recorder(event)
            if isinstance(event, LinkEvent) and event.link.name == "mtgate":
                await gate.wait()  # a stuck handler: the reader fills, then the kernel

        monitor = NetlinkMonitor(rcvbuf=4096, max_pending=8,
                                 on_resync=lambda: resyncs.append(None))
        async with _monitoring(monitor, blocking, recorder):
            await _ip(nl_sandbox, "link", "add", "mtgate", "type", "bridge")
            await recorder.link("mtgate")
            await _ip(nl_sandbox, "-batch", str(create))
            gate.set()
            snapshot = await recorder.wait_for(
                lambda e: isinstance(e, Resync) and e.reason == "overflow")
            assert isinstance(snapshot, Resync)
            created = {f"mo{i}{end}" for i in range(pairs) for end in "ab"}
            assert created <= {link.name for link in snapshot.links}
            mark = recorder.mark()
            await _ip(nl_sandbox, "link", "add", "mtafter", "type", "bridge")
            await recorder.link("mtafter", since=mark, check=lambda li: li.kind == "bridge")
        assert monitor.stats.resyncs == len(resyncs) >= 1
        assert monitor.stats.discarded > 0

    if loop == "uvloop":  # the daemon's loop: ENOBUFS must not cost the reader
        _run_on_uvloop(nl_sandbox, body)
    else:
        nl_run(body)
