"""sheepctl: the command-line client, built on `sheep_client.SheepClient`.

Exit statuses follow docker's: a usage error exits 125. `run` and `exec` exit 125 when
the daemon fails the call (or cannot be reached), 126 when the command is not
executable, 127 when it is not found, else the command's own status (`run -d`: 0).
Other commands exit 1 when the daemon fails the call."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeAlias, TypeVar, cast

from sheep_client import __version__, commands, container_io, parsing, ports, run, stats
from sheep_client import cluster as cluster_cmd
from sheep_client.client import SheepClient
from sheep_client.connection import DEFAULT_SOCKET, is_tcp, target
from sheep_client.errors import SheepClientError, Unavailable

#: Exit status of a usage error, and of `run` or `exec` the daemon failed (docker's
#: "the error is with the daemon itself").
USAGE = DAEMON_FAILED = 125
#: Exit status of any other command the daemon failed.
FAILED = 1
#: Exit status after Ctrl-C, and when the reader of our output went away (SIGPIPE).
INTERRUPTED, BROKEN_PIPE = 130, 141

EPILOG = ("Exit status: 125 for a usage error; run and exec give 125 when the daemon "
          "fails them, 126 or 127 if the command is not executable or not found, else "
          "the command's; other commands give 1 when the daemon fails the call.")
FORMAT_HELP = "table (default) or json: one JSON object per line, proto field names"
TIME_HELP = ("RFC 3339 (2024-05-01T10:00:00Z), Unix seconds, or a duration before now "
             "(10m, 1h30s)")

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """argparse with docker's exit status for a usage error (125, not 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def value(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    """An argparse type from a parser of sheep_client.parsing: its ValueError message
    becomes the usage error's."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = name
    return convert


def _nonnegative(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad number {text!r}: use a whole number >= 0")
    return int(text)


SECONDS = value(_nonnegative, "seconds")
WHEN = value(lambda t: parsing.parse_time(t, now=time.time()), "time")


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
    "IMAGE; everything after it is the command's. Without -d, the container's stdout "
    "and stderr stream to sheepctl's until it exits, and its exit status is sheepctl's.")

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_run_networking(r: argparse.ArgumentParser) -> None:
    r.add_argument("--network", action="append", default=[], metavar="NETWORK",
                   help="attach to this network (repeatable; default: sheep0)")
    r.add_argument("--network-mode", default="", choices=["", "none"],
                   help="none: loopback only, no network")
    r.add_argument("--network-alias", action="append", default=[], metavar="NAME",
                   help="extra DNS name of the container on each of its networks "
                        "(repeatable)")
    r.add_argument("--ip", default="", help="address on the first network (default: leased)")
    r.add_argument("-p", "--publish", action="append", default=[], metavar="SPEC",
                   help=f"publish a port on the first network: {ports.USAGE}")
    r.add_argument("--hostname", default="", help="hostname inside (default: the name)")


def _add_run_lifecycle(r: argparse.ArgumentParser) -> None:
    r.add_argument("--rm", action="store_true",
                   help="remove the container when it exits (with -d the daemon does)")
    r.add_argument("--restart", type=value(parsing.parse_restart_policy, "restart policy"),
                   default=None, metavar="POLICY",
                   help="no (default), on-failure[:MAX_RETRIES], always or unless-stopped")
    r.add_argument("--stop-signal", default="", metavar="SIGNAL",
                   help="signal that stops it, a name or number (default SIGTERM)")
    r.add_argument("--stop-timeout", type=SECONDS, default=0, metavar="SECONDS",
                   help="seconds from the stop signal to SIGKILL (default 10)")
    r.add_argument("-m", "--memory", type=value(parsing.parse_memory, "memory"), default=0,
                   metavar="BYTES", help="memory limit: b, k, m or g units (512m, 1g)")
    r.add_argument("--cpus", type=value(parsing.parse_cpus, "cpus"), default=0.0,
                   metavar="N", help="CPU limit in cores, e.g. 1.5")
    r.add_argument("--pids-limit", type=value(parsing.parse_pids_limit, "pids limit"),
                   default=0, metavar="N", help="most tasks at once (-1 or 0: no limit)")
    r.add_argument("--log-opt", action="append", default=[],
                   type=value(parsing.parse_log_opt, "log opt"), metavar="KEY=VALUE",
                   help="log rotation: max-size=SIZE (e.g. 10m), max-file=N (repeatable)")


