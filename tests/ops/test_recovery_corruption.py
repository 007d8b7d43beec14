"""Recovery never dies on one bad record: a corrupt exit record, a missing netns pin and
an unreadable row are each logged, counted, published and shown, and the daemon starts
and serves the rest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.ops.events import EventFilter
from tests.ops.daemon import Daemon
from tests.ops.helpers import create, rpc_error, wait_state


def recovery_errors(d: Daemon, kind: str) -> float:
    value = d.rt.metrics.registry.get_sample_value("sheep_recovery_errors_total",
                                                   {"kind": kind})
    return value or 0.0


def recovery_events(d: Daemon) -> list[dict[str, str]]:
    return [dict(e.attributes) for e in d.rt.events.recent(EventFilter())
            if e.type == "recovery.error"]


async def test_a_corrupt_exit_record_gives_exit_code_minus_one(daemon: Daemon) -> None:
    web, other = await create(daemon, "web"), await create(daemon, "other")
    await daemon.stop()
    daemon.machine.processes.exit(web.id, 0)
    daemon.machine.processes.corrupt_records.add(daemon.config.containers_dir / web.id)
    await daemon.start()
    c = await wait_state(daemon, "web", pb.Container.EXITED)
    assert c.exit_code == -1 and "corrupt exit record" in c.state_reason
    assert recovery_errors(daemon, "exit_record") == 1
    assert [e["kind"] for e in recovery_events(daemon)] == ["exit_record"]
    assert (await wait_state(daemon, "other", pb.Container.RUNNING)).id == other.id


async def test_a_missing_netns_pin_leaves_the_container_unknown(daemon: Daemon) -> None:
    web = await create(daemon, "web")
    await daemon.stop()
    await daemon.machine.namespaces.delete(Path(web.netns_path))
    await daemon.start()
    c = await daemon.api.Inspect(pb.InspectRequest(id="web"))
    assert c.state == pb.Container.UNKNOWN and "pin missing" in c.state_reason
    assert recovery_errors(daemon, "netns_pin") == 1
    # still removable, and the exit of its process is still seen
    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="web", force=True))
    e = await rpc_error(daemon.api.Inspect(pb.InspectRequest(id="web")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


async def test_an_unreadable_row_is_reported_and_skipped(daemon: Daemon) -> None:
    bad, good = await create(daemon, "bad"), await create(daemon, "good")
    await daemon.stop()
    with sqlite3.connect(daemon.config.db_path) as db:
        db.execute("UPDATE containers SET command='not json' WHERE id=?", (bad.id,))
    await daemon.start()
    assert recovery_errors(daemon, "row") == 1
    assert any(bad.id in e["reason"] for e in recovery_events(daemon))
    listed = await daemon.api.ListContainers(pb.ListContainersRequest(filters={"all": "1"}))
    assert [c.id for c in listed.containers] == [good.id]
    # Its directory and netns pin are not taken for leaks while its row is unreadable.
    assert (daemon.config.containers_dir / bad.id).is_dir()
    assert Path(bad.netns_path).exists()
