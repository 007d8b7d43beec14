"""What the lab tests look at: etcd's records, a host's overlay entries, a daemon's
events and metrics, and pings between containers (all inside the lab's netns)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from typing import TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.cluster.lab import Lab
from tests.sandbox import Sandbox, in_netns

T = TypeVar("T")
DEADLINE = 30.0  # generous: a 2-core box running other tests too


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def subnets(lab: Lab) -> dict[IPv4Network, str]:
    """Every subnet record in etcd -> its node name."""
    out = lab.etcdctl("get", "--prefix", "/sheep/subnets/", "-w", "json", check=True)
    found = {}
    for kv in json.loads(out.stdout).get("kvs", []):
        key = base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]
        addr, length = key.split("-")
        found[IPv4Network(f"{addr}/{length}")] = json.loads(
            base64.b64decode(kv["value"]))["NodeID"]
    return found


def default_subnet(box: Sandbox) -> IPv4Network:
    nets = box.api.ListNetworks(pb.ListNetworksRequest(), timeout=10).networks
    return IPv4Network(next(n.subnet for n in nets if n.name == "sheep0"))


def ping(container: pb.Container, address: str, *extra: str) -> bool:
    return in_netns(container.netns_path, "ping", "-c", "1", "-W", "2", *extra,
                    address).returncode == 0


def reaches(container: pb.Container, address: str) -> bool:
    """One quick ping (for polling)."""
    return in_netns(container.netns_path, "ping", "-c", "1", "-W", "1",
                    address).returncode == 0


def ip(c: pb.Container) -> str:
    return c.networks[0].ip_address


def mtu(c: pb.Container) -> int:
    out = in_netns(c.netns_path, "ip", "-j", "link", "show", c.networks[0].interface_name,
                   check=True)
    return int(json.loads(out.stdout)[0]["mtu"])


def our_routes(box: Sandbox) -> dict[str, str]:
    """The overlay's routes on a host (protocol 83): destination -> gateway."""
    out = box.host("ip", "-j", "route", "show", "proto", "83", check=True)
    return {r["dst"]: r.get("gateway", "") for r in json.loads(out.stdout or "[]")}


def neighbours(box: Sandbox, dev: str = "sheep.42") -> dict[str, str]:
    out = box.host("ip", "-j", "neigh", "show", "dev", dev)
    return {n["dst"]: n.get("lladdr", "") for n in json.loads(out.stdout or "[]")}


def fdb(box: Sandbox, dev: str = "sheep.42") -> dict[str, str]:
    out = box.host("bridge", "-j", "fdb", "show", "dev", dev)
    return {e["mac"]: e.get("dst", "") for e in json.loads(out.stdout or "[]")}


def has_link(box: Sandbox, name: str) -> bool:
    return box.host("ip", "link", "show", name).returncode == 0


def get_cluster(box: Sandbox) -> pb.Cluster:
    c: pb.Cluster = box.api.GetCluster(pb.GetClusterRequest(), timeout=10)
    return c


def node_states(box: Sandbox) -> dict[str, str]:
    return {n.name: n.state for n in get_cluster(box).nodes}


def status_of(call: Callable[[], object]) -> grpc.StatusCode | None:
    """The status code a call fails with; None if it succeeds."""
    try:
        call()
    except grpc.RpcError as e:
        return e.code()  # type: ignore[no-any-return]
    return None


def events(box: Sandbox, type_prefix: str, *, until: Callable[[list[pb.Event]], bool],
           timeout: float = DEADLINE) -> list[pb.Event]:
    """Retained and live events of a type prefix, until `until` holds for them."""
    seen: list[pb.Event] = []
    stream = box.api.WatchEvents(pb.WatchEventsRequest(filters={"type": type_prefix},
                                                       since=Timestamp(seconds=1)),
                                 timeout=timeout)
    try:
        for e in stream:
            seen.append(e)
            if until(seen):
                return seen
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        stream.cancel()
    got = [(e.type, dict(e.attributes)) for e in seen]
    raise AssertionError(f"events {type_prefix}* seen: {got}")


def metric(box: Sandbox, name: str, labels: str = "") -> float:
    """One sample of the daemon's /metrics (0 when absent)."""
    pattern = re.compile(rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''}"
                         r" ([0-9.e+-]+)$", re.M)
    m = pattern.search(box.metrics())
    return float(m.group(1)) if m else 0.0