def _add_run(sub: Subparsers) -> None:
    r = sub.add_parser("run", help="create and start a container", usage=RUN_USAGE,
                       description=RUN_DESCRIPTION)
    r.add_argument("-d", "--detach", action="store_true",
                   help="print the container's id once it runs and exit; without it, "
                        "stream its output, wait for the exit and return its status")
    r.add_argument("--name", default="", help="unique name (default: sheep-<id prefix>)")
    _add_run_networking(r)
    _add_run_lifecycle(r)
    r.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable of the command; KEY alone takes sheepctl's "
                        "(repeatable)")
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
    r.set_defaults(fn=run.cmd_run, failed=DAEMON_FAILED)


def _listing_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print only the ids")
    p.add_argument("--format", choices=["table", "json"], default="table", help=FORMAT_HELP)


def _names(p: argparse.ArgumentParser, what: str = "names or ids") -> None:
    p.add_argument("ids", nargs="+", metavar="CONTAINER", help=what)


def _add_lifecycle(sub: Subparsers) -> None:
    for verb, fn, what in (("start", commands.cmd_start, "start created or exited containers"),
                           ("wait", commands.cmd_wait,
                            "wait for containers to exit; print their exit codes"),
                           ("inspect", commands.cmd_inspect, "show containers as JSON")):
        p = sub.add_parser(verb, help=what)
        _names(p, "names, ids or unique id prefixes")
        p.set_defaults(fn=fn)
    for verb, fn, what in (("stop", commands.cmd_stop,
                            "stop containers (stop signal, then SIGKILL)"),
                           ("restart", commands.cmd_restart, "stop and start containers")):
        p = sub.add_parser(verb, help=what)
        p.add_argument("-t", "--time", type=SECONDS, default=None, metavar="SECONDS",
                       help="seconds from the stop signal to SIGKILL (default: the "
                            "container's --stop-timeout, else 10)")
        _names(p)
        p.set_defaults(fn=fn)
    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="kill running ones first")
    _names(rm)
    rm.set_defaults(fn=commands.cmd_rm)


def _add_containers(sub: Subparsers) -> None:
    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="exited ones too")
    _listing_flags(ps)
    ps.set_defaults(fn=commands.cmd_ps)
    _add_lifecycle(sub)
    pt = sub.add_parser("port", help="list a container's published ports")
    pt.add_argument("id", help="name, id or unique id prefix")
    pt.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]",
                    help="only the host addresses of this container port")
    pt.set_defaults(fn=commands.cmd_port)
    st = sub.add_parser("stats", help="containers' CPU, memory, network and pids usage")
    mode = st.add_mutually_exclusive_group()
    mode.add_argument("--stream", action="store_true",
                      help="refresh every second, with CPU %% between samples, until Ctrl-C")
    mode.add_argument("--no-stream", dest="stream", action="store_false",
                      help="one sample, with the CPU time used so far (the default)")
    st.add_argument("--format", choices=["table", "json"], default="table", help=FORMAT_HELP)
    st.add_argument("containers", nargs="*", metavar="CONTAINER",
                    help="names or ids (default: every running container)")
    st.set_defaults(fn=stats.cmd_stats)


