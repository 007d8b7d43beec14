"""Steps that configure the inside of a container netns, through pyroute2.

The attach path uses `ContainerNetns` (container_netns.py, raw netlink, ~10x cheaper)
instead; these stay as the baseline of bench/bench_netlink.py and for tests.

Each function takes a `RouteSocket` opened in that netns with
`open_route_socket(netns)`; the caller owns and closes it (one socket serves all the
networks of a container). The steps are separate so the caller can sequence them,
register undo actions and inject faults between them.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_interface
from typing import Any

from sheep_runtime.netlink.errors import is_errno, link_error
from sheep_runtime.netlink.transport import RouteSocket

_IFF_UP = 0x1
_IN6_ADDR_GEN_MODE_NONE = 1
# IPv6 link-local off: no address, no DAD and no MLD reports flooding the bridge.
_NO_IPV6_LINK_LOCAL = {
    "attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", _IN6_ADDR_GEN_MODE_NONE)]})]
}


@dataclass(frozen=True)
class InterfaceState:
    """What the kernel reports about one interface, for verification."""

    index: int
    name: str
    mac: str | None
    operstate: str
    up: bool
    mtu: int
    addresses: tuple[IPv4Interface | IPv6Interface, ...]


async def _link_msg(ipr: RouteSocket, ifname: str, what: str) -> Any:
    try:
        return (await ipr.link("get", ifname=ifname))[0]
    except Exception as exc:
        raise link_error(f"{what}: look up {ifname}", exc) from exc


async def configure_interface(
    ipr: RouteSocket, *, ifname: str, address: IPv4Interface, mtu: int | None = None
) -> None:
    """Put `address` (with its prefix) on `ifname` and bring it up without an IPv6
    link-local address. Idempotent: an address already present is fine.
    """
    what = f"configure {ifname} with {address}"
    index = int((await _link_msg(ipr, ifname, what))["index"])
    try:
        await ipr.addr(
            "add",
            index=index,
            address=str(address.ip),
            prefixlen=address.network.prefixlen,
        )
    except Exception as exc:
        if not is_errno(exc, errno.EEXIST):
            raise link_error(f"{what}: add address", exc) from exc
    # addr_gen_mode is ignored at veth creation but honoured in the message that
    # brings the link up: addrconf waits for the carrier, which comes a bit later.
    changes: dict[str, Any] = {"state": "up", "af_spec": _NO_IPV6_LINK_LOCAL}
    if mtu is not None:
        changes["mtu"] = mtu
    try:
        await ipr.link("set", index=index, **changes)
    except Exception as exc:
        raise link_error(f"{what}: set up", exc) from exc


async def bring_up_loopback(ipr: RouteSocket) -> None:
    """Bring `lo` up (a fresh netns has it down)."""
    try:
        await ipr.link("set", ifname="lo", state="up")
    except Exception as exc:
        raise link_error("bring up lo", exc) from exc


async def add_default_route(
    ipr: RouteSocket, *, gateway: IPv4Address, ifname: str | None = None
) -> None:
    """Set the IPv4 default route via `gateway` (replacing any previous one)."""
    what = f"add default route via {gateway}"
    spec: dict[str, Any] = {"dst": "0.0.0.0/0", "gateway": str(gateway)}
    if ifname is not None:
        spec["oif"] = int((await _link_msg(ipr, ifname, what))["index"])
    try:
        await ipr.route("replace", **spec)
    except Exception as exc:
        raise link_error(what, exc) from exc


async def read_interface(ipr: RouteSocket, ifname: str) -> InterfaceState:
    """The state of `ifname`: MAC, operstate, MTU and all its addresses."""
    what = f"read interface {ifname}"
    msg = await _link_msg(ipr, ifname, what)
    index = int(msg["index"])
    try:
        dump = await ipr.addr("dump", index=index)
        addresses = [ip_interface(f"{a.get('address')}/{a.get('prefixlen')}") async for a in dump]
    except Exception as exc:
        raise link_error(f"{what}: addresses", exc) from exc
    return InterfaceState(
        index=index,
        name=ifname,
        mac=msg.get("address"),
        operstate=str(msg.get("operstate") or "UNKNOWN"),
        up=bool(msg["flags"] & _IFF_UP),
        mtu=int(msg.get("mtu") or 0),
        addresses=tuple(addresses),
    )
