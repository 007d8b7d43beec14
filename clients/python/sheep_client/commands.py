"""What each sheepctl command does, on a `SheepClient`; cli.py parses the arguments.

Each command returns its exit status. Listings print a table (default), JSON lines
(`--format json`, one object per line, proto field names) or ids (`-q`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client.client import SheepClient
from sheep_client.errors import NotFound
from sheep_client.ports import parse_port

STATE = {pb.Container.CREATED: "created", pb.Container.RUNNING: "running",
         pb.Container.EXITED: "exited", pb.Container.UNKNOWN: "unknown"}
#: How long `run -d` watches for a command that cannot start (found and executed
#: within milliseconds of the start; 0.5 s leaves a wide margin on a loaded host).
EARLY_EXIT_SECONDS = 0.5
#: Exit statuses of a command that could not be run, as a shell and docker give them.
CANNOT_EXECUTE, NOT_FOUND = 126, 127
#: The retained events of a new container: replay all of them (none is older).
REPLAY_ALL = 1.0


def _dict(msg: Message) -> dict[str, object]:
    return MessageToDict(msg, preserving_proto_field_name=True)


def _json(msg: Message) -> str:
    return json.dumps(_dict(msg), indent=2)


def _pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep:
            raise ValueError(f"bad {what} {kv!r}: use KEY=VALUE")
        out[key] = value
    return out


def _addresses(c: pb.Container) -> str:
    return ",".join(f"{n.ip_address}/{n.prefix_length}" for n in c.networks) or "-"


def _listing(a: argparse.Namespace, items: Sequence[Message], *, ids: Callable[[], list[str]],
             table: Callable[[], list[str]]) -> int:
    """Print a listing as -q / --format asked."""
    if a.quiet:
        lines = ids()
    elif a.format == "json":
        lines = [json.dumps(_dict(m), separators=(",", ":")) for m in items]
    else:
        lines = table()
    for line in lines:
        print(line)
    return 0


# -- containers -------------------------------------------------------------------


def _image_and_command(a: argparse.Namespace) -> tuple[str, list[str]]:
    """`run`'s IMAGE and command: the first argument is the image unless it is --, an
    absolute path (no image name is) or --rootfs was given."""
    args: list[str] = a.command
    if args[:1] == ["--"]:
        return "", args[1:]
    if not args or args[0].startswith("/") or a.rootfs:
        return "", args
    return args[0], args[1:]


def _networks(a: argparse.Namespace) -> list[pb.NetworkAttachmentRequest]:
    """The networks of `run`: --network ones (sheep0 if none but --ip, -p or
    --network-alias ask for one), with the aliases on each, --ip and -p on the first."""
    ports = [parse_port(p) for p in a.publish]
    nets = [pb.NetworkAttachmentRequest(network=n, aliases=a.network_alias)
            for n in a.network]
    if not nets and (a.ip or ports or a.network_alias):
        nets = [pb.NetworkAttachmentRequest(network="sheep0", aliases=a.network_alias)]
    if nets:
        nets[0].ip = a.ip
        nets[0].ports.extend(ports)
    return nets


def _exit_code(api: SheepClient, c: pb.Container, *, duration: float | None) -> int | None:
    """The container's exit status once it exits; None if it still runs after
    `duration` seconds (None: wait for ever). Statuses are 0-255, as a shell sees them."""
    with api.watch_events({"container": c.id, "type": "container.exited"}, since=REPLAY_ALL,
                          duration=duration) as events:
        for e in events:
            return int(e.attributes.get("exit_code", "0")) & 0xFF
    return None


def _cannot_run(c: pb.Container, code: int | None) -> bool:
    """Tell the user a command was not found or not executable; True if so."""
    why = {NOT_FOUND: "not found", CANNOT_EXECUTE: "not executable"}.get(code or 0)
    if why is None:
        return False
    print(f"sheepctl: {c.command[0]}: {why} in the container (exit {code}); it stays, "
          f"exited, as {c.name}: sheepctl rm {c.name}", file=sys.stderr)
    return True


def _create(api: SheepClient, a: argparse.Namespace) -> pb.Container:
    image, command = _image_and_command(a)
    if not image and not command:
        raise ValueError("run needs an image or a command: sheepctl run [OPTIONS] IMAGE "
                         "[COMMAND [ARG...]] or sheepctl run [OPTIONS] -- COMMAND [ARG...]")
    try:
        return api.create_container(
            command, name=a.name, env=_pairs(a.env, "environment variable"),
            hostname=a.hostname, networks=_networks(a), network_mode=a.network_mode,
            privileged=a.privileged, cap_add=a.cap_add, image=image,
            rootfs=os.path.abspath(a.rootfs) if a.rootfs else "", working_dir=a.workdir)
    except NotFound as e:
        if image and e.resource is not None and e.resource.type == "image":
            raise NotFound(e.code, f"{e.details} (sheepctl images lists them; a command "
                           "on the host's root goes after --: sheepctl run [OPTIONS] -- "
                           f"{' '.join([image, *command])})") from None
        raise


def cmd_run(api: SheepClient, a: argparse.Namespace) -> int:
    """Create and start a container. -d: print its id once it runs; else print the id,
    wait for the exit and return its status."""
    c = _create(api, a)
    if a.detach:
        code = _exit_code(api, c, duration=EARLY_EXIT_SECONDS)
        if _cannot_run(c, code):
            return code or 0
        print(c.id)
        return 0
    print(c.id, flush=True)
    code = _exit_code(api, c, duration=None)
    if code is None:  # the stream ended without the exit: the daemon went away
        print("sheepctl: lost the daemon before the container exited", file=sys.stderr)
        return 125
    _cannot_run(c, code)
    return code


def cmd_ps(api: SheepClient, a: argparse.Namespace) -> int:
    """List containers (running ones; every one with -a)."""
    containers = api.list_containers(all=a.all)

    def table() -> list[str]:
        lines = [f"{'ID':<12}  {'NAME':<20}  {'STATE':<8}  {'PID':>7}  ADDRESSES  COMMAND"]
        for c in containers:
            state = STATE.get(c.state, "?")
            if c.state == pb.Container.EXITED:
                state = f"exited({c.exit_code})"
            lines.append(f"{c.id[:12]:<12}  {c.name:<20}  {state:<8}  {c.pid:>7}  "
                         f"{_addresses(c)}  " + " ".join(c.command))
        return lines

    return _listing(a, containers, ids=lambda: [c.id[:12] for c in containers], table=table)


def cmd_inspect(api: SheepClient, a: argparse.Namespace) -> int:
    """Print one container as JSON."""
    print(_json(api.inspect(a.id)))
    return 0


def cmd_stop(api: SheepClient, a: argparse.Namespace) -> int:
    """Stop containers: SIGTERM, SIGKILL after -t seconds."""
    for ref in a.ids:
        c = api.stop_container(ref, timeout_seconds=a.time)
        print(f"{c.id[:12]}\texited({c.exit_code})")
    return 0


def cmd_rm(api: SheepClient, a: argparse.Namespace) -> int:
    """Remove containers (running ones too with -f)."""
    for ref in a.ids:
        print(api.remove_container(ref, force=a.force))
    return 0


def cmd_port(api: SheepClient, a: argparse.Namespace) -> int:
    """List a container's published ports, as `docker port` does."""
    for p in api.inspect(a.id).ports:
        n = max(p.count, 1)
        cport = f"{p.container_port}" + (f"-{p.container_port + n - 1}" if n > 1 else "")
        hport = f"{p.host_port}" + (f"-{p.host_port + n - 1}" if n > 1 else "")
        print(f"{cport}/{p.protocol or 'tcp'} -> {p.host_ip or '0.0.0.0'}:{hport}")
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

    def table() -> list[str]:
        lines = [f"{'NAME':<16}  {'BRIDGE':<15}  {'SUBNET':<18}  {'GATEWAY':<15}  LEASES"]
        lines += [f"{n.name:<16}  {n.bridge:<15}  {n.subnet:<18}  {n.gateway:<15}  "
                  f"{n.leases_allocated}/{n.leases_capacity}" for n in networks]
        return lines

    return _listing(a, networks, ids=lambda: [n.id[:12] for n in networks], table=table)


