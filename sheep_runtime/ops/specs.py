"""Validated requests: API input becomes one of these, or InvalidArgument, before any
lock is taken, any id is minted or the kernel or the store sees anything."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.ipam.subnets import parse_address, parse_address6
from sheep_runtime.model import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    LogConfig,
    PortMapping,
    Resources,
    RestartPolicy,
)
from sheep_runtime.names import validate_ifname, validate_name
from sheep_runtime.ops.ports import validate_ports

HOSTNAME_RE = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
                         r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*")
NETWORK_MODES = ("", "none")
MAX_ALIASES = 32
# The kernel's exec limits: one argument or "KEY=VALUE" string (MAX_ARG_STRLEN, 32
# pages), and all of them with their pointers (ARG_MAX). A margin stays for what the
# runtime adds (PATH, HOSTNAME, ...).
MAX_ARG_STRLEN = 32 * 4096
ARG_MAX = os.sysconf("SC_ARG_MAX")
_EXEC_MARGIN = 16 * 1024
DEFAULT_STOP_TIMEOUT = 10.0
MAX_STOP_TIMEOUT = 3600
MIN_MEMORY = 6 * 1024 * 1024  # what runc accepts (and a container can start in)
MIN_LOG_BYTES = 4096
MAX_LOG_FILES = 100
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
NO_RESTART = RestartPolicy()
NO_LIMITS = Resources()
DEFAULT_LOG = LogConfig()
@dataclass(frozen=True)
class AttachSpec:
    """One network to attach: by name or id, with an optional static address."""

    network: str
    ip: IPv4Address | None = None
    ports: tuple[PortMapping, ...] = ()
    interface_name: str = ""
    aliases: tuple[str, ...] = ()  # DNS names of the container on this network only
    preferred: IPv4Address | None = None  # a dynamic address to take if still free
    ip6: IPv6Address | None = None  # static, on a dual-stack network
    preferred6: IPv6Address | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """A validated CreateContainer request."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    hostname: str = ""
    networks: tuple[AttachSpec, ...] = ()
    network_mode: str = ""
    privileged: bool = False
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    all_capabilities: bool = False  # cap_add "ALL": every one the host can grant
    image: str = ""  # the root: an image by name or id, or a directory (`rootfs`)
    rootfs: str = ""
    working_dir: str = ""  # "" = the image's, else /
    restart_policy: RestartPolicy = NO_RESTART
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    resources: Resources = NO_LIMITS
    log: LogConfig = DEFAULT_LOG
    auto_remove: bool = False


def attach_spec(*, network: str, ip: str, ports: Sequence[PortMapping],
                interface_name: str, aliases: Sequence[str] = (), ip6: str = ""
                ) -> AttachSpec:
    """Validate one attachment request."""
    if not network:
        raise InvalidArgument("a network name or id is required", field="network")
    return AttachSpec(
        network=network,
        ip=parse_address(ip, field="ip") if ip else None,
        ip6=parse_address6(ip6, field="ip6") if ip6 else None,
        ports=validate_ports(ports),
        interface_name=validate_ifname(interface_name) if interface_name else "",
        aliases=validate_aliases(aliases))


def validate_aliases(aliases: Sequence[str]) -> tuple[str, ...]:
    """DNS aliases are hostnames (at most 64 characters of letters, digits, '-' and
    '.'), at most MAX_ALIASES of them; duplicates are dropped, case is kept."""
    if len(aliases) > MAX_ALIASES:
        raise InvalidArgument(f"at most {MAX_ALIASES} aliases per network", field="aliases")
    for alias in aliases:
        if len(alias) > 64 or not HOSTNAME_RE.fullmatch(alias):
            raise InvalidArgument(f"invalid alias {alias[:80]!r}: at most 64 characters of "
                                  "letters, digits, '-' and '.'", field="aliases")
    return tuple(dict.fromkeys(aliases))


