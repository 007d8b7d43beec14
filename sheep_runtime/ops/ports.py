"""Host port leases: which container publishes which host ports. Like the address
pools, it counts publications still being set up, so two attaches cannot both win."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from ipaddress import ip_address

from sheep_runtime.errors import AlreadyExists, InvalidArgument
from sheep_runtime.model import PortMapping

MAX_RANGE = 4096


def validate_ports(ports: Sequence[PortMapping]) -> tuple[PortMapping, ...]:
    """Check each mapping's numbers and address; InvalidArgument names the bad one."""
    for p in ports:
        where = f"port mapping {describe(p)}"
        if p.protocol not in ("tcp", "udp"):
            raise InvalidArgument(f"{where}: protocol must be tcp or udp", field="ports")
        if not 1 <= p.count <= MAX_RANGE:
            raise InvalidArgument(f"{where}: a range holds 1 to {MAX_RANGE} ports",
                                  field="ports")
        for name, first in (("host", p.host_port), ("container", p.container_port)):
            if first < 1 or first + p.count - 1 > 65535:
                raise InvalidArgument(f"{where}: {name} ports must be within 1-65535",
                                      field="ports")
        if p.host_ip:
            try:
                host = ip_address(p.host_ip)
            except ValueError:
                raise InvalidArgument(f"{where}: {p.host_ip!r} is not an IPv4 or IPv6 "
                                      "address", field="ports") from None
            if host.version == 6 and host.is_loopback:  # see firewall/rules.py
                raise InvalidArgument(f"{where}: ::1 cannot be published (no IPv6 "
                                      "route_localnet); use 127.0.0.1", field="ports")
    keys = [k for p in ports for k in _keys(p)]
    if len(keys) != len(set(keys)):
        raise InvalidArgument("the same host port is published twice", field="ports")
    return tuple(ports)


def describe(p: PortMapping) -> str:
    """Docker's notation: [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END]/PROTO."""
    def rng(first: int) -> str:
        return f"{first}-{first + p.count - 1}" if p.count > 1 else str(first)
    host = (f"[{p.host_ip}]:" if ":" in p.host_ip else f"{p.host_ip}:") if p.host_ip else ""
    return f"{host}{rng(p.host_port)}:{rng(p.container_port)}/{p.protocol}"


def _keys(p: PortMapping) -> Iterable[tuple[str, str, int]]:
    return ((p.protocol, p.host_ip, p.host_port + i) for i in range(p.count))


class PortTable:
    """(protocol, host port) -> the host addresses it is published on, and by whom."""

    def __init__(self) -> None:
        self._owners: dict[tuple[str, int], dict[str, str]] = collections.defaultdict(dict)

    def owner(self, protocol: str, host_ip: str, port: int) -> str | None:
        """The container holding that port on that address (or on every address)."""
        held = self._owners.get((protocol, port), {})
        return next((c for ip, c in held.items() if _collide(ip, host_ip)), None)

    def reserve(self, container_id: str, ports: Sequence[PortMapping]) -> None:
        """Publish all of `ports` for the container, or none (AlreadyExists names the
        holder)."""
        for p in ports:
            for proto, ip, port in _keys(p):
                holder = self.owner(proto, ip, port)
                if holder is not None and holder != container_id:
                    raise AlreadyExists(f"host port {port}/{proto}"
                                        f"{' on ' + ip if ip else ''} is already published "
                                        f"by container {holder[:12]}", reason="PORT_TAKEN",
                                        resource_type="port", resource_name=f"{port}/{proto}")
        for p in ports:
            for proto, ip, port in _keys(p):
                self._owners[(proto, port)][ip] = container_id

    def release(self, container_id: str, ports: Sequence[PortMapping]) -> None:
        for p in ports:
            for proto, ip, port in _keys(p):
                held = self._owners.get((proto, port), {})
                if held.get(ip) == container_id:
                    del held[ip]
                if not held:
                    self._owners.pop((proto, port), None)


def _collide(a: str, b: str) -> bool:
    """"" is every address of both families; 0.0.0.0 and :: every address of theirs."""
    if not a or not b:
        return True
    x, y = ip_address(a), ip_address(b)
    return x.version == y.version and (x.is_unspecified or y.is_unspecified or x == y)
