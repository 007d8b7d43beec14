"""Cluster mode in the lab (tests/cluster/lab.py: etcd and each sheepd "host" in its
own netns on 203.0.113.0/24): how fast an existing node programs a peer after its
subnet claim lands in etcd, and what the overlay costs on the data plane, against
same-host and underlay baselines measured in the same run.

- claim -> programmed: a client in the underlay netns claims a subnet the way a
  joining node does (txn, version == 0) and later deletes it; node1's route.programmed
  and node.left events say when its kernel was done (one clock: the same machine).
- 50 peers: one txn claims 50 subnets; the time until node1 has programmed all.
- ping RTT and TCP throughput container to container: cross-host over vxlan, over
  host-gw (a second lab), same host (the baseline), and host to host on the underlay.
Packets go only between the lab's own namespaces. Usage:
python bench/bench_cluster.py [--joins 20] [--pings 300] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.cluster.lab import ETCD_IP, Lab
from tests.sandbox import Sandbox, in_netns

QUIET = ["--log-level", "warning"]
CLAIM_P50_MS = 50.0  # the join target
PROGRAM_P50_MS = 2.0  # one peer's neighbour + FDB + route, from its watch event
FIFTY_MS = 250.0
RTT_RATIO = 3.0  # cross-host vxlan RTT at most this times same-host

# Claims and deletes subnet records like a joining/leaving node, printing when each
# request was sent (wall clock). Runs in the underlay netns, next to etcd.
CLAIMER = r"""
import asyncio, json, sys, time
import aetcd

def record(i):
    mac = "02:00:00:00:%02x:%02x" % (i // 256, i % 256)
    return json.dumps({"NodeID": f"sim{i}", "PublicIP": f"203.0.113.{100 + i % 100}",
                       "BackendType": "vxlan", "BackendData": {"VtepMAC": mac}}).encode()

def key(third):
    return f"/sheep/subnets/10.20.{third}.0-24".encode()

async def main(host, port, joins, batch, pause):
    c = aetcd.Client(host=host, port=port)
    tx = c.transactions
    for i in range(joins):
        k = key(200 + i)
        t = time.time()
        await c.transaction(compare=[tx.version(k) == 0], success=[tx.put(k, record(i))],
                            failure=[])
        print(json.dumps({"op": "put", "subnet": f"10.20.{200 + i}.0/24", "t": t}), flush=True)
        await asyncio.sleep(pause)
        t = time.time()
        await c.delete(k)
        print(json.dumps({"op": "del", "subnet": f"10.20.{200 + i}.0/24", "t": t}), flush=True)
        await asyncio.sleep(pause)
    keys = [key(150 + i) for i in range(batch)]
    t = time.time()
    await c.transaction(compare=[], success=[tx.put(k, record(1000 + i))
                                             for i, k in enumerate(keys)], failure=[])
    print(json.dumps({"op": "batch", "t": t}), flush=True)
    await asyncio.sleep(2)
    await c.transaction(compare=[], success=[tx.delete(k) for k in keys], failure=[])
    await asyncio.sleep(pause)
    await c.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                 float(sys.argv[5])))
"""


def pct(samples: Sequence[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


class EventLog:
    """node1's cluster events, collected by a thread while the claimer runs."""

    def __init__(self, box: Sandbox) -> None:
        self.events: list[pb.Event] = []
        self._call = box.api.WatchEvents(pb.WatchEventsRequest(
            filters={"network": "sheep0"}, since=Timestamp(seconds=int(time.time()))))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for e in self._call:
                self.events.append(e)
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(5)

    def first(self, type_: str, subnet: str) -> pb.Event | None:
        return next((e for e in self.events
                     if e.type == type_ and e.attributes.get("subnet") == subnet), None)


def when(e: pb.Event) -> float:
    return e.time.seconds + e.time.nanos / 1e9


