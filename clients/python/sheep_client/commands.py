"""What each sheepctl command does, on a `SheepClient`; cli.py parses the arguments.
`run` is in run.py, `logs` and `exec` in container_io.py, `stats` in stats.py.

Each command returns its exit status. Listings print a table (default), JSON lines
(`--format json`, one object per line, proto field names) or ids (`-q`). Commands that
take several names go on after an error, as docker's do, and then return 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client import __version__
from sheep_client.client import DEFAULT_STOP_SECONDS, SheepClient
from sheep_client.output import (
    ago,
    for_each,
    human_duration,
    json_line,
    message_dict,
    message_json,
    print_listing,
    rfc3339_nano,
    seconds,
    size,
    table,
)
from sheep_client.parsing import parse_pairs
from sheep_client.ports import host_address

STATE = {pb.Container.CREATED: "created", pb.Container.RUNNING: "running",
         pb.Container.EXITED: "exited", pb.Container.UNKNOWN: "unknown"}
#: Characters of a command docker's ps shows before it cuts it with an ellipsis.
COMMAND_WIDTH = 20


# -- containers -------------------------------------------------------------------


def _addresses(c: pb.Container) -> str:
    return ",".join(f"{n.ip_address}/{n.prefix_length}" for n in c.networks) or ""


def _range(first: int, count: int) -> str:
    return f"{first}-{first + count - 1}" if count > 1 else f"{first}"


def _ports(c: pb.Container) -> str:
    """PORTS as docker's ps writes them: 0.0.0.0:8080->80/tcp, [2001:db8::5]:53->53/udp, ..."""
    return ", ".join(f"{host_address(p.host_ip, _range(p.host_port, max(p.count, 1)))}->"
                     f"{_range(p.container_port, max(p.count, 1))}/{p.protocol or 'tcp'}"
                     for p in c.ports)


def status(c: pb.Container, now: float) -> str:
    """STATUS as docker's ps writes it: "Up 5 minutes", "Exited (0) 3 seconds ago",
    "Restarting (1) 2 seconds ago", "Created"."""
    if c.restarting:
        return f"Restarting ({c.exit_code}) {ago(c.finished_at, now)}"
    if c.state == pb.Container.RUNNING:
        return f"Up {human_duration(max(0.0, now - seconds(c.started_at)))}"
    if c.state == pb.Container.EXITED:
        return f"Exited ({c.exit_code}) {ago(c.finished_at, now)}"
    return STATE.get(c.state, "unknown").capitalize()


def _command(c: pb.Container) -> str:
    text = " ".join(c.command)
    if len(text) > COMMAND_WIDTH:
        text = text[:COMMAND_WIDTH - 1] + "…"
    return f'"{text}"'


def cmd_ps(api: SheepClient, a: argparse.Namespace) -> int:
    """List containers (running ones; every one with -a), in docker's columns and
    the addresses."""
    containers = api.list_containers(all=a.all)

    def lines() -> list[str]:
        now = time.time()
        return table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "ADDRESSES",
                      "PORTS", "NAMES"],
                     [[c.id[:12], c.image or c.rootfs or "-", _command(c),
                       ago(c.created_at, now), status(c, now), _addresses(c), _ports(c),
                       c.name] for c in containers])

    return print_listing(a, containers, ids=lambda: [c.id[:12] for c in containers],
                         lines=lines)


def cmd_inspect(api: SheepClient, a: argparse.Namespace) -> int:
    """Print each container as a JSON object."""
    return for_each(a.ids, lambda ref: print(message_json(api.inspect(ref))), echo=False)


def _stop_deadline(api: SheepClient, ref: str, grace: int | None) -> float | None:
    """The deadline of a stop or restart: its grace period (-t, else the container's
    own stop timeout) on top of the client's."""
    if api.timeout is None:
        return None
    if grace is None:
        grace = api.inspect(ref).stop_timeout_seconds
    return api.timeout + (grace or DEFAULT_STOP_SECONDS)


def cmd_start(api: SheepClient, a: argparse.Namespace) -> int:
    """Start created or exited containers; print each name."""
    return for_each(a.ids, api.start_container)