def cmd_network_inspect(api: SheepClient, a: argparse.Namespace) -> int:
    print(_json(api.inspect_network(a.name)))
    return 0


def cmd_network_rm(api: SheepClient, a: argparse.Namespace) -> int:
    print(api.remove_network(a.name))
    return 0


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


def _size(n: float) -> str:
    """Bytes as docker prints them: three significant digits, decimal units."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 999.5:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"


#: Units of an age, largest first, as `docker images` gives it ("3 minutes ago").
AGE_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def _ago(when: Timestamp, now: float) -> str:
    s = max(0, int(now) - when.seconds)
    unit, n = next((u, n) for u, n in AGE_UNITS if s >= n or n == 1)
    return f"{s // n} {unit}{'' if s // n == 1 else 's'} ago"


def cmd_image_import(api: SheepClient, a: argparse.Namespace) -> int:
    """Import an image from a path (made absolute: the daemon reads it); print its id."""
    print(api.import_image(a.name, os.path.abspath(a.path), trusted=a.trusted).id)
    return 0


def cmd_images(api: SheepClient, a: argparse.Namespace) -> int:
    """List images: name, short id, size, created."""
    images = api.list_images()

    def table() -> list[str]:
        now = time.time()
        lines = [f"{'NAME':<24}  {'ID':<12}  {'SIZE':>8}  CREATED"]
        lines += [f"{i.name:<24}  {_short(i.id):<12}  {_size(i.size_bytes):>8}  "
                  f"{_ago(i.created_at, now)}" for i in images]
        return lines

    return _listing(a, images, ids=lambda: [_short(i.id) for i in images], table=table)


def cmd_rmi(api: SheepClient, a: argparse.Namespace) -> int:
    """Remove images; print each one's id."""
    for ref in a.refs:
        print(api.remove_image(ref))
    return 0


# -- events and version -----------------------------------------------------------


def cmd_events(api: SheepClient, a: argparse.Namespace) -> int:
    """Stream events until interrupted; an unknown filter is the daemon's error."""
    with api.watch_events(_pairs(a.filter, "filter")) as events:
        for e in events:
            if a.format == "json":
                print(json.dumps(_dict(e), separators=(",", ":")), flush=True)
                continue
            attrs = " ".join(f"{k}={v}" for k, v in sorted(e.attributes.items()))
            print(f"{e.time.ToDatetime().isoformat()}Z {e.type} {e.container_id[:12]} "
                  f"{e.network} {attrs}".rstrip(), flush=True)
    return 0


def cmd_version(api: SheepClient, a: argparse.Namespace) -> int:
    """The daemon's versions and backends, as JSON."""
    print(_json(api.version()))
    return 0
