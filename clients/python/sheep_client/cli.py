"""sheepctl: the command-line client. Talks only gRPC."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

from sheep_client.connection import connect
from sheep_client.ports import parse_port

STATE = {pb.Container.CREATED: "created", pb.Container.RUNNING: "running",
         pb.Container.EXITED: "exited"}


def _json(msg: Message) -> str:
    return json.dumps(MessageToDict(msg, preserving_proto_field_name=True), indent=2)


def _addresses(c: pb.Container) -> str:
    return ",".join(f"{n.ip_address}/{n.prefix_length}" for n in c.networks) or "-"


def cmd_run(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    env = dict(kv.split("=", 1) for kv in a.env)
    ports = [parse_port(p) for p in a.publish]
    nets = [pb.NetworkAttachmentRequest(network=n) for n in a.network]
    if a.ip or ports:
        if not nets:
            nets = [pb.NetworkAttachmentRequest(network="sheep0")]
        nets[0].ip = a.ip or ""
        nets[0].ports.extend(ports)
    req = pb.CreateContainerRequest(name=a.name, command=command, env=env,
                                    hostname=a.hostname, networks=nets,
                                    network_mode=a.network_mode)
    if a.detach:
        c = api.CreateContainer(req)
        print(f"{c.id}\t{STATE[c.state]}\tpid={c.pid}\t{_addresses(c)}")
        return 0
    # Foreground: subscribe first so the exit cannot be missed, then wait for it.
    events = api.WatchEvents(pb.WatchEventsRequest(filters={"type": "container.exited"}))
    c = api.CreateContainer(req)
    print(f"{c.id}\t{STATE[c.state]}\tpid={c.pid}\t{_addresses(c)}", flush=True)
    for e in events:
        if e.container_id == c.id:
            events.cancel()
            return int(e.attributes.get("exit_code", "0"))
    return 1


def cmd_ps(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    resp = api.ListContainers(pb.ListContainersRequest(filters={"all": "true"} if a.all else {}))
    print(f"{'ID':<12}  {'NAME':<20}  {'STATE':<8}  {'PID':>7}  ADDRESSES  COMMAND")
    for c in resp.containers:
        state = STATE.get(c.state, "?")
        if c.state == pb.Container.EXITED:
            state = f"exited({c.exit_code})"
        print(f"{c.id[:12]:<12}  {c.name:<20}  {state:<8}  {c.pid:>7}  {_addresses(c)}  "
              + " ".join(c.command))
    return 0


def cmd_inspect(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    print(_json(api.Inspect(pb.InspectRequest(id=a.id))))
    return 0


def cmd_stop(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    for ref in a.ids:
        c = api.StopContainer(pb.StopContainerRequest(id=ref, timeout_seconds=a.time))
        print(f"{c.id[:12]}\texited({c.exit_code})")
    return 0


def cmd_rm(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    for ref in a.ids:
        print(api.RemoveContainer(pb.RemoveContainerRequest(id=ref, force=a.force)).id)
    return 0


def cmd_port(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    c = api.Inspect(pb.InspectRequest(id=a.id))
    for p in c.ports:
        n = max(p.count, 1)
        cport = f"{p.container_port}" + (f"-{p.container_port + n - 1}" if n > 1 else "")
        hport = f"{p.host_port}" + (f"-{p.host_port + n - 1}" if n > 1 else "")
        print(f"{cport}/{p.protocol or 'tcp'} -> {p.host_ip or '0.0.0.0'}:{hport}")
    return 0


def cmd_network(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    if a.net_cmd == "create":
        req = pb.CreateNetworkRequest(name=a.name, subnet=a.subnet, gateway=a.gateway,
                                      bridge=a.bridge, mtu=a.mtu, internal=a.internal)
        if a.no_icc:
            req.icc = False
        print(api.CreateNetwork(req).id)
    elif a.net_cmd == "ls":
        print(f"{'NAME':<16}  {'BRIDGE':<15}  {'SUBNET':<18}  {'GATEWAY':<15}  LEASES")
        for n in api.ListNetworks(pb.ListNetworksRequest()).networks:
            print(f"{n.name:<16}  {n.bridge:<15}  {n.subnet:<18}  {n.gateway:<15}  "
                  f"{n.leases_allocated}/{n.leases_capacity}")
    elif a.net_cmd == "inspect":
        print(_json(api.InspectNetwork(pb.InspectNetworkRequest(id=a.name))))
    elif a.net_cmd == "rm":
        print(api.RemoveNetwork(pb.RemoveNetworkRequest(id=a.name)).id)
    elif a.net_cmd == "connect":
        att = api.AttachNetwork(pb.AttachNetworkRequest(
            container_id=a.container, network=a.name, ip=a.ip,
            ports=[parse_port(p) for p in a.publish], interface_name=a.interface))
        print(f"{att.interface_name}\t{att.ip_address}/{att.prefix_length}")
    elif a.net_cmd == "disconnect":
        api.DetachNetwork(pb.DetachNetworkRequest(container_id=a.container, network=a.name))
    return 0


def cmd_events(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    filters = dict(kv.split("=", 1) for kv in a.filter)
    for e in api.WatchEvents(pb.WatchEventsRequest(filters=filters)):
        attrs = " ".join(f"{k}={v}" for k, v in sorted(e.attributes.items()))
        print(f"{e.time.ToDatetime().isoformat()}Z {e.type} {e.container_id[:12]} "
              f"{e.network} {attrs}".rstrip(), flush=True)
    return 0


def cmd_version(api: pb_grpc.RuntimeServiceStub, a: argparse.Namespace) -> int:
    print(_json(api.Version(pb.VersionRequest())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sheepctl", description="sheep-runtime client")
    p.add_argument("--socket", default="", help="API Unix socket (SHEEP_SOCKET)")
    p.add_argument("--host", default="", help="API TCP address HOST:PORT instead")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="create and start a container")
    r.add_argument("-d", "--detach", action="store_true", help="do not wait for the exit")
    r.add_argument("--name", default="")
    r.add_argument("--network", action="append", default=[])
    r.add_argument("--network-mode", default="", choices=["", "none"])
    r.add_argument("--ip", default="")
    r.add_argument("-p", "--publish", action="append", default=[],
                   help="[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]")
    r.add_argument("--hostname", default="")
    r.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE")
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(fn=cmd_run)
    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.set_defaults(fn=cmd_ps)
    i = sub.add_parser("inspect", help="show a container as JSON")
    i.add_argument("id")
    i.set_defaults(fn=cmd_inspect)
    s = sub.add_parser("stop", help="stop containers")
    s.add_argument("-t", "--time", type=int, default=10)
    s.add_argument("ids", nargs="+")
    s.set_defaults(fn=cmd_stop)
    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("ids", nargs="+")
    rm.set_defaults(fn=cmd_rm)
    pt = sub.add_parser("port", help="list a container's published ports")
    pt.add_argument("id")
    pt.set_defaults(fn=cmd_port)
    n = sub.add_parser("network", help="manage networks")
    nsub = n.add_subparsers(dest="net_cmd", required=True)
    nc = nsub.add_parser("create")
    nc.add_argument("name")
    nc.add_argument("--subnet", required=True)
    nc.add_argument("--gateway", default="")
    nc.add_argument("--bridge", default="")
    nc.add_argument("--mtu", type=int, default=0)
    nc.add_argument("--internal", action="store_true")
    nc.add_argument("--no-icc", action="store_true")
    nsub.add_parser("ls")
    for verb in ("inspect", "rm"):
        nsub.add_parser(verb).add_argument("name")
    ncon = nsub.add_parser("connect")
    ncon.add_argument("name")
    ncon.add_argument("container")
    ncon.add_argument("--ip", default="")
    ncon.add_argument("--interface", default="")
    ncon.add_argument("-p", "--publish", action="append", default=[])
    ndis = nsub.add_parser("disconnect")
    ndis.add_argument("name")
    ndis.add_argument("container")
    n.set_defaults(fn=cmd_network)
    e = sub.add_parser("events", help="stream events")
    e.add_argument("--filter", action="append", default=[],
                   help="container=ID, network=NAME or type=PREFIX")
    e.set_defaults(fn=cmd_events)
    sub.add_parser("version").set_defaults(fn=cmd_version)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sheepctl`."""
    a = build_parser().parse_args(argv)
    api = connect(socket=a.socket, host=a.host)
    try:
        return int(a.fn(api, a))
    except grpc.RpcError as e:
        print(f"sheepctl: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"sheepctl: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
