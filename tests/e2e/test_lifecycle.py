"""A container's life after its first start, through a real sheepd: an exit gives its
network back, a start takes it again, restart policies (also across daemon restarts),
the stop signal, wait, auto-remove, and an image root whose writes outlive a restart."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.images.builders import busybox_entries, layer, oci_layout
from tests.sandbox import Sandbox, in_netns, pinned_mounts

pytestmark = pytest.mark.kernel


def until(box: Sandbox, cid: str, check: Callable[[pb.Container], bool],
          timeout: float = 15) -> pb.Container:
    deadline = time.monotonic() + timeout
    while True:
        c = box.api.Inspect(pb.InspectRequest(id=cid))
        if check(c):
            return c
        assert time.monotonic() < deadline, f"never reached; last seen:\n{c}"
        time.sleep(0.02)


def link_exists(box: Sandbox, name: str) -> bool:
    return box.host("ip", "link", "show", "dev", name).returncode == 0


def ping(netns: str, address: str) -> bool:
    return in_netns(netns, "ping", "-c1", "-W2", address).returncode == 0


def leased(box: Sandbox) -> int:
    nets = box.api.ListNetworks(pb.ListNetworksRequest()).networks
    return sum(n.leases_allocated for n in nets)


def test_exit_gives_the_network_back_and_start_takes_the_same_address(box: Sandbox) -> None:
    c = box.run("/bin/sleep", "1000", name="web",
                networks=[pb.NetworkAttachmentRequest(network="sheep0", ports=[
                    pb.PortMapping(host_port=18080, container_port=80)])])
    (a,) = c.networks
    assert link_exists(box, a.host_interface) and leased(box) == 1
    stopped = box.api.StopContainer(pb.StopContainerRequest(id="web", timeout_seconds=1))
    assert stopped.state == pb.Container.EXITED and not stopped.networks
    assert not link_exists(box, a.host_interface), "host veth still in the kernel"
    assert leased(box) == 0 and pinned_mounts(box.run_dir) == []
    assert "18080" not in box.host("nft", "list", "ruleset").stdout

    again = box.api.StartContainer(pb.StartContainerRequest(id="web"))
    assert again.state == pb.Container.RUNNING and again.pid != c.pid
    (b,) = again.networks
    assert (b.ip_address, b.interface_name) == (a.ip_address, a.interface_name)
    assert [p.host_port for p in again.ports] == [18080]
    assert ping(again.netns_path, a.gateway)
    assert "18080" in box.host("nft", "list", "ruleset").stdout


def test_a_static_address_stays_and_a_restart_is_a_new_process(box: Sandbox) -> None:
    c = box.run("/bin/sleep", "1000", name="fixed",
                networks=[pb.NetworkAttachmentRequest(network="sheep0", ip="10.20.7.7")])
    again = box.api.RestartContainer(pb.RestartContainerRequest(id="fixed",
                                                                 timeout_seconds=1))
    assert again.networks[0].ip_address == "10.20.7.7" and again.pid != c.pid
    assert ping(again.netns_path, "10.20.0.1")


def test_on_failure_restarts_three_times_then_stays_exited(box: Sandbox) -> None:
    events = box.api.WatchEvents(pb.WatchEventsRequest(filters={"type": "container."}))
    c = box.run("/bin/sh", "-c", "exit 1", name="flaky",
                restart_policy=pb.RestartPolicy(name="on-failure", max_retries=3))
    starts = 0
    for e in events:
        if e.container_id != c.id:
            continue
        starts += e.type == "container.started"
        if e.type == "container.exited" and starts == 4:
            break
    events.cancel()
    final = until(box, c.id, lambda x: x.state == pb.Container.EXITED and not x.restarting)
    assert (final.restart_count, final.exit_code) == (3, 1)
    until(box, c.id, lambda _: leased(box) == 0)
    time.sleep(1)  # longer than the next back-off (0.8 s) would be
    assert box.api.Inspect(pb.InspectRequest(id=c.id)).restart_count == 3


def test_always_survives_daemon_restarts(box: Sandbox) -> None:
    c = box.run("/bin/sleep", "1000", name="svc",
                restart_policy=pb.RestartPolicy(name="always"))
    box.restart()  # the container runs on, adopted by the new daemon
    os.kill(c.pid, signal.SIGKILL)
    again = until(box, "svc", lambda x: x.state == pb.Container.RUNNING
                  and x.restart_count == 1)
    assert again.pid != c.pid and again.networks
    box.kill()  # a daemon gone while the container dies
    os.kill(again.pid, signal.SIGKILL)
    time.sleep(0.3)
    box.start()
    third = until(box, "svc", lambda x: x.state == pb.Container.RUNNING
                  and x.restart_count == 2)
    assert ping(third.netns_path, "10.20.0.1") and leased(box) == 1


def test_stop_sends_the_stop_signal_first(box: Sandbox) -> None:
    box.run("/bin/sh", "-c", "trap 'exit 5' INT; while :; do sleep 0.1; done",
            name="polite", stop_signal="SIGINT", network_mode="none")
    stopped = box.api.StopContainer(pb.StopContainerRequest(id="polite", timeout_seconds=20))
    assert stopped.exit_code == 5, "ended by its SIGINT handler, not SIGKILL"


def test_wait_returns_the_exit_code(box: Sandbox) -> None:
    box.run("/bin/sh", "-c", "sleep 0.5; exit 4", name="job", network_mode="none")
    reply = box.api.WaitContainer(pb.WaitContainerRequest(id="job"), timeout=15)
    assert reply.exit_code == 4 and reply.container.state == pb.Container.EXITED


def test_auto_remove_leaves_nothing(box: Sandbox) -> None:
    c = box.run("/bin/sh", "-c", "exit 0", name="once", auto_remove=True)
    deadline = time.monotonic() + 15
    while box.api.ListContainers(pb.ListContainersRequest(filters={"all": "1"})).containers:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not (box.state_dir / "containers" / c.id).exists()
    assert pinned_mounts(box.run_dir) == [] and leased(box) == 0
    with pytest.raises(grpc.RpcError) as e:
        box.api.Inspect(pb.InspectRequest(id=c.id))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_image_root_keeps_its_writes_across_restarts(box: Sandbox, tmp_path: Path
                                                        ) -> None:
    src = oci_layout(tmp_path / "bb", [layer(busybox_entries())])
    box.api.ImportImage(pb.ImportImageRequest(name="bb", source=str(src)))
    c = box.run("/bin/sh", "-c", "echo run >> /runs; sleep 1000", name="keeper", image="bb")
    upper = box.state_dir / "containers" / c.id / "upper" / "runs"
    until(box, c.id, lambda _: upper.exists())
    box.api.RestartContainer(pb.RestartContainerRequest(id="keeper", timeout_seconds=1))
    until(box, c.id, lambda _: upper.read_text() == "run\nrun\n")
    with pytest.raises(grpc.RpcError) as e:
        box.api.RemoveImage(pb.RemoveImageRequest(id="bb"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, "an exited root holds it"
    box.api.RemoveContainer(pb.RemoveContainerRequest(id="keeper", force=True))
    assert not upper.exists()