def cmd_stop(api: SheepClient, a: argparse.Namespace) -> int:
    """Stop containers: their stop signal, SIGKILL after -t seconds (default: each
    container's stop timeout); print each name."""
    return for_each(a.ids, lambda ref: api.stop_container(
        ref, timeout_seconds=a.time or 0, timeout=_stop_deadline(api, ref, a.time)))


def cmd_restart(api: SheepClient, a: argparse.Namespace) -> int:
    """Stop (as stop -t) and start containers again; print each name."""
    return for_each(a.ids, lambda ref: api.restart_container(
        ref, timeout_seconds=a.time or 0, timeout=_stop_deadline(api, ref, a.time)))


def cmd_rm(api: SheepClient, a: argparse.Namespace) -> int:
    """Remove containers (running ones too with -f); print each name."""
    return for_each(a.ids, lambda ref: api.remove_container(ref, force=a.force))


def cmd_wait(api: SheepClient, a: argparse.Namespace) -> int:
    """Wait for each container to exit; print each exit code."""
    return for_each(a.ids, lambda ref: print(api.wait_container(ref).exit_code, flush=True),
                    echo=False)


def cmd_port(api: SheepClient, a: argparse.Namespace) -> int:
    """A container's published ports, one line each, as `docker port` prints them;
    with PRIVATE_PORT[/PROTO], only the host addresses of that one."""
    want_port, _, want_proto = (a.port or "").partition("/")
    found = False
    for p in api.inspect(a.id).ports:
        proto = p.protocol or "tcp"
        for i in range(max(p.count, 1)):
            cport, host = p.container_port + i, host_address(p.host_ip, p.host_port + i)
            if not want_port:
                print(f"{cport}/{proto} -> {host}")
            elif want_port == str(cport) and want_proto in ("", proto):
                print(host)
                found = True
    if want_port and not found:
        print(f"sheepctl: no public port '{want_port}/{want_proto or 'tcp'}' published for "
              f"{a.id}", file=sys.stderr)
        return 1
    return 0


# -- networks ---------------------------------------------------------------------


def cmd_network_create(api: SheepClient, a: argparse.Namespace) -> int:
    print(api.create_network(a.name, a.subnet, gateway=a.gateway, bridge=a.bridge,
                             mtu=a.mtu, internal=a.internal,
                             icc=False if a.no_icc else None,
                             dns=False if a.no_dns else None).id)
    return 0


def cmd_network_ls(api: SheepClient, a: argparse.Namespace) -> int:
    networks = api.list_networks()

    def lines() -> list[str]:
        return table(["NETWORK ID", "NAME", "BRIDGE", "SUBNET", "GATEWAY", "LEASES"],
                     [[n.id[:12], n.name, n.bridge, ",".join(filter(None, (n.subnet,
                                                                          n.subnet6))),
                       n.gateway, f"{n.leases_allocated}/{n.leases_capacity}"]
                      for n in networks])

    return print_listing(a, networks, ids=lambda: [n.id[:12] for n in networks],
                         lines=lines)


def cmd_network_inspect(api: SheepClient, a: argparse.Namespace) -> int:
    return for_each(a.names, lambda ref: print(message_json(api.inspect_network(ref))),
                    echo=False)


def cmd_network_rm(api: SheepClient, a: argparse.Namespace) -> int:
    return for_each(a.names, api.remove_network)


def cmd_network_connect(api: SheepClient, a: argparse.Namespace) -> int:
    att = api.attach_network(a.container, a.name, ip=a.ip, ports=a.publish,
                             interface_name=a.interface, aliases=a.network_alias)
    print(f"{att.interface_name}\t{att.ip_address}/{att.prefix_length}")
    return 0


def cmd_network_disconnect(api: SheepClient, a: argparse.Namespace) -> int:
    api.detach_network(a.container, a.name)
    return 0


# -- images -----------------------------------------------------------------------


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def cmd_image_import(api: SheepClient, a: argparse.Namespace) -> int:
    """Import an image from a path (made absolute: the daemon reads it); print its id."""
    print(api.import_image(a.name, os.path.abspath(a.path), trusted=a.trusted).id)
    return 0


