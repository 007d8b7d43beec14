"""Containers are real processes in their own namespaces, driven through a real sheepd."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.logtext import log_text
from tests.sandbox import Sandbox, pinned_mounts

pytestmark = pytest.mark.kernel

NONE = {"network_mode": "none"}


def ns_inode(pid: int | str, ns: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{ns}").st_ino


def wait_state(box: Sandbox, cid: str, state: int, timeout: float = 10) -> pb.Container:
    deadline = time.monotonic() + timeout
    while True:
        c = box.api.Inspect(pb.InspectRequest(id=cid))
        if c.state == state or time.monotonic() > deadline:
            return c
        time.sleep(0.02)


def test_container_is_a_process_in_its_own_namespaces(box: Sandbox) -> None:
    c = box.run("/bin/sh", "-c", "cat /proc/sys/kernel/hostname; echo pid=$$; sleep 60",
                name="web", hostname="web-host", env={"GREETING": "hi"}, **NONE)
    assert c.state == pb.Container.RUNNING and c.pid > 0 and len(c.id) == 64
    for ns in ("pid", "uts", "ipc", "mnt", "net"):
        assert ns_inode(c.pid, ns) != ns_inode("self", ns), ns
    assert Path(c.netns_path).exists() and c.netns_path in pinned_mounts(box.run_dir)
    assert ns_inode(c.pid, "net") == os.stat(c.netns_path).st_ino
    environ = Path(f"/proc/{c.pid}/environ").read_bytes().split(b"\0")
    assert b"GREETING=hi" in environ
    deadline = time.monotonic() + 5
    while "pid=1" not in log_text(c.log_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log_text(c.log_path).splitlines()[:2] == ["web-host", "pid=1"]


def test_stop_records_exit_code_and_remove_frees_everything(box: Sandbox) -> None:
    c = box.run("/bin/sleep", "1000", name="sleeper", **NONE)
    stopped = box.api.StopContainer(pb.StopContainerRequest(id="sleeper", timeout_seconds=1))
    # sleep as PID 1 ignores SIGTERM (no handler), so SIGKILL after the timeout: 128+9.
    assert stopped.state == pb.Container.EXITED and stopped.exit_code == 137
    assert stopped.finished_at.seconds > 0 and not Path(f"/proc/{c.pid}").exists()
    box.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id))
    assert not Path(c.netns_path).exists() and pinned_mounts(box.run_dir) == []
    assert not (box.state_dir / "containers" / c.id).exists()
    with pytest.raises(grpc.RpcError) as e:
        box.api.Inspect(pb.InspectRequest(id=c.id))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_exit_is_detected_with_its_code_and_an_event(box: Sandbox) -> None:
    events = box.api.WatchEvents(pb.WatchEventsRequest(filters={"type": "container."}))
    c = box.run("/bin/sh", "-c", "exit 7", **NONE)
    seen = []
    for e in events:
        seen.append(e.type)
        if e.type == "container.exited" and e.container_id == c.id:
            assert e.attributes["exit_code"] == "7"
            break
    events.cancel()
    assert seen[:2] == ["container.created", "container.started"]
    assert wait_state(box, c.id, pb.Container.EXITED).exit_code == 7


def test_running_container_needs_force_to_be_removed(box: Sandbox) -> None:
    c = box.run("/bin/sleep", "1000", **NONE)
    with pytest.raises(grpc.RpcError) as e:
        box.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "running" in e.value.details()
    assert box.api.Inspect(pb.InspectRequest(id=c.id)).state == pb.Container.RUNNING
    box.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    assert not Path(f"/proc/{c.pid}").exists()
    assert pinned_mounts(box.run_dir) == []


@pytest.mark.parametrize(("request_kw", "code"), [
    ({"command": []}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"command": ["/bin/true"], "name": "bad name!"}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"command": ["/bin/true"], "network_mode": "bogus"}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"command": ["/bin/true"], "networks": [{"network": "nope"}]}, grpc.StatusCode.NOT_FOUND),
    ({"command": ["/bin/true"], "networks": [{"network": "sheep0", "ip": "10.99.0.1"}]},
     grpc.StatusCode.INVALID_ARGUMENT),
])
def test_bad_create_requests_leave_nothing(box: Sandbox, request_kw: dict[str, object],
                                           code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as e:
        box.api.CreateContainer(pb.CreateContainerRequest(**request_kw))  # type: ignore[arg-type]
    assert e.value.code() == code and e.value.details()
    all_ = box.api.ListContainers(pb.ListContainersRequest(filters={"all": "true"}))
    assert list(all_.containers) == []
    assert pinned_mounts(box.run_dir) == []


def test_names_ids_and_prefixes(box: Sandbox) -> None:
    a = box.run("/bin/sleep", "100", name="dup", **NONE)
    with pytest.raises(grpc.RpcError) as e:
        box.run("/bin/sleep", "100", name="dup", **NONE)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS and "dup" in e.value.details()
    assert box.api.Inspect(pb.InspectRequest(id=a.id[:10])).id == a.id
    assert box.api.Inspect(pb.InspectRequest(id="dup")).id == a.id
    with pytest.raises(grpc.RpcError) as e:
        box.api.Inspect(pb.InspectRequest(id="f" * 64))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # Create containers until two share a first hex digit: that prefix is ambiguous.
    ids = [a.id]
    while len({i[0] for i in ids}) == len(ids):
        ids.append(box.run("/bin/sleep", "100", **NONE).id)
    prefix = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    with pytest.raises(grpc.RpcError) as e:
        box.api.Inspect(pb.InspectRequest(id=prefix))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ambiguous" in e.value.details()


def test_containers_survive_a_daemon_restart(box: Sandbox) -> None:
    c = box.run("/bin/sleep", "1000", name="survivor", **NONE)
    assert box.stop() == 0
    assert Path(f"/proc/{c.pid}").exists()
    box.start()
    again = box.api.Inspect(pb.InspectRequest(id="survivor"))
    assert again.state == pb.Container.RUNNING and again.pid == c.pid
    # The re-adopted container's exit is still detected and recorded.
    stopped = box.api.StopContainer(pb.StopContainerRequest(id=c.id, timeout_seconds=1))
    assert stopped.state == pb.Container.EXITED and stopped.exit_code == 137


def test_exit_while_daemon_is_down_is_recorded(box: Sandbox) -> None:
    c = box.run("/bin/sh", "-c", "sleep 0.5; exit 3", **NONE)
    box.kill()
    time.sleep(1.0)
    box.start()
    assert wait_state(box, c.id, pb.Container.EXITED).exit_code == 3


def test_second_daemon_on_the_same_state_dir_refuses(box: Sandbox) -> None:
    from tests.sandbox import sh
    out = sh("nsenter", f"--net={box.netns}", "--", sys.executable, "-m", "sheep_runtime.daemon",
             "--state-dir", str(box.state_dir), "--run-dir", str(box.tmp / "run2"),
             "--metrics-addr", "", check=False)
    assert out.returncode != 0 and "another sheepd" in out.stderr


def test_socket_is_private(box: Sandbox) -> None:
    assert box.socket.stat().st_mode & 0o777 == 0o600


def test_sigkill_during_a_burst_of_creates_restarts_consistent(box: Sandbox) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.sandbox import in_netns

    def create(i: int) -> None:
        with contextlib.suppress(grpc.RpcError):  # the daemon may die under the call
            box.run("/bin/sleep", "300", name=f"burst{i}")

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(create, i) for i in range(20)]
        threading.Event().wait(0.3)
        box.kill()
        for f in futures:
            f.result()
    box.start()
    listed = box.api.ListContainers(pb.ListContainersRequest(filters={"all": "true"}))
    ids = {c.id for c in listed.containers}
    for c in listed.containers:
        if c.state == pb.Container.RUNNING:
            assert Path(f"/proc/{c.pid}").exists()
            assert ns_inode(c.pid, "net") == os.stat(c.netns_path).st_ino
            assert in_netns(c.netns_path, "ping", "-c1", "-W2",
                            c.networks[0].gateway).returncode == 0
        else:
            assert c.state == pb.Container.EXITED
    # Every pinned netns and container dir belongs to a container in the store.
    assert {Path(m).name for m in pinned_mounts(box.run_dir)} <= ids
    assert {d.name for d in (box.state_dir / "containers").iterdir()} <= ids
    addrs = [c.networks[0].ip_address for c in listed.containers if c.networks]
    assert len(addrs) == len(set(addrs))
