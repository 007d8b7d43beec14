"""CNI results: an attachment as the JSON each spec version expects, a chained
`prevResult` passed through and extended, and what CHECK compares with it.

Versions differ in little: 0.3.x and 0.4.0 tag each IP with `"version": "4"`, 1.0.0
dropped the tag, 1.1.0 added an interface's `mtu` (and fields we do not use).
"""

from __future__ import annotations

from typing import Any

from sheep_runtime.cni.codes import CHECK_FAILED
from sheep_runtime.cni.plugin import INVALID_CONFIG, Failure
from sheep_runtime.ops.cni import CniResult

Json = dict[str, Any]


def _legacy(version: str) -> bool:
    return version.startswith("0.")


def _interfaces(r: CniResult, version: str) -> list[Json]:
    host: Json = {"name": r.host_interface, "mac": r.host_mac}
    container: Json = {"name": r.container_interface, "mac": r.container_mac,
                       "sandbox": r.netns}
    if version == "1.1.0":
        host["mtu"] = container["mtu"] = r.mtu
    return [host, container]


def _ip(ip: Json, version: str) -> Json:
    """An IP entry in `version`'s shape (prevResult may come in another one)."""
    out = {k: v for k, v in ip.items() if k != "version"}
    if _legacy(version):
        family = "6" if ":" in str(ip.get("address", "")) else "4"
        return {"version": family, **out}
    return out


def _list(prev: Json, key: str) -> list[Json]:
    items = prev.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Failure(INVALID_CONFIG, f"prevResult.{key} is not a list of objects",
                      f"INVALID_ARGUMENT: prevResult.{key}")
    return items


def add_result(r: CniResult, *, version: str, prev: Json | None = None) -> Json:
    """The ADD result in `version`: `prev`'s interfaces, IPs, routes and DNS first,
    then ours (the IP's `interface` is our container interface's index)."""
    prev = prev or {}
    interfaces = _list(prev, "interfaces")
    ips = [_ip(ip, version) for ip in _list(prev, "ips")]
    routes = _list(prev, "routes")
    index = len(interfaces) + 1
    ips.append(_ip({"address": str(r.address), "gateway": str(r.gateway),
                    "interface": index}, version))
    defaults = [{"dst": "0.0.0.0/0", "gw": str(r.gateway)}]
    if r.address6 is not None and r.gateway6 is not None:
        ips.append(_ip({"address": str(r.address6), "gateway": str(r.gateway6),
                        "interface": index}, version))
        defaults.append({"dst": "::/0", "gw": str(r.gateway6)})
    dns = prev.get("dns")
    return {
        "cniVersion": version,
        "interfaces": interfaces + _interfaces(r, version),
        "ips": ips,
        "routes": [*routes, *(d for d in defaults if d not in routes)],
        "dns": dns if isinstance(dns, dict) else {},
    }


def check_against(r: CniResult, *, netns: str, prev: Json | None) -> None:
    """CHECK: the recorded attachment `r` must be the one libcni cached (`prev`) in
    the netns it names; raise Failure saying what differs."""
    if prev is None:
        raise Failure(INVALID_CONFIG, "CHECK needs the prevResult of the ADD",
                      "INVALID_ARGUMENT: prevResult")
    if netns != r.netns:
        raise Failure(CHECK_FAILED, f"attachment {r.key.container_id}/{r.key.ifname} is "
                      f"in netns {r.netns}, not {netns}", "FAILED_PRECONDITION: NETNS_DIFFERS")
    ifaces = {i.get("name"): i for i in _list(prev, "interfaces")}
    for name, mac, sandbox in ((r.container_interface, r.container_mac, r.netns),
                               (r.host_interface, r.host_mac, None)):
        want = ifaces.get(name)
        if want is None or (want.get("sandbox") or None) != sandbox:
            raise Failure(CHECK_FAILED, f"prevResult has no interface {name} "
                          f"{'in ' + sandbox if sandbox else 'on the host'}",
                          "FAILED_PRECONDITION: INTERFACE_DIFFERS")
        if want.get("mac") and str(want["mac"]).lower() != mac.lower():
            raise Failure(CHECK_FAILED, f"interface {name} has MAC {mac}, prevResult says "
                          f"{want['mac']}", "FAILED_PRECONDITION: MAC_DIFFERS")
    addresses = {str(ip.get("address")): ip for ip in _list(prev, "ips")}
    ip = addresses.get(str(r.address))
    if ip is None:
        raise Failure(CHECK_FAILED, f"prevResult does not list address {r.address}",
                      "FAILED_PRECONDITION: ADDRESS_DIFFERS")
    if ip.get("gateway") and ip["gateway"] != str(r.gateway):
        raise Failure(CHECK_FAILED, f"gateway is {r.gateway}, prevResult says "
                      f"{ip['gateway']}", "FAILED_PRECONDITION: GATEWAY_DIFFERS")