def _add_io(sub: Subparsers) -> None:
    lg = sub.add_parser("logs", help="print a container's stdout and stderr")
    lg.add_argument("-f", "--follow", action="store_true",
                    help="go on with new output until the container exits")
    lg.add_argument("-n", "--tail", type=value(parsing.parse_tail, "tail"), default=None,
                    metavar="N", help="only the last N lines (default: all)")
    lg.add_argument("--since", type=WHEN, default=None, metavar="TIME",
                    help=f"only lines written since TIME: {TIME_HELP}")
    lg.add_argument("--until", type=WHEN, default=None, metavar="TIME",
                    help="only lines written before TIME (as --since)")
    lg.add_argument("-t", "--timestamps", action="store_true",
                    help="start each line with the time it was written")
    lg.add_argument("container", help="name, id or unique id prefix")
    lg.set_defaults(fn=container_io.cmd_logs)
    ex = sub.add_parser("exec", help="run a command in a running container",
                        usage="sheepctl exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    ex.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable, on top of the container's; KEY alone "
                         "takes sheepctl's (repeatable)")
    ex.add_argument("-w", "--workdir", default="", metavar="DIR",
                    help="working directory (default: the container's)")
    ex.add_argument("--timeout", type=SECONDS, default=0, metavar="SECONDS",
                    help="kill the command after this long (default 60)")
    ex.add_argument("container", help="name, id or unique id prefix")
    ex.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                    help="the command and its arguments")
    ex.set_defaults(fn=container_io.cmd_exec, failed=DAEMON_FAILED)


def _add_networks(sub: Subparsers) -> None:
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
    for verb, fn, what in (("inspect", commands.cmd_network_inspect,
                            "show networks as JSON"),
                           ("rm", commands.cmd_network_rm, "remove unused networks")):
        v = nsub.add_parser(verb, help=what)
        v.add_argument("names", nargs="+", metavar="NETWORK",
                       help="names, ids or unique id prefixes")
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


def _add_images(sub: Subparsers) -> None:
    i = sub.add_parser("image", help="manage images")
    isub = i.add_subparsers(dest="image_cmd", required=True, metavar="COMMAND")
    imp = isub.add_parser("import", help="import an OCI layout, OCI archive or rootfs "
                                         "tarball (replaces an image of that name)")
    imp.add_argument("name", help="the image's name, e.g. minimal or busybox:1.36")
    imp.add_argument("path", help="the layout directory or archive, on the daemon's host")
    imp.add_argument("--trusted", action="store_true",
                     help="keep device nodes and setuid/setgid files (refused otherwise)")
    imp.set_defaults(fn=commands.cmd_image_import)
    ls = sub.add_parser("images", help="list images: name, id, created, size")
    _listing_flags(ls)
    ls.set_defaults(fn=commands.cmd_images)
    rmi = sub.add_parser("rmi", help="remove images no container is made from")
    rmi.add_argument("refs", nargs="+", metavar="IMAGE", help="names or id prefixes")
    rmi.set_defaults(fn=commands.cmd_rmi)


def _add_events_and_version(sub: Subparsers) -> None:
    e = sub.add_parser("events", help="stream live events until interrupted")
    e.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="container=NAME_OR_ID, network=NAME or type=PREFIX (repeatable)")
    e.add_argument("--since", type=WHEN, default=None, metavar="TIME",
                   help=f"replay the retained events since TIME first: {TIME_HELP}")
    e.add_argument("--until", type=WHEN, default=None, metavar="TIME",
                   help="stop at TIME (as --since)")
    e.add_argument("--format", choices=["text", "json"], default="text",
                   help="text (default) or json: one JSON object per line")
    e.set_defaults(fn=commands.cmd_events)
    for verb, fn, what in (("version", commands.cmd_version,
                            "the client's and the daemon's versions and backends"),
                           ("info", commands.cmd_info,
                            "containers by state, images, networks, versions, backends")):
        v = sub.add_parser(verb, help=what)
        v.add_argument("--format", choices=["text", "json"], default="text",
                       help="text (default) or json: one JSON object")
        v.set_defaults(fn=fn)


def build_parser() -> argparse.ArgumentParser:
    """sheepctl's argument parser: connection flags, then one subcommand."""
    p = Parser(prog="sheepctl", description="sheep-runtime client", epilog=EPILOG)
    _connection_flags(p)
    # Subcommands' parsers are Parsers too (argparse makes them of the parent's class).
    sub = cast("Subparsers", p.add_subparsers(dest="cmd", required=True, metavar="COMMAND"))
    _add_run(sub)
    _add_containers(sub)
    _add_io(sub)
    _add_networks(sub)
    _add_images(sub)
    _add_events_and_version(sub)
    cluster_cmd.add_parser(sub)
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
        return USAGE
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # e.g. `sheepctl logs web | head`: not an error of ours
        sys.stderr.close()
        return BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