def container_spec(*, name: str, command: Sequence[str], env: Mapping[str, str],
                   hostname: str, networks: Sequence[AttachSpec], network_mode: str,
                   privileged: bool = False, cap_add: Sequence[str] = (), image: str = "",
                   rootfs: str = "", working_dir: str = "",
                   restart: RestartPolicy = NO_RESTART,
                   signal_number: int = signal.SIGTERM,
                   timeout: float = DEFAULT_STOP_TIMEOUT,
                   limits: Resources = NO_LIMITS, log: LogConfig = DEFAULT_LOG,
                   auto_remove: bool = False) -> ContainerSpec:
    """Validate a CreateContainer request. The command may be left out with an image
    (its Entrypoint and Cmd are checked once it is resolved)."""
    if name:
        validate_name(name, what="container")
    _validate_root(image=image, rootfs=rootfs, working_dir=working_dir)
    validate_exec(command, env, required=not image)
    if hostname and (len(hostname) > 64 or not HOSTNAME_RE.fullmatch(hostname)):
        raise InvalidArgument(f"invalid hostname {hostname!r}: at most 64 characters of "
                              "letters, digits, '-' and '.'", field="hostname")
    if network_mode not in NETWORK_MODES:
        raise InvalidArgument(f"unknown network_mode {network_mode!r}: use \"\" or \"none\"",
                              field="network_mode")
    if network_mode == "none" and networks:
        raise InvalidArgument("network_mode \"none\" cannot be combined with networks",
                              field="networks")
    ifnames = [n.interface_name for n in networks if n.interface_name]
    if len(set(ifnames)) != len(ifnames):
        raise InvalidArgument("an interface name is listed twice", field="networks")
    return ContainerSpec(name=name, command=tuple(command), env=dict(env),
                         hostname=hostname, networks=tuple(networks),
                         network_mode=network_mode, privileged=privileged,
                         capabilities=capabilities(privileged=privileged, cap_add=cap_add),
                         all_capabilities=privileged or any(
                             c.strip().upper() == "ALL" for c in cap_add),
                         image=image, rootfs=rootfs, working_dir=working_dir,
                         restart_policy=restart, stop_signal=signal_number,
                         stop_timeout=timeout, resources=limits, log=log,
                         auto_remove=auto_remove)


def restart_policy(name: str, max_retries: int) -> RestartPolicy:
    """A restart policy by its Docker name ("" = "no"); retries only with on-failure."""
    name = name or "no"
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"unknown restart policy {name[:64]!r}: use "
                              + ", ".join(RESTART_POLICIES), field="restart_policy")
    if max_retries and name != "on-failure":
        raise InvalidArgument("max_retries is only for the on-failure policy",
                              field="restart_policy")
    return RestartPolicy(name=name, max_retries=max_retries)  # type: ignore[arg-type]