def bench_programming(lab: Lab, box: Sandbox, joins: int, batch: int) -> None:
    log = EventLog(box)
    time.sleep(0.2)
    out = subprocess.run(
        ["nsenter", f"--net={lab.ul_path}", "--", sys.executable, "-c", CLAIMER, ETCD_IP,
         str(lab.port), str(joins), str(batch), "0.3"],
        capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(f"claimer failed: {out.stderr}")
    time.sleep(0.5)
    log.close()
    sent = [json.loads(line) for line in out.stdout.splitlines()]
    claim, leave, program = [], [], []
    for s in sent:
        if s["op"] == "put":
            e = log.first("route.programmed", s["subnet"])
            if e is not None:
                claim.append((when(e) - s["t"]) * 1e3)
                program.append(float(e.attributes["latency_ms"]))
        elif s["op"] == "del":
            e = log.first("node.left", s["subnet"])
            if e is not None:
                leave.append((when(e) - s["t"]) * 1e3)
    t_batch = next(s["t"] for s in sent if s["op"] == "batch")
    wanted = {f"10.20.{150 + i}.0/24" for i in range(batch)}
    batch_done = [when(e) for e in log.events
                  if e.type == "route.programmed" and e.attributes["subnet"] in wanted]
    for name, xs in (("claim in etcd -> route programmed", claim),
                     ("watch event -> programmed (kernel)", program),
                     ("delete in etcd -> routes removed", leave)):
        print(f"{name:<38} n {len(xs):3d}  p50 {pct(xs, 0.5):7.2f} ms  "
              f"p90 {pct(xs, 0.9):7.2f} ms  p100 {max(xs):7.2f} ms")
    fifty = (max(batch_done) - t_batch) * 1e3 if len(batch_done) == batch else float("inf")
    print(f"{batch} peers in one txn -> all programmed      {fifty:7.2f} ms "
          f"({len(batch_done)} of {batch} programmed)")
    print(f"target claim -> programmed p50 < {CLAIM_P50_MS:.0f} ms: measured "
          f"{pct(claim, 0.5):.2f} ms {verdict(pct(claim, 0.5) < CLAIM_P50_MS)}")
    print(f"target one peer programmed p50 < {PROGRAM_P50_MS:.0f} ms: measured "
          f"{pct(program, 0.5):.2f} ms {verdict(pct(program, 0.5) < PROGRAM_P50_MS)}")
    print(f"target {batch} peers programmed < {FIFTY_MS:.0f} ms: measured {fifty:.2f} ms "
          f"{verdict(fifty < FIFTY_MS)}")


_RTT = re.compile(r"= [0-9.]+/([0-9.]+)/")


def rtt(netns: str | Path, address: str, count: int) -> float:
    """Average RTT in ms of `count` pings 10 ms apart."""
    out = in_netns(netns, "ping", "-q", "-c", str(count), "-i", "0.01", address,
                   check=True, timeout=120).stdout
    m = _RTT.search(out)
    assert m, out
    return float(m.group(1))


RECEIVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5201)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    n += len(b)
print(n, flush=True)
"""
SENDER = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], 5201)); buf = b"x" * (1 << 17)
end = time.monotonic() + float(sys.argv[2]); t0 = time.monotonic()
while time.monotonic() < end: c.sendall(buf)
c.close(); print(time.monotonic() - t0, flush=True)
"""


def throughput(src: pb.Container, dst: pb.Container, seconds: float) -> float:
    """Gbit/s of one TCP stream from `src` to `dst` (a stdlib sender and receiver run
    in the containers' netns)."""
    address = dst.networks[0].ip_address
    rx = subprocess.Popen(["nsenter", f"--net={dst.netns_path}", "--", "/usr/bin/python3",
                           "-c", RECEIVER, address], stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        tx = in_netns(src.netns_path, "/usr/bin/python3", "-c", SENDER, address, str(seconds),
                      check=True, timeout=seconds + 30)
        received = int(rx.stdout.readline())
    finally:
        rx.wait(30)
    return received * 8 / float(tx.stdout) / 1e9


def two_hosts(tmp: Path, backend: str) -> tuple[Lab, list[Sandbox], list[pb.Container]]:
    lab = Lab(tmp)
    lab.start_etcd()
    boxes = [lab.add_host() for _ in range(2)]
    for box in boxes:
        lab.start_sheepd(box, backend=backend, extra=QUIET)
    cs = [boxes[0].run("sleep", "3600"), boxes[0].run("sleep", "3600"),
          boxes[1].run("sleep", "3600")]
    return lab, boxes, cs


def bench_data_plane(tmp: Path, pings: int, seconds: float) -> None:
    rows: dict[str, tuple[float, float]] = {}
    for backend in ("vxlan", "host-gw"):
        (tmp / backend).mkdir()
        lab, boxes, (c1, c1b, c2) = two_hosts(tmp / backend, backend)
        try:
            if backend == "vxlan":
                rows["same host (c1 -> c1b)"] = (rtt(c1.netns_path, c1b.networks[0].ip_address,
                                                     pings), throughput(c1, c1b, seconds))
                rows["underlay (host1 -> host2)"] = (rtt(boxes[0].netns, "203.0.113.12",
                                                         pings), float("nan"))
            rows[f"cross host, {backend}"] = (rtt(c1.netns_path, c2.networks[0].ip_address,
                                                  pings), throughput(c1, c2, seconds))
        finally:
            lab.close()
    for name, (r, g) in rows.items():
        tcp = f"{g:6.2f} Gbit/s" if g == g else "     - (no container)"
        print(f"{name:<30} ping avg {r:6.3f} ms   TCP {tcp}")
    same, vx = rows["same host (c1 -> c1b)"][0], rows["cross host, vxlan"][0]
    print(f"target cross-host vxlan RTT <= {RTT_RATIO:.0f}x same-host: measured "
          f"{vx / same:.2f}x {verdict(vx / same <= RTT_RATIO)}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--joins", type=int, default=20)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--pings", type=int, default=300)
    p.add_argument("--seconds", type=float, default=3.0)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "programming").mkdir()
        lab = Lab(root / "programming")
        try:
            lab.start_etcd()
            boxes = [lab.add_host() for _ in range(2)]
            for box in boxes:
                lab.start_sheepd(box, extra=QUIET)
            bench_programming(lab, boxes[0], a.joins, a.batch)
        finally:
            lab.close()
        print()
        bench_data_plane(root, a.pings, a.seconds)


if __name__ == "__main__":
    main()
