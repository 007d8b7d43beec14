"""sheepd's CNI endpoint in process, over a fake of the ops service, driven by the
installed plugin: the protocol end to end (results, error codes, locking, a plugin
killed mid-call, the DEL queue drained before serving). No root needed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sheep_runtime.cni.plugin import QUEUE_DIR
from sheep_runtime.cni.server import CniServer, start_cni_server
from sheep_runtime.errors import FailedPrecondition
from sheep_runtime.ops.cni import CniKey
from tests.cni.driver import Cni, Outcome
from tests.cni.fake import FakeCni

NETNS = "/run/netns/cni-test-ctr"
HANG_GUARD = 10.0  # seconds: only against hangs


@pytest.fixture
def cni(plugin: Path, tmp_path: Path) -> Cni:
    return Cni(plugin, {"type": "sheep", "socket": str(tmp_path / "run" / "cni.sock"),
                        "stateDir": str(tmp_path / "state")})


@pytest.fixture
def fake() -> FakeCni:
    return FakeCni()


@pytest.fixture
async def server(fake: FakeCni, tmp_path: Path) -> AsyncIterator[CniServer]:
    s = await start_cni_server(fake, socket=tmp_path / "run" / "cni.sock",
                               state_dir=tmp_path / "state")
    yield s
    await s.close(grace=HANG_GUARD)


async def run(fn: Callable[..., Outcome], *args: object, **kw: object) -> Outcome:
    """A plugin call off the loop the server runs on."""
    return await asyncio.to_thread(fn, *args, **kw)


async def until(cond: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while not cond():
            await asyncio.sleep(0.005)


async def test_add_check_del_round_trip(server: CniServer, fake: FakeCni, cni: Cni) -> None:
    out = await run(cni.add, "ctr1", NETNS)
    assert (out.status, out.stderr) == (0, "")
    r = fake.records[CniKey("ctr1", "eth0")]
    assert out.json == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": r.host_interface, "mac": r.host_mac},
                       {"name": "eth0", "mac": r.container_mac, "sandbox": NETNS}],
        "ips": [{"address": str(r.address), "gateway": "10.20.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.20.0.1"}], "dns": {}}
    again = await run(cni.add, "ctr1", NETNS)
    assert (again.status, again.json) == (0, out.json)
    check = await run(cni.check, "ctr1", NETNS)
    assert (check.status, check.stdout) == (0, "")
    for _ in range(2):
        gone = await run(cni.delete, "ctr1", NETNS)
        assert (gone.status, gone.stdout) == (0, "")
    assert fake.records == {}
    assert (await run(cni.delete, "never-added", NETNS)).status == 0


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.1.0"])
async def test_results_come_in_the_requested_version(server: CniServer, cni: Cni,
                                                     version: str) -> None:
    cni.version = version
    result = (await run(cni.add, "ctr1", NETNS)).json
    assert result["cniVersion"] == version
    assert ("version" in result["ips"][0]) == version.startswith("0.")
    assert ("mtu" in result["interfaces"][0]) == (version == "1.1.0")


async def test_the_same_key_in_another_netns_already_exists(server: CniServer,
                                                           cni: Cni) -> None:
    assert (await run(cni.add, "ctr1", NETNS)).status == 0
    err = (await run(cni.add, "ctr1", "/run/netns/another")).error()
    assert (err["code"], err["details"]) == (100, "ALREADY_EXISTS: CNI_ATTACHMENT_EXISTS")


async def test_an_unknown_network_is_a_config_error(server: CniServer, cni: Cni) -> None:
    cni.conf["network"] = "nosuch"
    err = (await run(cni.add, "ctr1", NETNS)).error()
    assert (err["code"], err["details"]) == (7, "NOT_FOUND: NETWORK_NOT_FOUND")


async def test_check_reports_what_the_service_found(server: CniServer, fake: FakeCni,
                                                    cni: Cni) -> None:
    assert (await run(cni.check, "ctr1", NETNS)).error()["code"] == 3
    assert (await run(cni.add, "ctr1", NETNS)).status == 0
    fake.broken = FailedPrecondition("interface eth0 is missing", reason="CNI_CHECK_FAILED")
    err = (await run(cni.check, "ctr1", NETNS)).error()
    assert (err["code"], err["details"]) == (102, "FAILED_PRECONDITION: CNI_CHECK_FAILED")
    assert "eth0 is missing" in err["msg"]


async def test_check_compares_with_the_cached_result(server: CniServer, cni: Cni) -> None:
    assert (await run(cni.add, "ctr1", NETNS)).status == 0
    cni.cache[("ctr1", "eth0")]["ips"][0]["address"] = "10.20.9.9/16"
    err = (await run(cni.check, "ctr1", NETNS)).error()
    assert (err["code"], err["details"]) == (102, "FAILED_PRECONDITION: ADDRESS_DIFFERS")


async def test_status_follows_readiness(server: CniServer, fake: FakeCni, cni: Cni) -> None:
    cni.version = "1.1.0"
    ok = await run(cni.status)
    assert (ok.status, ok.stdout) == (0, "")
    fake.is_ready = False
    assert (await run(cni.status)).error()["code"] == 50


async def test_gc_removes_what_is_not_valid(server: CniServer, fake: FakeCni,
                                            cni: Cni) -> None:
    cni.version = "1.1.0"
    for cid in ("keep", "stale1", "stale2"):
        assert (await run(cni.add, cid, NETNS)).status == 0
    out = await run(cni.gc, [("keep", "eth0"), ("unknown", "eth0")])
    assert (out.status, out.stdout) == (0, "")
    assert set(fake.records) == {CniKey("keep", "eth0")}


async def test_the_socket_is_for_root_only(server: CniServer, tmp_path: Path) -> None:
    mode = (tmp_path / "run" / "cni.sock").stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


async def test_operations_on_one_key_run_one_at_a_time(server: CniServer, fake: FakeCni,
                                                       cni: Cni) -> None:
    calls = [run(cni.add if i % 2 == 0 else cni.delete, "ctr1", NETNS) for i in range(8)]
    outcomes = await asyncio.gather(*calls)
    assert [o.status for o in outcomes] == [0] * 8
    assert len(fake.calls) == 8 and fake.most_active[CniKey("ctr1", "eth0")] == 1


async def test_operations_on_different_keys_run_together(server: CniServer, fake: FakeCni,
                                                         cni: Cni) -> None:
    fake.gate.clear()
    calls = asyncio.gather(*(run(cni.add, f"ctr{i}", NETNS) for i in range(3)))
    await until(lambda: len(fake.calls) == 3)  # all three inside the service at once
    fake.gate.set()
    assert [o.status for o in await calls] == [0, 0, 0]
    assert len({str(r.address) for r in fake.records.values()}) == 3


async def test_a_plugin_killed_mid_add_does_not_cancel_it(server: CniServer, fake: FakeCni,
                                                          cni: Cni) -> None:
    fake.gate.clear()
    env = {**os.environ, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr1",
           "CNI_NETNS": NETNS, "CNI_IFNAME": "eth0"}
    p = subprocess.Popen([str(cni.plugin)], stdin=subprocess.PIPE, env=env,
                         stdout=subprocess.DEVNULL)
    assert p.stdin is not None
    with p.stdin:
        p.stdin.write(json.dumps(cni.config()).encode())
    await until(lambda: bool(fake.calls))
    p.send_signal(signal.SIGKILL)  # what a runtime's timeout does
    assert await asyncio.to_thread(p.wait, HANG_GUARD) == -signal.SIGKILL
    fake.gate.set()
    await until(lambda: CniKey("ctr1", "eth0") in fake.records)
    # The DEL that follows a failed ADD (no prevResult: nothing was cached) cleans up.
    assert (await run(cni.delete, "ctr1", NETNS)).status == 0
    assert fake.records == {}


async def test_close_lets_a_running_operation_finish(fake: FakeCni, cni: Cni,
                                                     tmp_path: Path) -> None:
    s = await start_cni_server(fake, socket=tmp_path / "run" / "cni.sock",
                               state_dir=tmp_path / "state")
    fake.gate.clear()
    add = asyncio.ensure_future(run(cni.add, "ctr1", NETNS))
    await until(lambda: bool(fake.calls))
    closing = asyncio.ensure_future(s.close(grace=HANG_GUARD))
    await asyncio.sleep(0)
    assert not (tmp_path / "run" / "cni.sock").exists()
    fake.gate.set()
    await closing
    assert (await add).status == 0
    assert CniKey("ctr1", "eth0") in fake.records
    assert (await run(cni.add, "ctr2", NETNS)).error()["code"] == 11


async def test_dels_queued_while_down_run_before_serving(fake: FakeCni, cni: Cni,
                                                         tmp_path: Path) -> None:
    for cid in ("ctr1", "ctr2"):
        assert (await run(cni.delete, cid, NETNS)).status == 0
    qdir = tmp_path / "state" / QUEUE_DIR
    (qdir / "0000000000000000001-garbage.json").write_text("not a request")
    (qdir / ".tmp-0123456789abcdef-1").write_text("{")  # a plugin killed mid-write
    s = await start_cni_server(fake, socket=tmp_path / "run" / "cni.sock",
                               state_dir=tmp_path / "state")
    try:
        assert fake.calls == [("delete", CniKey("ctr1", "eth0")),
                              ("delete", CniKey("ctr2", "eth0"))]
        assert sorted(p.name for p in qdir.iterdir()) == [".lock"]
        assert (await run(cni.add, "ctr1", NETNS)).status == 0
    finally:
        await s.close(grace=HANG_GUARD)


async def raw_exchange(path: Path, data: bytes) -> bytes:
    def go() -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(HANG_GUARD)
            s.connect(str(path))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
    return await asyncio.to_thread(go)


async def test_a_request_that_is_not_ours_gets_an_error(server: CniServer,
                                                        tmp_path: Path) -> None:
    answer = await raw_exchange(tmp_path / "run" / "cni.sock", b"GET / HTTP/1.0\r\n\r\n")
    status, _, out = answer.partition(b"\n")
    assert status == b"1" and json.loads(out)["code"] == 6


async def test_an_oversized_request_is_refused(server: CniServer, tmp_path: Path) -> None:
    answer = await raw_exchange(tmp_path / "run" / "cni.sock", b" " * (2 << 20))
    status, _, out = answer.partition(b"\n")
    assert status == b"1" and "larger than" in json.loads(out)["msg"]
