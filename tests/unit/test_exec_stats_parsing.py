"""Pure parts of exec and stats: runc events output into CgroupUsage (v1 and v2
shapes), IFLA_STATS64 decoding, the exit code of runc's own exec failures, and the
output capture bound."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import pytest

from sheep_runtime.errors import FailedPrecondition, InvalidArgument, KernelError
from sheep_runtime.model import CgroupUsage, ExecSpec, InterfaceCounters
from sheep_runtime.netlink import codec as c
from sheep_runtime.process import exec as exec_
from sheep_runtime.process.stats import parse_stats

V1_NO_LIMIT = 9223372036854771712  # PAGE_COUNTER_MAX pages of 4 KiB
V2_MAX = 2**64 - 1


def event(data: dict[str, Any]) -> bytes:
    return json.dumps({"type": "stats", "id": "c1", "data": data}).encode()


@pytest.mark.parametrize(("data", "expected"), [
    ({"cpu": {"usage": {"total": 123}},
      "memory": {"usage": {"usage": 4096, "limit": V1_NO_LIMIT}}, "pids": {"current": 2}},
     CgroupUsage(cpu_usage_ns=123, memory_usage_bytes=4096, pids_current=2)),
    ({"cpu": {"usage": {"total": 5}},
      "memory": {"usage": {"usage": 10, "limit": 64 << 20}},
      "pids": {"current": 3, "limit": 10}},
     CgroupUsage(cpu_usage_ns=5, memory_usage_bytes=10, memory_limit_bytes=64 << 20,
                 pids_current=3, pids_limit=10)),
    ({"memory": {"usage": {"usage": 7, "limit": V2_MAX}},
      "pids": {"current": 1, "limit": V2_MAX}},
     CgroupUsage(memory_usage_bytes=7, pids_current=1)),
    ({}, CgroupUsage()),
    ({"cpu": {"usage": {"total": "x"}}, "memory": None, "pids": {"current": -1}},
     CgroupUsage()),
])
def test_runc_events_become_usage(data: dict[str, Any], expected: CgroupUsage) -> None:
    assert parse_stats(event(data)) == expected


@pytest.mark.parametrize("output", [b"", b"not json", b"[]", b'{"type": "oom"}',
                                    b'{"type": "stats", "data": []}'])
def test_other_output_is_no_usage(output: bytes) -> None:
    assert parse_stats(output) is None


def _newlink(*attrs: bytes, family: int = socket.AF_UNSPEC) -> bytes:
    return c.IFINFOMSG.pack(family, 0, 3, 0, 0) + b"".join(attrs)


def test_link_stats_decode() -> None:
    # rx/tx packets, rx/tx bytes, rx/tx errors, rx/tx dropped, then fields we ignore
    raw = struct.pack("=25Q", 1, 2, 3, 4, 5, 6, 7, 8, *range(100, 117))
    body = _newlink(c.string(c.IFLA_IFNAME, "eth0"), c.attr(c.IFLA_STATS64, raw))
    assert c.decode_link_stats(body, 0, len(body)) == InterfaceCounters(
        rx_packets=1, tx_packets=2, rx_bytes=3, tx_bytes=4, rx_errors=5, tx_errors=6,
        rx_dropped=7, tx_dropped=8)
    for body in (_newlink(c.string(c.IFLA_IFNAME, "eth0")),
                 _newlink(c.attr(c.IFLA_STATS64, raw[:40])),
                 _newlink(c.attr(c.IFLA_STATS64, raw), family=socket.AF_BRIDGE)):
        assert c.decode_link_stats(body, 0, len(body)) is None


SPEC = ExecSpec(argv=("x",), cwd="/nope")
START = "exec failed: unable to start container process: exec: "


@pytest.mark.parametrize(("message", "code"), [
    (START + '"nope": executable file not found in $PATH', 127),
    (START + '"/x/y": stat /x/y: no such file or directory', 127),
    (START + '"/etc/passwd": permission denied', 126),
    (START + '"/bin/z": exec format error', 126),
])
def test_runc_failure_is_a_shell_exit_code(message: str, code: int) -> None:
    assert exec_._failure_code("c1", SPEC, message) == code


@pytest.mark.parametrize(("message", "error"), [
    ('exec failed: unable to start container process: chdir to cwd ("/nope") set in '
     "config.json failed: no such file or directory", InvalidArgument),
    ("exec failed: container does not exist", FailedPrecondition),
    ("exec failed: cannot exec in a stopped container", FailedPrecondition),
    ("exec failed: something else", KernelError),
])
def test_other_runc_failures_raise(message: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        exec_._failure_code("c1", SPEC, message)


def test_capture_keeps_the_first_bytes_and_counts_the_rest() -> None:
    sink = exec_.Capture(5)
    for chunk in (b"abc", b"defg", b"", b"hi"):
        sink.feed(chunk)
    assert (bytes(sink.data), sink.dropped) == (b"abcde", 4)
    none = exec_.Capture(0)
    none.feed(b"xy")
    assert (bytes(none.data), none.dropped) == (b"", 2)
