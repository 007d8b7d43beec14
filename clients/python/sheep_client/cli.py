"""sheepctl: the command-line client, built on `sheep_client.SheepClient`.

Exit statuses follow docker's: `run` exits 125 when the container could not be
created (the daemon refused, or is unreachable), 126 when its command is not
executable, 127 when it is not found, else the container's own status (0 with -d).
Other commands exit 1 when the daemon fails the call. Usage errors exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sheep_client import __version__, commands
from sheep_client.client import SheepClient
from sheep_client.connection import DEFAULT_SOCKET, is_tcp, target
from sheep_client.errors import SheepClientError, Unavailable

#: Exit status of a failed `run` (docker's "the error is with the daemon").
RUN_FAILED = 125
#: Exit status of any other command the daemon failed, and of a usage error.
FAILED, USAGE = 1, 2

EPILOG = ("Exit status: run gives 125 if the container could not be created, 126 or 127 "
          "if its command is not executable or not found, else the container's; other "
          "commands give 1 when the daemon fails the call; usage errors give 2.")
FORMAT_HELP = "table (default) or json: one JSON object per line, proto field names"


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=f"sheepctl {__version__}",
                   help="print sheepctl's version and exit (the daemon's: sheepctl version)")
    p.add_argument("--socket", default="",
                   help=f"the daemon's Unix socket (env SHEEP_SOCKET; default {DEFAULT_SOCKET})")
    p.add_argument("--host", default="",
                   help="daemon address instead: tcp://HOST:PORT (mutual TLS), "
                        "unix:///PATH or a socket path")
    p.add_argument("--tls-ca", default="",
                   help="PEM CA of the daemon's certificate, for tcp:// (SHEEP_TLS_CA)")
    p.add_argument("--tls-cert", default="",
                   help="PEM client certificate, for tcp:// (SHEEP_TLS_CERT)")
    p.add_argument("--tls-key", default="", help="PEM key of --tls-cert (SHEEP_TLS_KEY)")


RUN_USAGE = ("sheepctl run [OPTIONS] IMAGE [COMMAND [ARG...]]\n"
             "       sheepctl run [OPTIONS] -- COMMAND [ARG...]")
RUN_DESCRIPTION = (
    "The first argument is the IMAGE (an imported image's name or id prefix; its Cmd "
    "runs when no COMMAND follows), unless it is -- or an absolute path, or --rootfs "
    "is given: then there is no image, and the arguments are the command, run on a "
    "read-only view of the host's root (or on --rootfs DIR). Options go before the "
    "IMAGE; everything after it is the command's.")


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="create and start a container", usage=RUN_USAGE,
                       description=RUN_DESCRIPTION)
    r.add_argument("-d", "--detach", action="store_true",
                   help="print the container's id once it runs and exit; without it, print "
                        "the id and wait for the exit (its status is sheepctl's)")
    r.add_argument("--name", default="", help="unique name (default: sheep-<id prefix>)")
    r.add_argument("--network", action="append", default=[], metavar="NETWORK",
                   help="attach to this network (repeatable; default: sheep0)")
    r.add_argument("--network-mode", default="", choices=["", "none"],
                   help="none: loopback only, no network")
    r.add_argument("--network-alias", action="append", default=[], metavar="NAME",
                   help="extra DNS name of the container on each of its networks "
                        "(repeatable)")
    r.add_argument("--ip", default="", help="address on the first network (default: leased)")
    r.add_argument("-p", "--publish", action="append", default=[], metavar="SPEC",
                   help="publish a port on the first network: "
                        "[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]")
    r.add_argument("--hostname", default="", help="hostname inside (default: the name)")
    r.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable of the command (repeatable)")
    r.add_argument("--cap-add", action="append", default=[], metavar="CAP",
                   help="add a capability to the default set, e.g. NET_ADMIN; ALL for "
                        "every one (repeatable)")
    r.add_argument("--privileged", action="store_true",
                   help="every capability and no seccomp filter (the daemon's own "
                        "directories stay hidden)")
    r.add_argument("-w", "--workdir", default="", metavar="DIR",
                   help="working directory of the command (default: the image's, else /)")
    r.add_argument("--rootfs", default="", metavar="DIR",
                   help="the root is this directory of the daemon's host (never written: "
                        "writes go to the container's own layer); the arguments are then "
                        "the command")
    r.add_argument("command", nargs=argparse.REMAINDER, metavar="IMAGE [COMMAND...]",
                   help="the image, then the command and its arguments (see above)")
    r.set_defaults(fn=commands.cmd_run, failed=RUN_FAILED)


def _listing_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print only the ids")
    p.add_argument("--format", choices=["table", "json"], default="table", help=FORMAT_HELP)


def _add_containers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="exited ones too")
    _listing_flags(ps)
    ps.set_defaults(fn=commands.cmd_ps)
    i = sub.add_parser("inspect", help="show a container as JSON")
    i.add_argument("id", help="name, id or unique id prefix")
    i.set_defaults(fn=commands.cmd_inspect)
    s = sub.add_parser("stop", help="stop containers (SIGTERM, then SIGKILL)")
    s.add_argument("-t", "--time", type=int, default=10, metavar="SECONDS",
                   help="seconds between SIGTERM and SIGKILL (default 10)")
    s.add_argument("ids", nargs="+", metavar="CONTAINER", help="names or ids")
    s.set_defaults(fn=commands.cmd_stop)
    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="kill running ones first")
    rm.add_argument("ids", nargs="+", metavar="CONTAINER", help="names or ids")
    rm.set_defaults(fn=commands.cmd_rm)
    pt = sub.add_parser("port", help="list a container's published ports")
    pt.add_argument("id", help="name, id or unique id prefix")
    pt.set_defaults(fn=commands.cmd_port)


def _add_networks(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    n = sub.add_parser("network", help="manage networks")
    nsub = n.add_subparsers(dest="net_cmd", required=True, metavar="COMMAND")
    nc = nsub.add_parser("create", help="create a network with its own bridge")
    nc.add_argument("name", help="the network's name")
    nc.add_argument("--subnet", required=True, help="IPv4 subnet in CIDR form")
    nc.add_argument("--gateway", default="", help="gateway address (default: the first)")
    nc.add_argument("--bridge", default="", help="bridge name (default: derived)")
    nc.add_argument("--mtu", type=int, default=0, help="MTU of the bridge and veths")
    nc.add_argument("--internal", action="store_true", help="no NAT to the outside")
    nc.add_argument("--no-icc", action="store_true",
                    help="containers on it cannot reach each other")
    nc.add_argument("--no-dns", action="store_true",
                    help="no embedded DNS on the gateway (containers do not resolve "
                         "each other by name)")
    nc.set_defaults(fn=commands.cmd_network_create)
    ls = nsub.add_parser("ls", help="list networks: leases allocated / capacity")
    _listing_flags(ls)
    ls.set_defaults(fn=commands.cmd_network_ls)
    for verb, fn, what in (("inspect", commands.cmd_network_inspect, "show a network as JSON"),
                           ("rm", commands.cmd_network_rm, "remove an unused network")):
        v = nsub.add_parser(verb, help=what)
        v.add_argument("name", help="name, id or unique id prefix")
        v.set_defaults(fn=fn)
    con = nsub.add_parser("connect", help="attach a running container to a network")
    con.add_argument("name", help="the network")
    con.add_argument("container", help="the container")
    con.add_argument("--ip", default="", help="address (default: leased)")
    con.add_argument("--interface", default="", help="interface name inside (default: ethN)")
    con.add_argument("-p", "--publish", action="append", default=[], metavar="SPEC",
                     help="publish a port, as for run")
    con.add_argument("--network-alias", action="append", default=[], metavar="NAME",
                     help="extra DNS name of the container on this network (repeatable)")
    con.set_defaults(fn=commands.cmd_network_connect)
    dis = nsub.add_parser("disconnect", help="detach a container from a network")
    dis.add_argument("name", help="the network")
    dis.add_argument("container", help="the container")
    dis.set_defaults(fn=commands.cmd_network_disconnect)


def _add_images(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = sub.add_parser("image", help="manage images")
    isub = i.add_subparsers(dest="image_cmd", required=True, metavar="COMMAND")
    imp = isub.add_parser("import", help="import an OCI layout, OCI archive or rootfs "
                                         "tarball (replaces an image of that name)")
    imp.add_argument("name", help="the image's name, e.g. minimal or busybox:1.36")
    imp.add_argument("path", help="the layout directory or archive, on the daemon's host")
    imp.add_argument("--trusted", action="store_true",
                     help="keep device nodes and setuid/setgid files (refused otherwise)")
    imp.set_defaults(fn=commands.cmd_image_import)
    ls = sub.add_parser("images", help="list images: name, id, size, created")
    _listing_flags(ls)
    ls.set_defaults(fn=commands.cmd_images)
    rmi = sub.add_parser("rmi", help="remove images no container is made from")
    rmi.add_argument("refs", nargs="+", metavar="IMAGE", help="names or id prefixes")
    rmi.set_defaults(fn=commands.cmd_rmi)


def _add_events_and_version(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("events", help="stream live events until interrupted")
    e.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="container=NAME_OR_ID, network=NAME or type=PREFIX (repeatable)")
    e.add_argument("--format", choices=["text", "json"], default="text",
                   help="text (default) or json: one JSON object per line")
    e.set_defaults(fn=commands.cmd_events)
    v = sub.add_parser("version", help="the daemon's version, API and backends as JSON")
    v.set_defaults(fn=commands.cmd_version)


def build_parser() -> argparse.ArgumentParser:
    """sheepctl's argument parser: connection flags, then one subcommand."""
    p = argparse.ArgumentParser(prog="sheepctl", description="sheep-runtime client",
                                epilog=EPILOG)
    _connection_flags(p)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_containers(sub)
    _add_networks(sub)
    _add_images(sub)
    _add_events_and_version(sub)
    p.set_defaults(failed=FAILED)
    return p


def unreachable(a: argparse.Namespace, err: SheepClientError) -> str:
    """What to tell the user when the daemon cannot be reached."""
    t = target(socket=a.socket, host=a.host)
    if not is_tcp(t):
        return (f"cannot reach sheepd at {t.removeprefix('unix:')}: is it running? "
                "(sudo systemctl start sheepd)")
    return (f"cannot reach sheepd at tcp://{t}: is it running, and does it accept this "
            f"client's certificate (--tls-ca, --tls-cert, --tls-key)? "
            f"({err.code.name}: {err.details})")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sheepctl`."""
    a = build_parser().parse_args(argv)
    failed = int(a.failed)
    try:
        with SheepClient(socket=a.socket, host=a.host, tls_ca=a.tls_ca,
                         tls_cert=a.tls_cert, tls_key=a.tls_key) as api:
            return int(a.fn(api, a))
    except Unavailable as e:
        print(f"sheepctl: {unreachable(a, e)}", file=sys.stderr)
        return failed
    except SheepClientError as e:
        print(f"sheepctl: {e.code.name}: {e.details}", file=sys.stderr)
        return failed
    except ValueError as e:
        print(f"sheepctl: {e}", file=sys.stderr)
        return RUN_FAILED if failed == RUN_FAILED else USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
