"""Where forwarded queries go: `--dns-upstream`, or the host's /etc/resolv.conf."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address
from pathlib import Path

from sheep_runtime.errors import InvalidArgument

DNS_PORT = 53
RESOLV_CONF = Path("/etc/resolv.conf")

Upstream = tuple[str, int]


def parse_upstreams(specs: Sequence[str]) -> tuple[Upstream, ...]:
    """Each "IP" or "IPv4:PORT" (IPv6: "[IP]:PORT") as (address, port)."""
    out: list[Upstream] = []
    for spec in specs:
        host, port = spec, DNS_PORT
        if spec.startswith("["):
            host, _, rest = spec[1:].partition("]")
            if rest:
                port = _port(spec, rest.removeprefix(":"))
        elif spec.count(":") == 1:
            host, _, p = spec.partition(":")
            port = _port(spec, p)
        try:
            out.append((str(ip_address(host)), port))
        except ValueError:
            raise InvalidArgument(f"DNS upstream {spec!r} is not an IP address",
                                  field="dns_upstream") from None
    return tuple(out)


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InvalidArgument(f"DNS upstream {spec!r}: bad port", field="dns_upstream")
    return int(text)


def host_upstreams(path: Path = RESOLV_CONF) -> tuple[Upstream, ...]:
    """The `nameserver` lines of the host's resolv.conf (none if it is unreadable)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ()
    found: list[str] = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            found.append(words[1].split("%")[0])
    try:
        return parse_upstreams(found)
    except InvalidArgument:
        return tuple((a, DNS_PORT) for a in found if _is_ip(a))


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True

