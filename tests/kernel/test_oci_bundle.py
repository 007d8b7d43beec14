"""The OCI bundle of a container (config.json) and the seccomp conversion: no root.

Needs Debian's runc and golang-github-containers-common (the seccomp profile), which
`OciProcesses` looks for when it is built.
"""

from __future__ import annotations

import copy
import gzip
import os
from pathlib import Path
from typing import Any

import pytest

from sheep_runtime.errors import InvalidArgument, KernelError
from sheep_runtime.model import DEFAULT_CAPABILITIES, ProcessSpec, Resources
from sheep_runtime.process import OciProcesses, capabilities, seccomp
from sheep_runtime.process.bundle import (
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
    SHIM_PATH,
    resources,
)
from sheep_runtime.process.limits import swap_limit_supported

NETNS = Path("/run/sheep/netns/c1")
STATE, RUN = Path("/var/lib/sheep"), Path("/run/sheep")


def spec(**fields: Any) -> ProcessSpec:
    base: dict[str, Any] = dict(
        container_id="c1", argv=("/bin/sh", "-c", "echo hi"), env={"FOO": "bar"},
        hostname="web", netns_path=NETNS, container_dir=STATE / "containers" / "c1",
        hidden_paths=(STATE, RUN))
    base.update(fields)
    return ProcessSpec(**base)


@pytest.fixture(scope="module")
def procs() -> OciProcesses:
    return OciProcesses(Path("/nonexistent/runc-root"), cgroup_parent="sheep")


def caps_of(config: dict[str, Any]) -> dict[str, list[str]]:
    caps: dict[str, list[str]] = config["process"]["capabilities"]
    return caps


def rule_names(profile: dict[str, Any], action: str) -> set[str]:
    return {n for r in profile["syscalls"] if r["action"] == action for n in r["names"]}


