"""Embedded DNS against Debian's dnsmasq, in the same run and the same throwaway netns.

sheep: the real DnsServer and NameIndex (1,000 container names on one network) on
uvloop, as sheepd runs them; dnsmasq: the same names from a hosts file. Both forward
other names to one fake upstream (tests/dns/upstream.py's answers) and cache them.
Everything listens on 127.0.0.1 inside a netns made here and removed at the end.
Usage: python bench/bench_dns.py [--names 1000] [--queries 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.message

from tests.dns.upstream import answer

CLONE_NEWNET = 0x40000000
SHEEP_PORT, DNSMASQ_PORT, UPSTREAM_PORT = 5301, 5302, 5303
FORWARDED = [f"host{i}.example" for i in range(100)]


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def serve_sheep(names: int) -> None:
    import uvloop

    from sheep_runtime.dns import DnsServer, Forwarder
    from sheep_runtime.metrics import Metrics
    from sheep_runtime.model import Attachment, Container, ContainerState
    from sheep_runtime.ops.dns import NameIndex, NetworkNames

    async def main() -> None:
        index = NameIndex()
        for i in range(names):
            cid = f"{i:064x}"
            c = Container(id=cid, name=f"c{i}", command=("x",), env={}, hostname=f"c{i}",
                          network_mode="", state=ContainerState.RUNNING, created_at=0.0,
                          netns_path="")
            index.set(c, [Attachment(
                container_id=cid, network_id="bench", interface_name="eth0",
                address=IPv4Interface(f"{IPv4Address('10.40.0.2') + i}/16"),
                gateway=IPv4Address("10.40.0.1"), mac="02:00:00:00:00:01",
                host_interface=f"h{i}")])
        metrics = Metrics()
        server = DnsServer(forwarder=Forwarder([("127.0.0.1", UPSTREAM_PORT)],
                                               metrics=metrics), metrics=metrics,
                           port=SHEEP_PORT)
        await server.serve(network_id="bench", address=IPv4Address("127.0.0.1"),
                           subnet=IPv4Network("127.0.0.0/8"),
                           names=NetworkNames(index, "bench"), forward=True)
        print("ready", flush=True)
        await asyncio.Event().wait()
    uvloop.run(main())


def serve_upstream() -> None:
    records = {n: "192.0.2.1" for n in FORWARDED}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", UPSTREAM_PORT))
    print("ready", flush=True)
    while True:
        wire, peer = s.recvfrom(4096)
        s.sendto(answer(wire, records), peer)


def load(port: int, names: list[str], count: int, window: int = 8) -> tuple[float, list[float]]:
    """Queries/s and per-query latencies (s), `window` queries in flight."""
    wires = [dns.message.make_query(n, "A").to_wire() for n in names]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    s.settimeout(2)
    lat: list[float] = []
    sent: dict[int, float] = {}
    t0 = time.perf_counter()
    i = 0
    while i < count:
        for _ in range(min(window, count - i)):
            qid = i & 0xFFFF
            w = wires[i % len(wires)]
            s.send(qid.to_bytes(2, "big") + w[2:])
            sent[qid] = time.perf_counter()
            i += 1
        while sent:
            reply = s.recv(4096)
            qid = int.from_bytes(reply[:2], "big")
            if qid in sent:
                lat.append(time.perf_counter() - sent.pop(qid))
    return count / (time.perf_counter() - t0), lat


def start(argv: list[str]) -> subprocess.Popen[str]:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    if argv[0] != "dnsmasq":
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--serve", choices=["sheep", "upstream"])
    a = ap.parse_args()
    if a.serve == "sheep":
        return serve_sheep(a.names)
    if a.serve == "upstream":
        return serve_upstream()
    netns = f"bdns-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        assert ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) == 0
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            hosts = Path(tmp) / "hosts"
            hosts.write_text("".join(f"{IPv4Address('10.40.0.2') + i}\tc{i}\n"
                                     for i in range(a.names)))
            me = [sys.executable, __file__, "--names", str(a.names)]
            procs.append(start([*me, "--serve", "upstream"]))
            procs.append(start([*me, "--serve", "sheep"]))
            procs.append(start(["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
                                f"--addn-hosts={hosts}", f"--port={DNSMASQ_PORT}",
                                "--listen-address=127.0.0.1", "--bind-interfaces",
                                f"--server=127.0.0.1#{UPSTREAM_PORT}", "--cache-size=10000",
                                "--log-facility=/dev/null", f"--pid-file={tmp}/pid"]))
            time.sleep(0.5)
            report(a)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "del", netns], check=False)


def report(a: argparse.Namespace) -> None:
    local = [f"c{i}" for i in range(a.names)]
    results = {}
    for label, names in (("container names", local), ("forwarded names", FORWARDED)):
        for server, port in (("sheep", SHEEP_PORT), ("dnsmasq", DNSMASQ_PORT)):
            load(port, names, 500)  # warm up (and fill the caches)
            results[(label, server)] = load(port, names, a.queries)
    print(f"{'':18}{'server':>9}{'queries/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for (label, server), (qps, lat) in results.items():
        print(f"{label:18}{server:>9}{qps:>11.0f}{pct(lat, .5) * 1e3:>9.3f}"
              f"{pct(lat, .99) * 1e3:>9.3f}")
    sheep_qps = results[("container names", "sheep")][0]
    dnsmasq_qps = results[("container names", "dnsmasq")][0]
    ok = sheep_qps >= dnsmasq_qps / 2
    print(f"target container names >= 0.5x dnsmasq's rate: measured "
          f"{sheep_qps / dnsmasq_qps:.2f}x {'ok' if ok else 'MISSED'}")
    for label in ("container names", "forwarded names"):
        p99 = pct(results[(label, "sheep")][1], .99) * 1e3
        print(f"target {label} p99 < 2 ms: measured {p99:.3f} ms "
              f"{'ok' if p99 < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
