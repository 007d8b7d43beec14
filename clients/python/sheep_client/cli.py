"""sheepctl: the command-line client, built on `sheep_client.SheepClient`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client.client import SheepClient
from sheep_client.errors import SheepClientError
from sheep_client.ports import parse_port

STATE = {pb.Container.CREATED: "created", pb.Container.RUNNING: "running",
         pb.Container.EXITED: "exited"}


def _json(msg: Message) -> str:
    return json.dumps(MessageToDict(msg, preserving_proto_field_name=True), indent=2)


def _pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep:
            raise ValueError(f"bad {what} {kv!r}: use KEY=VALUE")
        out[key] = value
    return out


def _env(pairs: Sequence[str]) -> dict[str, str]:
    return _pairs(pairs, "environment variable")


def _filters(pairs: Sequence[str]) -> dict[str, str]:
    return _pairs(pairs, "filter")


def _addresses(c: pb.Container) -> str:
    return ",".join(f"{n.ip_address}/{n.prefix_length}" for n in c.networks) or "-"


def cmd_run(api: SheepClient, a: argparse.Namespace) -> int:
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    env = _env(a.env)
    ports = [parse_port(p) for p in a.publish]
    nets = [pb.NetworkAttachmentRequest(network=n) for n in a.network]
    if a.ip or ports:
        if not nets:
            nets = [pb.NetworkAttachmentRequest(network="sheep0")]
        nets[0].ip = a.ip or ""
        nets[0].ports.extend(ports)

    def create() -> pb.Container:
        c = api.create_container(command, name=a.name, env=env, hostname=a.hostname,
                                 networks=nets, network_mode=a.network_mode)
        print(f"{c.id}\t{STATE[c.state]}\tpid={c.pid}\t{_addresses(c)}", flush=True)
        return c

    if a.detach:
        create()
        return 0
    # Foreground: subscribe first (replaying from a second ago, so even an instant exit
    # cannot be missed), then wait for this container's exit.
    with api.watch_events({"type": "container.exited"}, since=time.time() - 1) as events:
        c = create()
        for e in events:
            if e.container_id == c.id:
                return int(e.attributes.get("exit_code", "0"))
    return 1


def cmd_ps(api: SheepClient, a: argparse.Namespace) -> int:
    containers = api.list_containers(all=a.all)
    print(f"{'ID':<12}  {'NAME':<20}  {'STATE':<8}  {'PID':>7}  ADDRESSES  COMMAND")
    for c in containers:
        state = STATE.get(c.state, "?")
        if c.state == pb.Container.EXITED:
            state = f"exited({c.exit_code})"
        print(f"{c.id[:12]:<12}  {c.name:<20}  {state:<8}  {c.pid:>7}  {_addresses(c)}  "
              + " ".join(c.command))
    return 0


def cmd_inspect(api: SheepClient, a: argparse.Namespace) -> int:
    print(_json(api.inspect(a.id)))
    return 0


def cmd_stop(api: SheepClient, a: argparse.Namespace) -> int:
    for ref in a.ids:
        c = api.stop_container(ref, timeout_seconds=a.time)
        print(f"{c.id[:12]}\texited({c.exit_code})")
    return 0


def cmd_rm(api: SheepClient, a: argparse.Namespace) -> int:
    for ref in a.ids:
        print(api.remove_container(ref, force=a.force))
    return 0


def cmd_port(api: SheepClient, a: argparse.Namespace) -> int:
    c = api.inspect(a.id)
    for p in c.ports:
        n = max(p.count, 1)
        cport = f"{p.container_port}" + (f"-{p.container_port + n - 1}" if n > 1 else "")
        hport = f"{p.host_port}" + (f"-{p.host_port + n - 1}" if n > 1 else "")
        print(f"{cport}/{p.protocol or 'tcp'} -> {p.host_ip or '0.0.0.0'}:{hport}")
    return 0


def cmd_network(api: SheepClient, a: argparse.Namespace) -> int:
    if a.net_cmd == "create":
        print(api.create_network(a.name, a.subnet, gateway=a.gateway, bridge=a.bridge,
                                 mtu=a.mtu, internal=a.internal,
                                 icc=False if a.no_icc else None).id)
    elif a.net_cmd == "ls":
        print(f"{'NAME':<16}  {'BRIDGE':<15}  {'SUBNET':<18}  {'GATEWAY':<15}  LEASES")
        for n in api.list_networks():
            print(f"{n.name:<16}  {n.bridge:<15}  {n.subnet:<18}  {n.gateway:<15}  "
                  f"{n.leases_allocated}/{n.leases_capacity}")
    elif a.net_cmd == "inspect":
        print(_json(api.inspect_network(a.name)))
    elif a.net_cmd == "rm":
        print(api.remove_network(a.name))
    elif a.net_cmd == "connect":
        att = api.attach_network(a.container, a.name, ip=a.ip, ports=a.publish,
                                 interface_name=a.interface)
        print(f"{att.interface_name}\t{att.ip_address}/{att.prefix_length}")
    elif a.net_cmd == "disconnect":
        api.detach_network(a.container, a.name)
    return 0


def cmd_events(api: SheepClient, a: argparse.Namespace) -> int:
    with api.watch_events(_filters(a.filter)) as events:
        for e in events:
            attrs = " ".join(f"{k}={v}" for k, v in sorted(e.attributes.items()))
            print(f"{e.time.ToDatetime().isoformat()}Z {e.type} {e.container_id[:12]} "
                  f"{e.network} {attrs}".rstrip(), flush=True)
    return 0


def cmd_version(api: SheepClient, a: argparse.Namespace) -> int:
    print(_json(api.version()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sheepctl", description="sheep-runtime client")
    p.add_argument("--socket", default="", help="API Unix socket (SHEEP_SOCKET)")
    p.add_argument("--host", default="",
                   help="daemon address instead: tcp://HOST:PORT (mutual TLS), "
                        "unix:///PATH or a socket path")
    p.add_argument("--tls-ca", default="",
                   help="PEM CA of the daemon's certificate, for tcp:// (SHEEP_TLS_CA)")
    p.add_argument("--tls-cert", default="",
                   help="PEM client certificate, for tcp:// (SHEEP_TLS_CERT)")
    p.add_argument("--tls-key", default="",
                   help="PEM key of --tls-cert (SHEEP_TLS_KEY)")
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
    try:
        with SheepClient(socket=a.socket, host=a.host, tls_ca=a.tls_ca,
                         tls_cert=a.tls_cert, tls_key=a.tls_key) as api:
            return int(a.fn(api, a))
    except SheepClientError as e:
        print(f"sheepctl: {e.code.name}: {e.details}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:  # pragma: no cover - the wrapper converts them all
        print(f"sheepctl: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"sheepctl: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
