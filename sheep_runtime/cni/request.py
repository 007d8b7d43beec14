"""A request from the plugin, decoded and validated into a plain `CniCall`.

The plugin checked it already, but the socket is an interface of its own: sheepd
validates again, with the plugin's own `check_request`, then what only it reads
(port mappings, prevResult, the GC list). Every problem is a `Failure` with the
spec's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

from sheep_runtime.cni.plugin import (
    DECODING_FAILURE,
    DEFAULT_NETWORK,
    INVALID_CONFIG,
    PROTOCOL,
    Failure,
    check_request,
)
from sheep_runtime.model import PortMapping
from sheep_runtime.ops.cni import CniKey

VALID_ATTACHMENTS = "cni.dev/valid-attachments"


@dataclass(frozen=True)
class CniCall:
    """One CNI command as sheepd runs it."""

    command: str
    version: str
    network: str
    key: CniKey | None = None  # ADD, DEL, CHECK
    netns: str = ""  # "" for a DEL whose netns is gone
    ports: tuple[PortMapping, ...] = ()
    prev_result: dict[str, Any] | None = None
    valid: frozenset[CniKey] = frozenset()  # GC


def parse_call(data: bytes) -> CniCall:
    """Decode and validate the plugin's request."""
    try:
        req = json.loads(data)
    except ValueError as e:  # UnicodeDecodeError is one
        raise Failure(DECODING_FAILURE, f"the request is not JSON: {e}",
                      "INVALID_ARGUMENT") from e
    if not isinstance(req, dict) or req.get("v") != PROTOCOL:
        raise Failure(DECODING_FAILURE, f"not a sheep CNI request of protocol {PROTOCOL}: "
                      "the plugin and sheepd are of different versions", "INVALID_ARGUMENT")
    env, conf = req.get("env"), req.get("config")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise Failure(DECODING_FAILURE, "the request's env is not an object of strings",
                      "INVALID_ARGUMENT")
    problem = check_request(env, conf)
    if problem is not None:
        raise Failure(*problem)
    assert isinstance(conf, dict)
    command = env["CNI_COMMAND"]
    common = {"command": command, "version": conf["cniVersion"],
              "network": conf.get("network", DEFAULT_NETWORK)}
    if command == "GC":
        return CniCall(**common, valid=_valid_attachments(conf))
    if command == "STATUS":
        return CniCall(**common)
    return CniCall(**common,
                   key=CniKey(container_id=env["CNI_CONTAINERID"], ifname=env["CNI_IFNAME"]),
                   netns=env.get("CNI_NETNS", ""), ports=_ports(conf),
                   prev_result=_prev_result(conf))


def _bad(what: str, field: str) -> Failure:
    return Failure(INVALID_CONFIG, what, f"INVALID_ARGUMENT: {field}")


def _prev_result(conf: dict[str, Any]) -> dict[str, Any] | None:
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise _bad("prevResult is not an object", "prevResult")
    return prev


def _port(p: object, i: int) -> PortMapping:
    where = f"runtimeConfig.portMappings[{i}]"
    if not isinstance(p, dict):
        raise _bad(f"{where} is not an object", where)
    host_port, container_port = p.get("hostPort"), p.get("containerPort")
    if not (_is_port(host_port) and _is_port(container_port)):
        raise _bad(f"{where} needs hostPort and containerPort in 1-65535", where)
    protocol, host_ip = p.get("protocol") or "tcp", p.get("hostIP") or ""
    if not isinstance(protocol, str) or not isinstance(host_ip, str):
        raise _bad(f"{where}: protocol and hostIP are strings", where)
    return PortMapping(protocol=protocol.lower(), host_port=host_port,
                       container_port=container_port,
                       host_ip="" if host_ip == "0.0.0.0" else host_ip)


def _is_port(n: object) -> TypeGuard[int]:
    return isinstance(n, int) and not isinstance(n, bool) and 0 < n < 65536


def _ports(conf: dict[str, Any]) -> tuple[PortMapping, ...]:
    runtime = conf.get("runtimeConfig") or {}
    if not isinstance(runtime, dict):
        raise _bad("runtimeConfig is not an object", "runtimeConfig")
    mappings = runtime.get("portMappings") or []
    if not isinstance(mappings, list):
        raise _bad("runtimeConfig.portMappings is not a list", "runtimeConfig.portMappings")
    return tuple(_port(p, i) for i, p in enumerate(mappings))


def _valid_attachments(conf: dict[str, Any]) -> frozenset[CniKey]:
    entries = conf.get(VALID_ATTACHMENTS)
    if not isinstance(entries, list):
        raise _bad(f"GC needs {VALID_ATTACHMENTS} (a list)", VALID_ATTACHMENTS)
    keys = set()
    for i, e in enumerate(entries):
        cid = e.get("containerID") if isinstance(e, dict) else None
        ifname = e.get("ifname") if isinstance(e, dict) else None
        if not isinstance(cid, str) or not isinstance(ifname, str) or not cid or not ifname:
            raise _bad(f"{VALID_ATTACHMENTS}[{i}] needs containerID and ifname",
                       VALID_ATTACHMENTS)
        keys.add(CniKey(container_id=cid, ifname=ifname))
    return frozenset(keys)
