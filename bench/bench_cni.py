"""CNI ADD and DEL latency through the sheep plugin (process start included) against
Debian's containernetworking-plugins `bridge` + `host-local` on an equivalent config,
side by side in the same run.

Everything runs in a throwaway sandbox netns (sheepd, both bridges, the container
namespaces); no packet is sent. A lean runner process inside the sandbox execs the
plugins the way a runtime does (env + stdin, one call at a time), alternating sheep
and bridge calls so both see the same machine. The bridge config matches what sheepd
does per attachment: a veth on a bridge that is the gateway, an address from a /16,
a default route (no per-container masquerade rule: sheepd's is per network).
Usage: python bench/bench_cni.py [--calls 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BRIDGE_PLUGINS = Path("/usr/lib/cni")
TARGETS = {"ADD": 0.5, "DEL": 0.25}  # sheep p50 at most this fraction of bridge's


def runner() -> None:
    """Inside the sandbox: run the jobs on stdin one by one; print their latencies."""
    out = []
    for job in json.load(sys.stdin):
        t0 = time.perf_counter()
        p = subprocess.run(job["argv"], input=job["stdin"], env=job["env"],
                           capture_output=True, text=True, timeout=60)
        out.append({"seconds": time.perf_counter() - t0, "status": p.returncode,
                    "stdout": p.stdout, "stderr": p.stderr})
    json.dump(out, sys.stdout)


def pct(samples: Sequence[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


class Bench:
    """Both networks in one sandbox, and the runner that calls their plugins."""

    def __init__(self, box: Any, tmp: Path, calls: int) -> None:
        self.box, self.tmp, self.calls = box, tmp, calls
        dest = tmp / "dest"
        subprocess.run(["make", "-s", "-C", str(REPO), "install-cni", f"DESTDIR={dest}"],
                       check=True, capture_output=True)
        self.sheep_plugin = dest / "opt" / "cni" / "bin" / "sheep"
        self.confs: dict[str, dict[str, Any]] = {
            "sheep": {"cniVersion": "1.0.0", "name": "sheepnet", "type": "sheep",
                      "network": "sheep0", "socket": str(box.run_dir / "cni.sock"),
                      "stateDir": str(box.state_dir)},
            "bridge": {"cniVersion": "1.0.0", "name": "bridgenet", "type": "bridge",
                       "bridge": f"cbr{box.tag}", "isGateway": True, "ipMasq": False,
                       "ipam": {"type": "host-local", "subnet": "10.30.0.0/16",
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(tmp / "host-local")}}}
        self.binaries = {"sheep": str(self.sheep_plugin), "bridge": str(BRIDGE_PLUGINS / "bridge")}
        self.netns: dict[str, list[str]] = {k: [] for k in self.confs}
        self.results: dict[tuple[str, int], dict[str, Any]] = {}

    def make_netns(self) -> None:
        for kind, spaces in self.netns.items():
            for i in range(self.calls):
                name = f"bc{self.box.tag}{kind[0]}{i}"
                subprocess.run(["ip", "netns", "add", name], check=True)
                spaces.append(name)

    def remove_netns(self) -> None:
        for spaces in self.netns.values():
            for name in spaces:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def job(self, kind: str, command: str, i: int) -> dict[str, Any]:
        conf = dict(self.confs[kind])
        if command == "DEL":
            conf["prevResult"] = self.results[(kind, i)]
        env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command,
               "CNI_CONTAINERID": f"bench{kind}{i}",
               "CNI_NETNS": f"/run/netns/{self.netns[kind][i]}" if command != "VERSION" else "",
               "CNI_IFNAME": "eth0", "CNI_ARGS": "IgnoreUnknown=1",
               "CNI_PATH": str(BRIDGE_PLUGINS)}
        return {"argv": [self.binaries[kind]], "env": env, "stdin": json.dumps(conf)}

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        p = subprocess.run(["nsenter", f"--net={self.box.netns}", "--", sys.executable,
                            __file__, "--runner"], input=json.dumps(jobs),
                           capture_output=True, text=True, check=True, timeout=1800)
        return list(json.loads(p.stdout))

    def measure(self, command: str) -> dict[str, list[float]]:
        """`command` for every i, sheep and bridge alternating; latencies per kind."""
        kinds = list(self.confs)
        jobs = [self.job(k, command, i) for i in range(self.calls) for k in kinds]
        lat: dict[str, list[float]] = {k: [] for k in kinds}
        for n, out in enumerate(self.run(jobs)):
            kind, i = kinds[n % len(kinds)], n // len(kinds)
            if out["status"] != 0:
                raise SystemExit(f"{kind} {command} {i} failed: {out['stdout']}{out['stderr']}")
            if command == "ADD":
                self.results[(kind, i)] = json.loads(out["stdout"])
            lat[kind].append(out["seconds"])
        return lat


def report(command: str, lat: dict[str, list[float]]) -> tuple[float, float]:
    for kind, samples in lat.items():
        print(f"{kind:<7} {command:<7} p50 {pct(samples, 0.5) * 1e3:7.2f} ms  "
              f"p99 {pct(samples, 0.99) * 1e3:7.2f} ms  (n={len(samples)})", flush=True)
    return pct(lat["sheep"], 0.5), pct(lat["bridge"], 0.5)


def daemon_side(log: str, command: str) -> str:
    """sheepd's own time per call (its log), to tell it from the plugin's start."""
    pattern = rf"CNI {command} \S+ on \S+: ok \(([\d.]+) ms\)"
    ms = [float(m) for m in re.findall(pattern, log)]
    if not ms:
        return ""
    return f"  (inside sheepd: p50 {pct(ms, 0.5):.2f} ms, p99 {pct(ms, 0.99):.2f} ms)"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--runner", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.runner:
        runner()
        return
    sys.path.insert(0, str(REPO))
    from tests.sandbox import sandbox  # grpc: only the orchestrating process needs it

    with tempfile.TemporaryDirectory() as tmp, sandbox(Path(tmp)) as box:
        box.start(extra=["--log-level", "info"])
        bench = Bench(box, Path(tmp), a.calls)
        try:
            bench.make_netns()
            floor = bench.run([{"argv": ["/usr/bin/python3", "-IS", "-c", "pass"], "env": {},
                                "stdin": ""}] * a.calls)
            print(f"python3 -IS -c pass p50 {pct([o['seconds'] for o in floor], 0.5) * 1e3:.2f}"
                  " ms (the start of any CPython plugin)")
            report("VERSION", bench.measure("VERSION"))  # the process start alone
            p50 = {}
            for command in ("ADD", "DEL"):
                p50[command] = report(command, bench.measure(command))
                print(daemon_side(box.log(), command))
        finally:
            bench.remove_netns()
    for command, (sheep, bridge) in p50.items():
        limit = TARGETS[command] * bridge
        verdict = "ok" if sheep <= limit else "MISSED"
        print(f"target {command} p50 <= {TARGETS[command]:g} x bridge's "
              f"({limit * 1e3:.2f} ms) ... measured {sheep * 1e3:.2f} ms "
              f"({sheep / bridge:.2f} x) ... {verdict}")


if __name__ == "__main__":
    main()