def stop_signal(text: str) -> int:
    """A signal by name ("SIGTERM", "TERM", any case) or number; "" = SIGTERM."""
    if not text:
        return signal.SIGTERM
    try:
        number = int(text) if text.isdigit() else signal.Signals[
            (text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}")]
        return signal.Signals(number)
    except (KeyError, ValueError):
        raise InvalidArgument(f"unknown stop signal {text[:32]!r}, e.g. SIGTERM, SIGINT, "
                              "QUIT or 15", field="stop_signal") from None


def stop_timeout(seconds: int, *, default: float = DEFAULT_STOP_TIMEOUT) -> float:
    """A grace period before SIGKILL: 0 means `default`; at most an hour."""
    if seconds > MAX_STOP_TIMEOUT:
        raise InvalidArgument(f"timeout of {seconds} s is over the maximum of "
                              f"{MAX_STOP_TIMEOUT}", field="timeout_seconds")
    return float(seconds or default)


def resources(*, memory_bytes: int, cpus: float, pids_limit: int) -> Resources:
    """Cgroup limits; 0 = none."""
    if memory_bytes and memory_bytes < MIN_MEMORY:
        raise InvalidArgument(f"memory limit {memory_bytes} is below the minimum of "
                              f"{MIN_MEMORY} bytes (6 MiB)", field="resources.memory_bytes")
    ncpu = os.cpu_count() or 1
    if not 0 <= cpus <= ncpu or cpus != cpus:  # NaN too
        raise InvalidArgument(f"cpus {cpus} must be between 0 and the host's {ncpu}",
                              field="resources.cpus")
    if cpus and cpus * 100_000 < 1000:
        raise InvalidArgument("cpus must be at least 0.01", field="resources.cpus")
    if pids_limit < 0:
        raise InvalidArgument("pids_limit cannot be negative", field="resources.pids_limit")
    return Resources(memory_bytes=memory_bytes, cpus=cpus, pids_limit=pids_limit)


def log_config(*, max_bytes: int, max_files: int) -> LogConfig:
    """Log rotation; 0 takes the default."""
    cfg = LogConfig(max_bytes=max_bytes or LogConfig.max_bytes,
                    max_files=max_files or LogConfig.max_files)
    if cfg.max_bytes < MIN_LOG_BYTES:
        raise InvalidArgument(f"log max_bytes must be at least {MIN_LOG_BYTES}",
                              field="log.max_bytes")
    if cfg.max_files > MAX_LOG_FILES:
        raise InvalidArgument(f"log max_files must be at most {MAX_LOG_FILES}",
                              field="log.max_files")
    return cfg


def _validate_root(*, image: str, rootfs: str, working_dir: str) -> None:
    if image and rootfs:
        raise InvalidArgument("give an image or a rootfs directory, not both", field="rootfs")
    if rootfs and (not rootfs.startswith("/") or "\0" in rootfs):
        raise InvalidArgument(f"rootfs {rootfs[:200]!r} is not an absolute path",
                              field="rootfs")
    if working_dir and (not working_dir.startswith("/") or "\0" in working_dir):
        raise InvalidArgument(f"working_dir {working_dir[:200]!r} is not an absolute path",
                              field="working_dir")


def validate_exec(command: Sequence[str], env: Mapping[str, str], *,
                  required: bool = True) -> None:
    """InvalidArgument unless `command` (required unless an image gives one) and `env`
    can be passed to execve."""
    if (required and not command) or (command and not command[0]):
        raise InvalidArgument("command is required: give the program and its arguments",
                              field="command")
    if any("\0" in arg for arg in command):
        raise InvalidArgument("command arguments cannot contain NUL bytes", field="command")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise InvalidArgument(f"invalid environment variable name {key!r}", field="env")
    strings = [(a.encode(), "command") for a in command]
    strings += [(f"{k}={v}".encode(), "env") for k, v in env.items()]
    for data, where in strings:
        if len(data) + 1 > MAX_ARG_STRLEN:
            raise InvalidArgument(f"a {where} string of {len(data)} bytes is over the "
                                  f"kernel's limit of {MAX_ARG_STRLEN - 1} bytes", field=where)
    total = sum(len(data) + 1 + 8 for data, _ in strings)
    if total > ARG_MAX - _EXEC_MARGIN:
        raise InvalidArgument(f"command and environment take {total} bytes, over the "
                              f"kernel's exec limit of {ARG_MAX - _EXEC_MARGIN}",
                              field="command")


def capabilities(*, privileged: bool, cap_add: Sequence[str]) -> tuple[str, ...]:
    """The effective capability set: Docker's default set plus `cap_add` (names with
    or without "CAP_", any case; "ALL" for every one), or every one if privileged."""
    added: set[str] = set()
    for raw in cap_add:
        cap = raw.strip().upper()
        if cap == "ALL":
            added.update(ALL_CAPABILITIES)
            continue
        cap = cap if cap.startswith("CAP_") else f"CAP_{cap}"
        if cap not in ALL_CAPABILITIES:
            raise InvalidArgument(f"unknown capability {raw[:64]!r} in cap_add, e.g. "
                                  "NET_ADMIN or CAP_SYS_PTRACE", field="cap_add")
        added.add(cap)
    if privileged:
        return ALL_CAPABILITIES
    chosen = set(DEFAULT_CAPABILITIES) | added
    return tuple(c for c in ALL_CAPABILITIES if c in chosen)