def test_default_config(procs: OciProcesses) -> None:
    c = procs.config(spec())
    p = c["process"]
    assert p["args"] == ["/usr/bin/env", "--", "/bin/sh", "-c", "echo hi"]
    assert "FOO=bar" in p["env"] and "HOSTNAME=web" in p["env"]
    assert any(e.startswith("PATH=/") for e in p["env"])
    assert p["cwd"] == "/" and p["user"] == {"uid": 0, "gid": 0} and not p["terminal"]
    assert c["hostname"] == "web"
    for kind in ("bounding", "effective", "permitted"):
        assert set(caps_of(c)[kind]) == set(DEFAULT_CAPABILITIES), kind
    assert caps_of(c)["ambient"] == [] and caps_of(c)["inheritable"] == []
    assert p["noNewPrivileges"] is True
    assert {"type": "RLIMIT_NOFILE", "hard": p["rlimits"][0]["hard"],
            "soft": p["rlimits"][0]["hard"]} == p["rlimits"][0]
    assert 1024 <= p["rlimits"][0]["hard"] <= 1048576
    assert c["root"] == {"path": "rootfs", "readonly": True}
    mounts = {m["destination"]: m for m in c["mounts"]}
    assert mounts["/"]["source"] == "/" and {"rbind", "rro"} <= set(mounts["/"]["options"])
    assert mounts["/proc"]["type"] == "proc" and mounts["/tmp"]["type"] == "tmpfs"
    assert mounts["/dev"]["type"] == "tmpfs" and "ro" in mounts["/sys"]["options"]
    assert c["mounts"][0]["destination"] == "/"  # the others go on top of it
    linux = c["linux"]
    assert linux["namespaces"] == [
        {"type": "pid"}, {"type": "network", "path": str(NETNS)}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}]
    assert linux["cgroupsPath"] == "sheep/c1"
    assert linux["maskedPaths"][:2] == [str(STATE), str(RUN)]
    assert set(DOCKER_MASKED_PATHS) <= set(linux["maskedPaths"])
    assert linux["readonlyPaths"] == list(DOCKER_READONLY_PATHS)
    assert linux["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "kcmp" in rule_names(linux["seccomp"], "SCMP_ACT_ERRNO")  # no CAP_SYS_PTRACE
    assert c["annotations"] == {"io.sheep.container-id": "c1"}


def test_hidden_paths_are_emptied_of_mounts_by_a_hook(procs: OciProcesses) -> None:
    c = procs.config(spec(hidden_paths=(STATE, RUN, Path("/tmp/x"))))
    (hook,) = c["hooks"]["createContainer"]
    rootfs = STATE / "containers" / "c1" / "rootfs"
    assert hook["path"] == "/bin/sh"
    # Below /tmp the container's own tmpfs shadows the copies: masked, not unmounted.
    assert hook["args"] == ["sh", str(SHIM_PATH), "--unmount-under",
                            f"{rootfs}/var/lib/sheep", f"{rootfs}/run/sheep"]
    assert "/tmp/x" in c["linux"]["maskedPaths"]
    assert "hooks" not in procs.config(spec(hidden_paths=()))


def test_privileged_config(procs: OciProcesses) -> None:
    c = procs.config(spec(privileged=True, capabilities=()))
    assert set(caps_of(c)["bounding"]) == set(capabilities.bounding_set())
    assert caps_of(c)["effective"] == caps_of(c)["bounding"] == caps_of(c)["permitted"]
    assert caps_of(c)["ambient"] == []
    assert c["process"]["noNewPrivileges"] is False
    linux = c["linux"]
    assert "seccomp" not in linux
    assert linux["maskedPaths"] == [str(STATE), str(RUN)]  # still hidden
    assert linux["readonlyPaths"] == []
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert c["root"]["readonly"] is True and "hooks" in c


def test_added_capability(procs: OciProcesses) -> None:
    c = procs.config(spec(capabilities=(*DEFAULT_CAPABILITIES, "CAP_NET_ADMIN")))
    assert set(caps_of(c)["effective"]) == {*DEFAULT_CAPABILITIES, "CAP_NET_ADMIN"}
    assert c["linux"]["seccomp"] == procs.config(spec())["linux"]["seccomp"]
    ptrace = procs.config(spec(capabilities=(*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE")))
    assert {"kcmp", "process_madvise"} <= rule_names(ptrace["linux"]["seccomp"],
                                                     "SCMP_ACT_ALLOW")
    assert "kcmp" not in rule_names(ptrace["linux"]["seccomp"], "SCMP_ACT_ERRNO")


@pytest.mark.parametrize("caps", [("CAP_NOPE",), ("chown",)])
def test_unknown_capability_is_invalid(procs: OciProcesses, caps: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgument, match="unknown capability"):
        procs.config(spec(capabilities=caps))


def test_capability_missing_on_host_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="not available"):
        capabilities.resolve(("CAP_SYS_RESOURCE",), privileged=False,
                             available=("CAP_CHOWN",))
    assert capabilities.resolve(("CAP_KILL", "CAP_CHOWN"), privileged=False,
                                available=capabilities.NAMES) == ("CAP_CHOWN", "CAP_KILL")


def test_capability_masks() -> None:
    assert capabilities.to_mask(["CAP_CHOWN", "CAP_KILL"]) == 0b100001
    assert capabilities.from_mask(0x20) == ("CAP_KILL",)
    assert capabilities.from_mask(capabilities.to_mask(capabilities.NAMES)) == \
        capabilities.NAMES


# -- seccomp: Docker's profile format to OCI ---------------------------------------

PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64",
         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [],
         "comment": "", "includes": {}, "excludes": {}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "comment": "",
         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
         "includes": {}, "excludes": {}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "args": None,
         "includes": {"arches": ["amd64", "x32"]}, "excludes": {}},
        {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_PTRACE"]}, "excludes": {}},
        {"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "includes": {}, "excludes": {"caps": ["CAP_SYS_PTRACE"]}},
        {"names": ["both"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]}},
        {"names": ["not_on_arm"], "action": "SCMP_ACT_ALLOW",
         "excludes": {"arches": ["arm64"]}},
    ],
}


def test_seccomp_conversion_by_capability() -> None:
    plain = seccomp.to_oci(PROFILE, caps=DEFAULT_CAPABILITIES, arch="amd64")
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 38
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert plain["syscalls"] == [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["not_on_arm"], "action": "SCMP_ACT_ALLOW"},
    ]
    ptrace = seccomp.to_oci(PROFILE, caps=("CAP_SYS_PTRACE",), arch="amd64")
    assert {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW"} in ptrace["syscalls"]
    assert rule_names(ptrace, "SCMP_ACT_ERRNO") == set()
    assert "both" not in rule_names(ptrace, "SCMP_ACT_ALLOW")  # every included cap needed
    both = seccomp.to_oci(PROFILE, caps=("CAP_SYS_PTRACE", "CAP_SYS_ADMIN"), arch="amd64")
    assert "both" in rule_names(both, "SCMP_ACT_ALLOW")


def test_seccomp_conversion_by_architecture() -> None:
    arm = seccomp.to_oci(PROFILE, caps=(), arch="arm64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in rule_names(arm, "SCMP_ACT_ALLOW")
    assert "not_on_arm" not in rule_names(arm, "SCMP_ACT_ALLOW")


def kernel_config() -> str:
    """The running kernel's build configuration (from /proc or /boot)."""
    proc = Path("/proc/config.gz")
    if proc.exists():
        return gzip.decompress(proc.read_bytes()).decode()
    return Path(f"/boot/config-{os.uname().release}").read_text()


def test_architectures_the_kernel_refuses_are_left_out() -> None:
    without = seccomp.to_oci(PROFILE, caps=(), arch="amd64", absent={"SCMP_ARCH_X32"})
    assert without["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    x32_off = "# CONFIG_X86_X32_ABI is not set" in kernel_config()
    assert seccomp.absent_architectures("amd64") == ({"SCMP_ARCH_X32"} if x32_off else set())
    assert seccomp.absent_architectures("arm64") == set()


def test_seccomp_unknown_condition_fails_closed() -> None:
    profile = copy.deepcopy(PROFILE)
    profile["syscalls"].append({"names": ["x"], "action": "SCMP_ACT_ALLOW",
                                "includes": {"minKernel": "4.8"}})
    with pytest.raises(KernelError, match="minKernel"):
        seccomp.to_oci(profile, caps=(), arch="amd64")


def test_debian_profile() -> None:
    profile = seccomp.load_profile()
    default = seccomp.to_oci(profile, caps=DEFAULT_CAPABILITIES, arch="amd64")
    allowed, denied = rule_names(default, "SCMP_ACT_ALLOW"), rule_names(default, "SCMP_ACT_ERRNO")
    assert {"read", "clone", "arch_prctl"} <= allowed
    # Gated by capabilities outside the default set: denied with EPERM.
    for name, cap in [("kcmp", "CAP_SYS_PTRACE"), ("init_module", "CAP_SYS_MODULE"),
                      ("bpf", "CAP_SYS_ADMIN"), ("clock_settime", "CAP_SYS_TIME")]:
        assert name in denied and name not in allowed, name
        widened = seccomp.to_oci(profile, caps=(*DEFAULT_CAPABILITIES, cap), arch="amd64")
        assert name in rule_names(widened, "SCMP_ACT_ALLOW"), name
        assert name not in rule_names(widened, "SCMP_ACT_ERRNO"), name
    assert "s390_runtime_instr" not in allowed  # another architecture's


def test_missing_profile_is_a_kernel_error(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="golang-github-containers-common"):
        seccomp.load_profile(tmp_path / "none.json")


MiB = 1024 * 1024


def test_no_limits_by_default(procs: OciProcesses) -> None:
    assert procs.config(spec())["linux"]["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}]}


def test_resources_become_cgroup_limits(procs: OciProcesses) -> None:
    limits = Resources(memory_bytes=64 * MiB, cpus=1.5, pids_limit=10)
    r = procs.config(spec(resources=limits))["linux"]["resources"]
    memory = {"limit": 64 * MiB, "swap": 64 * MiB} if swap_limit_supported() else {
        "limit": 64 * MiB}
    assert r == {"devices": [{"allow": False, "access": "rwm"}], "memory": memory,
                 "cpu": {"quota": 150_000, "period": 100_000}, "pids": {"limit": 10}}
    privileged = procs.config(spec(resources=limits, privileged=True, capabilities=()))
    assert privileged["linux"]["resources"]["pids"] == {"limit": 10}


@pytest.mark.parametrize(("limits", "swap_limit", "expected"), [
    (Resources(memory_bytes=6 * MiB), True, {"memory": {"limit": 6 * MiB, "swap": 6 * MiB}}),
    (Resources(memory_bytes=6 * MiB), False, {"memory": {"limit": 6 * MiB}}),
    (Resources(cpus=0.01), True, {"cpu": {"quota": 1000, "period": 100_000}}),
    (Resources(cpus=2), True, {"cpu": {"quota": 200_000, "period": 100_000}}),
    (Resources(pids_limit=1), True, {"pids": {"limit": 1}}),
    (Resources(), True, {}),
])
def test_each_limit_alone(limits: Resources, swap_limit: bool, expected: dict[str, Any]
                          ) -> None:
    assert resources(limits, swap_limit=swap_limit) == expected
