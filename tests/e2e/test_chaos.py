"""Chaos: concurrent create/attach/detach/remove while sheepd is SIGKILLed at random
moments and restarted. Afterwards nothing may be leaked or duplicated."""

from __future__ import annotations

import collections
import contextlib
import json
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.sandbox import Sandbox, in_netns, pinned_mounts, sandbox

pytestmark = pytest.mark.kernel

OPERATIONS = 100
KILLS = 5


def _operate(box: Sandbox, rng: random.Random, names: list[str], lock: threading.Lock) -> None:
    api = box.api
    with lock:
        known = list(names)
    op = rng.choice(["create", "create", "attach", "detach", "remove"]) if known else "create"
    with contextlib.suppress(grpc.RpcError):  # the daemon dies under some calls
        if op == "create":
            name = f"chaos{rng.randrange(10**9)}"
            api.CreateContainer(pb.CreateContainerRequest(
                name=name, command=["/bin/sleep", "600"]), timeout=15)
            with lock:
                names.append(name)
        elif op == "attach":
            api.AttachNetwork(pb.AttachNetworkRequest(container_id=rng.choice(known),
                                                      network="extra"), timeout=15)
        elif op == "detach":
            api.DetachNetwork(pb.DetachNetworkRequest(container_id=rng.choice(known),
                                                      network="extra"), timeout=15)
        else:
            api.RemoveContainer(pb.RemoveContainerRequest(id=rng.choice(known), force=True),
                                timeout=15)


def _kill_repeatedly(box: Sandbox, rng: random.Random, done: threading.Event) -> int:
    kills = 0
    while kills < KILLS:
        time.sleep(rng.uniform(0.2, 0.8))
        box.kill()
        kills += 1
        box.start()
    done.set()
    return kills


def test_sigkill_chaos_leaves_a_consistent_world(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    with sandbox(tmp_path) as box:
        box.start()
        box.api.CreateNetwork(pb.CreateNetworkRequest(name="extra", subnet="10.60.0.0/22"))
        names: list[str] = []
        lock = threading.Lock()
        killer_done = threading.Event()
        with ThreadPoolExecutor(9) as pool:
            killer = pool.submit(_kill_repeatedly, box, random.Random(rng.random()), killer_done)
            ops = [pool.submit(_operate, box, random.Random(rng.random()), names, lock)
                   for _ in range(OPERATIONS)]
            for f in ops:
                f.result()
            assert killer.result() == KILLS
        box.restart()
        check_world(box)


def check_world(box: Sandbox) -> None:
    with sqlite3.connect(box.state_dir / "sheep.db") as db:
        rows = db.execute("SELECT a.network_id, a.address, a.host_interface, c.id, c.state,"
                          " c.netns_path FROM attachments a JOIN containers c"
                          " ON a.container_id = c.id").fetchall()
        containers = db.execute("SELECT id, state, netns_path FROM containers").fetchall()
        default_id = db.execute("SELECT id FROM networks WHERE name='sheep0'").fetchone()[0]
    # No duplicate address; no lease without a container (FK + join); no container
    # without its default-network lease.
    assert len({(n, a) for n, a, *_ in rows}) == len(rows)
    on_default = {cid for n, _, _, cid, _, _ in rows if n == default_id}
    assert {cid for cid, _, _ in containers} <= on_default
    # The pools agree with the store.
    counts = collections.Counter(n for n, *_ in rows)
    for net in box.api.ListNetworks(pb.ListNetworksRequest()).networks:
        assert net.leases_allocated == counts.get(net.id, 0), net.name
    # No orphan veth, netns pin or container dir.
    links = json.loads(box.host("ip", "-j", "link", "show", check=True).stdout)
    veths = {link["ifname"] for link in links if link["ifname"].startswith("shp")
             and not link["ifname"].startswith("shpbr")}
    assert veths == {h for _, _, h, *_ in rows}
    assert set(pinned_mounts(box.run_dir)) == {p for _, _, p in containers}
    assert {d.name for d in (box.state_dir / "containers").iterdir()} == \
        {cid for cid, _, _ in containers}
    # Every running container reaches its gateway.
    listed = box.api.ListContainers(pb.ListContainersRequest())
    assert all(c.state == pb.Container.RUNNING for c in listed.containers)
    for c in listed.containers:
        for att in c.networks:
            assert in_netns(c.netns_path, "ping", "-c1", "-W2", att.gateway).returncode == 0
