"""Does sheepd's event loop stall under load? Latency of a `Version` call (no work in
the daemon: what it measures is how long the loop leaves a ready call waiting) issued
every 100 ms, idle and while 8 clients create containers, in the same run.

- idle: Version every 100 ms, nothing else running.
- load: the same prober (a process of its own, with its own connection), while 8 threads
  make `--creates` CreateContainer calls (no image: `/bin/sleep 3600` on the host's
  read-only root, default network).
- sheepd's own view: the delta of its `sheep_event_loop_lag_seconds` histogram over
  the load (how late a 100 ms timer fired), as counts above 5, 10 and 25 ms, and of
  `sheep_event_loop_cpu_wait_seconds` (how long of each 100 ms its loop's thread was
  ready to run but had no CPU): a loop thread that waits for a CPU is held up by
  the host, not by the daemon's own work.
- the floor: a twin gRPC server (uvloop, the same service, a Version that does nothing,
  no other work) in a process of its own, probed the same way during the same load:
  what the machine's scheduling leaves of the target for any Python gRPC server.

Everything runs in a throwaway sandbox netns with its own state dir and bridge; the
containers are removed after the load, and everything at the end, even on failure.
Usage: python bench/bench_loop.py [--creates 300] [--clients 8] [--idle 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import uvloop
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

from tests.sandbox import Sandbox, sandbox

TARGET_P99, TARGET_MAX = 0.005, 0.020  # issue #16: Version under load
INTERVAL = 0.1
COMMAND = ("/bin/sleep", "3600")
CALL_TIMEOUT = 60.0
LOOP_LAG, LOOP_CPU_WAIT = "sheep_event_loop_lag_seconds", "sheep_event_loop_cpu_wait_seconds"


def pct(samples: Sequence[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


class Prober:
    """Calls Version every INTERVAL from a process of its own (so the load's client
    threads cannot hold it up for the GIL), on a connection of its own."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def probe(self, stop: threading.Event, limit: int = 0) -> list[float]:
        """Latencies (s) until `stop` is set (or `limit` calls)."""
        child = subprocess.Popen(
            [sys.executable, __file__, "--probe", str(self.socket), "--limit", str(limit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdin is not None and child.stdout is not None
        try:
            if child.stdout.readline() != "ready\n":
                raise SystemExit("the prober did not connect")
            if not limit:
                stop.wait()
                child.stdin.close()  # EOF: the prober stops
            lat = [float(x) for x in child.stdout.read().split()]
        finally:
            child.kill()
            child.wait()
        return lat


def run_probe(socket: str, limit: int) -> None:
    """The prober's process: "ready", then a latency per Version call, until `limit`
    calls or EOF on stdin."""
    channel = grpc.insecure_channel(f"unix:{socket}")
    stub = pb_grpc.RuntimeServiceStub(channel)
    stub.Version(pb.VersionRequest(), timeout=CALL_TIMEOUT)  # connect first
    print("ready", flush=True)
    lat: list[float] = []
    due = time.monotonic()
    while not limit or len(lat) < limit:
        t0 = time.perf_counter()
        stub.Version(pb.VersionRequest(), timeout=CALL_TIMEOUT)
        lat.append(time.perf_counter() - t0)
        due += INTERVAL
        if select.select([sys.stdin], [], [], max(0.0, due - time.monotonic()))[0]:
            break  # EOF
    print(" ".join(f"{x:.6f}" for x in lat), flush=True)
    channel.close()


class Twin(pb_grpc.RuntimeServiceServicer):
    """The floor's server: Version and nothing else."""

    async def Version(self, request: pb.VersionRequest, context: grpc.aio.ServicerContext
                      ) -> pb.VersionResponse:
        return pb.VersionResponse(version="twin", api_version="v1")


def run_twin(socket: str) -> None:
    """The twin's process: serve on `socket` until stdin closes."""
    async def serve() -> None:
        server = grpc.aio.server()
        pb_grpc.add_RuntimeServiceServicer_to_server(Twin(), server)
        server.add_insecure_port(f"unix:{socket}")
        await server.start()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(None)

    uvloop.run(serve())


@contextlib.contextmanager
def twin_server(tmp: Path) -> Iterator[Path]:
    socket = tmp / "twin.sock"
    child = subprocess.Popen([sys.executable, __file__, "--twin", str(socket)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        if child.stdout.readline() != "ready\n":
            raise SystemExit("the twin server did not start")
        yield socket
    finally:
        child.kill()
        child.wait()


Histogram = dict[str, float]  # cumulative buckets by `le`, `sum` and `count`


def loop_histograms(box: Sandbox) -> dict[str, Histogram]:
    """sheepd's loop-lag and loop CPU-wait histograms, by metric name."""
    out: dict[str, Histogram] = {LOOP_LAG: {}, LOOP_CPU_WAIT: {}}
    for family in text_string_to_metric_families(box.metrics()):
        if family.name in out:
            for sample in family.samples:
                kind = sample.name.removeprefix(family.name + "_")
                out[family.name][sample.labels["le"] if kind == "bucket" else kind] = sample.value
    return out


def delta_line(what: str, before: Histogram, after: Histogram) -> str:
    """What a histogram gained over the load: how many samples, how many above 5, 10
    and 25 ms, their mean."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    n = d.get("count", 0.0)
    above = {ms: n - d.get(le, n) for ms, le in ((5, "0.005"), (10, "0.01"), (25, "0.025"))}
    return (f"{what} during the load: {n:.0f} samples, "
            + ", ".join(f"{v:.0f} > {ms} ms" for ms, v in above.items())
            + f", mean {d.get('sum', 0.0) / max(n, 1) * 1e3:.2f} ms")


def line(name: str, lat: Sequence[float]) -> str:
    return (f"{name:<22} p50 {pct(lat, 0.5) * 1e3:6.2f} ms  p99 {pct(lat, 0.99) * 1e3:6.2f} ms"
            f"  max {max(lat) * 1e3:6.2f} ms  (n={len(lat)})")


def target(what: str, limit: float, measured: float) -> str:
    verdict = "ok" if measured < limit else "MISSED"
    return (f"target Version {what} under load < {limit * 1e3:.0f} ms ... measured "
            f"{measured * 1e3:.1f} ms ... {verdict}")


def load(box: Sandbox, probers: Sequence[Prober], creates: int, clients: int, ids: list[str]
         ) -> tuple[list[list[float]], list[float], float]:
    """Version latencies of each prober during `creates` creates from `clients` threads,
    the create latencies and the wall time; the ids created go to `ids` (also of a
    failed run)."""
    def create(_: int) -> float:
        t0 = time.perf_counter()
        c = box.api.CreateContainer(pb.CreateContainerRequest(command=list(COMMAND)),
                                    timeout=CALL_TIMEOUT)
        ids.append(c.id)
        return time.perf_counter() - t0

    stop = threading.Event()
    with ThreadPoolExecutor(len(probers)) as probe_pool:
        probes = [probe_pool.submit(p.probe, stop) for p in probers]
        pool = ThreadPoolExecutor(clients)
        try:
            t0 = time.perf_counter()
            futures = [pool.submit(create, i) for i in range(creates)]
            created = [f.result() for f in futures]
            wall = time.perf_counter() - t0
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            stop.set()
        return [p.result() for p in probes], created, wall


def remove(box: Sandbox, ids: Sequence[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda cid: box.api.RemoveContainer(
            pb.RemoveContainerRequest(id=cid, force=True), timeout=CALL_TIMEOUT), ids))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--creates", type=int, default=300)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--idle", type=int, default=50, help="Version calls of the idle baseline")
    p.add_argument("--extra", nargs="*", default=[],
                   help="more sheepd flags (e.g. --extra=--log-level=debug)")
    p.add_argument("--probe", help=argparse.SUPPRESS)  # the prober's process
    p.add_argument("--twin", help=argparse.SUPPRESS)  # the twin server's process
    p.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.probe:
        return run_probe(a.probe, a.limit)
    if a.twin:
        return run_twin(a.twin)
    with (tempfile.TemporaryDirectory() as tmp, sandbox(Path(tmp)) as box,
          twin_server(Path(tmp)) as twin):
        box.start(extra=["--log-level", "warning", *a.extra])
        prober = Prober(box.socket)
        ids: list[str] = []
        try:
            idle = prober.probe(threading.Event(), limit=a.idle)
            before = loop_histograms(box)
            (lat, floor), created, wall = load(box, (prober, Prober(twin)), a.creates,
                                               a.clients, ids)
            after = loop_histograms(box)
        finally:
            remove(box, ids)
        print(f"{a.creates} creates from {a.clients} clients in {wall:.1f} s "
              f"({a.creates / wall:.1f}/s; create p50 {pct(created, 0.5) * 1e3:.0f} ms, "
              f"p99 {pct(created, 0.99) * 1e3:.0f} ms)")
        print(line("Version idle", idle))
        print(line("Version under load", lat))
        print(line("twin under load", floor))
        print(delta_line("loop lag", before[LOOP_LAG], after[LOOP_LAG]))
        print(delta_line("loop CPU wait", before[LOOP_CPU_WAIT], after[LOOP_CPU_WAIT]))
        print(f"Version under load vs idle: p50 {pct(lat, 0.5) / pct(idle, 0.5):.1f}x, "
              f"p99 {pct(lat, 0.99) / pct(idle, 0.99):.1f}x")
        print(f"Version under load vs the twin's (the floor): p50 "
              f"{pct(lat, 0.5) / pct(floor, 0.5):.1f}x, "
              f"p99 {pct(lat, 0.99) / pct(floor, 0.99):.1f}x")
        print(target("p99", TARGET_P99, pct(lat, 0.99)))
        print(target("max", TARGET_MAX, max(lat)))


if __name__ == "__main__":
    main()
