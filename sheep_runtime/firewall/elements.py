"""The set and map elements of published ports, and the incremental change that adds
or deletes those of a few rules without touching anything else (pure).

A rule gives the same elements here as in `build_ruleset`, so a table changed
incrementally equals the table rebuilt from the resulting state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sheep_runtime.firewall.records import Family, Json, PortRule, check_overlaps, check_rule

FAMILY = "inet"
# map name -> (family, key, data). Key "addr": host address . proto . port (a host_ip
# of its own), "any": proto . port (every address of the family). Data "addr": the
# container's address, "port": its port, only for ports that differ from the host's.
# One element per port: hash maps, whose add and delete cost the same at any size (a
# concatenated interval map, nft's pipapo, deletes in time linear in its size).
PORT_MAPS: dict[str, tuple[Family, str, str]] = {
    "dnat_addr": (4, "addr", "addr"), "dnat_addr_port": (4, "addr", "port"),
    "dnat_any": (4, "any", "addr"), "dnat_any_port": (4, "any", "port"),
    "dnat6_addr": (6, "addr", "addr"), "dnat6_addr_port": (6, "addr", "port"),
    "dnat6_any": (6, "any", "addr"), "dnat6_any_port": (6, "any", "port"),
}


def port_elements(rule: PortRule) -> dict[str, list[Any]]:
    """The elements `rule` puts in each of PORT_MAPS (an empty list where none)."""
    out: dict[str, list[Any]] = {name: [] for name in PORT_MAPS}
    host = rule.host_address()
    specific = host is not None and not host.is_unspecified
    for family in rule.families():
        target = str(rule.container_ip if family == 4 else rule.container_ip6)
        maps = f"dnat{'' if family == 4 else '6'}_{'addr' if specific else 'any'}"
        for i in range(rule.count):
            key: Json = {"concat": [str(host), rule.protocol, rule.host_port + i]
                         if specific else [rule.protocol, rule.host_port + i]}
            out[maps].append([key, target])
            if rule.host_port != rule.container_port:
                # nft cannot add an offset to a port: shifted ports get a port element.
                out[f"{maps}_port"].append([key, rule.container_port + i])
    return out


def collect(rules: Iterable[PortRule]) -> dict[str, list[Any]]:
    """The elements of all `rules`, per map, in rule order."""
    out: dict[str, list[Any]] = {name: [] for name in PORT_MAPS}
    for rule in rules:
        for name, elems in port_elements(rule).items():
            out[name].extend(elems)
    return out


def build_port_update(*, add: Sequence[PortRule] = (), remove: Sequence[PortRule] = (),
                      table: str = "sheep") -> list[Json]:
    """The libnftables commands that delete the elements of `remove`, then add those
    of `add`, in one transaction. A deleted element is first added (a no-op when it is
    there): deleting what is already gone is then no error, while an element of the
    same key with other data (someone else's port) fails the whole transaction.
    InvalidArgument if a rule is malformed or `add` overlaps itself."""
    for rule in add:
        check_rule(rule)
    check_overlaps(add)
    base = {"family": FAMILY, "table": table}
    cmds: list[Json] = []
    gone = collect(remove)
    for verb in ("add", "delete"):
        cmds += [{verb: {"element": {**base, "name": name, "elem": elems}}}
                 for name, elems in gone.items() if elems]
    cmds += [{"add": {"element": {**base, "name": name, "elem": elems}}}
             for name, elems in collect(add).items() if elems]
    return cmds
