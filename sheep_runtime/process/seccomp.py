"""The default seccomp profile, converted from Docker's format to OCI `linux.seccomp`.

Debian ships the containers/common profile at `DEFAULT_PROFILE` (package
golang-github-containers-common) in Docker's format: rules carry `includes`/`excludes`
conditions on the container's capabilities and the machine's architecture, and an
`archMap`. The OCI form has none of that: a rule is in or out, decided here the way
Docker decides it (moby `profiles/seccomp`): a rule is dropped if any excluded
capability is granted or the architecture is excluded, and kept only if every
included capability is granted and the architecture is included.
"""

from __future__ import annotations

import ctypes
import errno
import json
import platform
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from sheep_runtime.errors import KernelError

DEFAULT_PROFILE = Path("/usr/share/containers/seccomp.json")

# Go's GOARCH (the names in `arches` conditions) by `uname -m`, and libseccomp's name.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64",
              "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X"}
_CONDITIONS = {"caps", "arches"}
_X32_GETPID = 0x40000000 | 39  # getpid through the x32 ABI (__X32_SYSCALL_BIT)


def native_arch() -> str:
    """This machine's architecture as Go names it (amd64, arm64, ...)."""
    machine = platform.machine()
    if machine not in _GOARCH:
        raise KernelError(f"no seccomp architecture mapping for {machine!r}")
    return _GOARCH[machine]


def absent_architectures(arch: str) -> frozenset[str]:
    """Sub-architectures of `arch` (libseccomp names) whose system calls this kernel
    refuses anyway: x32, which most kernels leave out or turn off. Filtering them only
    costs time at every start (runc compiles the rules once per architecture: ~7 ms
    each here), and leaving one out denies its calls all the same."""
    if arch != "amd64":
        return frozenset()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_X32_GETPID) == -1 and ctypes.get_errno() == errno.ENOSYS:
        return frozenset({"SCMP_ARCH_X32"})
    return frozenset()


def load_profile(path: Path = DEFAULT_PROFILE) -> dict[str, Any]:
    """Read a Docker-format profile; KernelError if it is missing or not JSON."""
    try:
        profile: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise KernelError(f"cannot load seccomp profile {path}: {e} (Debian package "
                          "golang-github-containers-common)") from e
    return profile


def _applies(rule: Mapping[str, Any], *, caps: Collection[str], arch: str) -> bool:
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    for cond in (includes, excludes):
        unknown = {k for k, v in cond.items() if v} - _CONDITIONS
        if unknown:  # e.g. minKernel: fail closed rather than guess
            raise KernelError(f"seccomp rule {rule.get('names')}: unsupported {unknown}")
    if arch in (excludes.get("arches") or ()) or set(excludes.get("caps") or ()) & set(caps):
        return False
    arches = includes.get("arches") or ()
    return (not arches or arch in arches) and set(includes.get("caps") or ()) <= set(caps)


def _rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    names = rule.get("names") or [rule["name"]]
    out: dict[str, Any] = {"names": list(names), "action": rule["action"]}
    if "errnoRet" in rule:
        out["errnoRet"] = rule["errnoRet"]
    if rule.get("args"):
        out["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op")}
                       for a in rule["args"]]
    return out


def to_oci(profile: Mapping[str, Any], *, caps: Collection[str], arch: str,
           absent: Collection[str] = ()) -> dict[str, Any]:
    """The OCI `linux.seccomp` object of a Docker-format `profile` for a container
    granted `caps`, on the architecture `arch` (Go name), without the sub-architectures
    `absent` (see absent_architectures)."""
    native = _SCMP_ARCH.get(arch)
    architectures = [a for m in profile.get("archMap") or () if m["architecture"] == native
                     for a in (m["architecture"], *m.get("subArchitectures", ()))
                     if a not in absent]
    out: dict[str, Any] = {
        "defaultAction": profile["defaultAction"],
        "architectures": architectures or list(profile.get("architectures") or ()),
        "syscalls": [_rule(r) for r in profile.get("syscalls") or ()
                     if _applies(r, caps=caps, arch=arch)],
    }
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return out