def cmd_images(api: SheepClient, a: argparse.Namespace) -> int:
    """List images: name, short id, created, size."""
    images = api.list_images()

    def lines() -> list[str]:
        now = time.time()
        return table(["NAME", "IMAGE ID", "CREATED", "SIZE"],
                     [[i.name, _short(i.id), ago(i.created_at, now), size(i.size_bytes)]
                      for i in images])

    return print_listing(a, images, ids=lambda: [_short(i.id) for i in images], lines=lines)


def cmd_rmi(api: SheepClient, a: argparse.Namespace) -> int:
    """Remove images; print each one's id."""
    return for_each(a.refs, lambda ref: print(api.remove_image(ref)), echo=False)


# -- events, version and info -----------------------------------------------------


def event_line(e: pb.Event) -> str:
    """An event as docker's events prints one: TIME TYPE ACTION SUBJECT (k=v, ...);
    the subject is the container (network.* events: the network, with the container
    among the attributes)."""
    kind, _, action = e.type.partition(".")
    attrs = dict(e.attributes)
    if kind == "network" or not e.container_id:
        subject = e.network
        if e.container_id:
            attrs["container"] = e.container_id
    else:
        subject = e.container_id
        if e.network:
            attrs["network"] = e.network
    details = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    line = f"{rfc3339_nano(e.time)} {kind} {action} {subject}".rstrip()
    return f"{line} ({details})" if details else line


def cmd_events(api: SheepClient, a: argparse.Namespace) -> int:
    """Stream events until interrupted (or --until); --since replays retained ones
    first. An unknown filter is the daemon's error."""
    duration = None if a.until is None else max(0.001, a.until - time.time())
    with api.watch_events(parse_pairs(a.filter, "filter"), since=a.since,
                          duration=duration) as events:
        for e in events:
            line = json_line(message_dict(e)) if a.format == "json" else event_line(e)
            print(line, flush=True)
    return 0


def _fields(title: str, rows: Sequence[tuple[str, str]], indent: str = " ") -> list[str]:
    return [f"{title}:"] + [f"{indent}{k}: {v}" for k, v in rows]


def cmd_version(api: SheepClient, a: argparse.Namespace) -> int:
    """The client's and the daemon's versions, as `docker version` prints them."""
    v = api.version()
    if a.format == "json":  # the daemon's VersionResponse, and the client's version
        print(json.dumps({**message_dict(v), "client_version": __version__}, indent=2))
        return 0
    lines = _fields("Client", [("Version", __version__)])
    lines += _fields("Server", [("Version", v.version), ("API version", v.api_version),
                                ("Kernel", v.kernel)])
    lines += _fields(" Backends", sorted(v.backends.items()), indent="  ")
    print("\n".join(lines))
    return 0


def info(api: SheepClient) -> dict[str, Any]:
    """What `sheepctl info` reports, from Version and the listings."""
    v = api.version()
    containers = api.list_containers(all=True)
    counts = {name: sum(c.state == state for c in containers)
              for state, name in STATE.items()}
    return {"client_version": __version__, "server_version": v.version,
            "api_version": v.api_version, "kernel": v.kernel,
            "containers": len(containers), "running": counts["running"],
            "exited": counts["exited"], "created": counts["created"],
            "images": len(api.list_images()), "networks": len(api.list_networks()),
            "backends": dict(sorted(v.backends.items()))}


def cmd_info(api: SheepClient, a: argparse.Namespace) -> int:
    """A summary of the daemon: containers by state, images, networks, versions and
    backends, as `docker info` prints it."""
    i = info(api)
    if a.format == "json":
        print(json_line(i))
        return 0
    lines = _fields("Client", [("Version", str(i["client_version"]))])
    lines += ["Server:", f" Containers: {i['containers']}"]
    lines += [f"  {k.capitalize()}: {i[k]}" for k in ("running", "exited", "created")]
    lines += [f" Images: {i['images']}", f" Networks: {i['networks']}",
              f" Server Version: {i['server_version']}", f" API Version: {i['api_version']}",
              f" Kernel Version: {i['kernel']}"]
    lines += _fields(" Backends", list(i["backends"].items()), indent="  ")
    print("\n".join(lines))
    return 0
