"""`sheepctl cluster`: what GetCluster reports (the backend, the cluster network and
every node with its state), and `sheepctl cluster leave` (LeaveCluster)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client.client import SheepClient
from sheep_client.errors import from_rpc_error


def _call(api: SheepClient, method: str, request: Any) -> Any:
    try:
        return getattr(api.stub, method)(request, timeout=api.timeout)
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None


def get_cluster(api: SheepClient) -> pb.Cluster:
    """GetCluster: cluster mode as the daemon's node sees it (UNAVAILABLE: etcd)."""
    c: pb.Cluster = _call(api, "GetCluster", pb.GetClusterRequest())
    return c


def leave_cluster(api: SheepClient) -> str:
    """LeaveCluster: release this node's subnet; returns it."""
    r: pb.LeaveClusterResponse = _call(api, "LeaveCluster", pb.LeaveClusterRequest())
    return r.subnet


def cluster_table(c: pb.Cluster) -> list[str]:
    """GetCluster as `sheepctl cluster` prints it."""
    if not c.enabled:
        return ["cluster mode is off: a single host (sheepd without --cluster-etcd)"]
    overlay = f"vni {c.vni}, udp {c.port}" if c.backend == "vxlan" else "routes via peers"
    lines = [f"backend {c.backend} ({overlay}), network {c.network}, "
             f"/{c.subnet_length} per node, etcd {','.join(c.etcd_endpoints)}",
             f"this node: {c.self.name} {c.self.subnet} at {c.self.underlay_address}",
             f"{'NODE':<20}  {'UNDERLAY':<15}  {'SUBNET':<18}  {'VTEP MAC':<17}  STATE"]
    lines += [f"{n.name:<20}  {n.underlay_address:<15}  {n.subnet:<18}  "
              f"{n.vtep_mac or '-':<17}  {n.state}" for n in c.nodes]
    return lines


def cmd_cluster(api: SheepClient, a: argparse.Namespace) -> int:
    """Show the cluster (table or JSON), or leave it."""
    if a.action == "leave":
        print(f"left the cluster; released {leave_cluster(api)}")
        return 0
    c = get_cluster(api)
    if a.format == "json":
        print(json.dumps(MessageToDict(c, preserving_proto_field_name=True), indent=2))
    else:
        print("\n".join(cluster_table(c)))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `sheepctl cluster [leave]`."""
    p = sub.add_parser("cluster", help="show cluster mode: this node and every node, "
                                       "or leave the cluster",
                       description="Without an action: the backend, the cluster network "
                                   "and every node holding a subnet (self, programmed: "
                                   "routes to it in place, pending). leave: release this "
                                   "node's subnet (refused while containers use it).")
    p.add_argument("action", nargs="?", choices=["show", "leave"], default="show",
                   help="show (default): GetCluster; leave: LeaveCluster")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="table (default) or json (proto field names)")
    p.set_defaults(fn=cmd_cluster)
