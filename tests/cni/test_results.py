"""Result conversion for every CNI version, prevResult pass-through, the CHECK
comparison and request decoding: pure functions, no daemon."""

from __future__ import annotations

import copy
import dataclasses
import json
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any

import pytest

from sheep_runtime.cni.codes import CHECK_FAILED, failure_of
from sheep_runtime.cni.plugin import Failure, encode_request
from sheep_runtime.cni.request import parse_call
from sheep_runtime.cni.results import add_result, check_against
from sheep_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    KernelError,
    NotFound,
    ResourceExhausted,
    SheepError,
)
from sheep_runtime.model import PortMapping
from sheep_runtime.ops.cni import CniKey, CniResult

NETNS = "/run/netns/netns-8b554ae3-3fbb-d94a-53e7-3fd0bbf308ca"
KEY = CniKey("3cafd4cca40e", "eth0")
R = CniResult(key=KEY, netns=NETNS, network="sheep0", host_interface="shp3cafd4cca4",
              host_mac="9a:41:e7:be:84:dd", container_interface="eth0",
              container_mac="02:5e:0a:14:00:05", address=IPv4Interface("10.20.0.5/16"),
              gateway=IPv4Address("10.20.0.1"), mtu=1500)
# What podman's bridge plugin handed the next plugin of its chain (scaleout.md §6).
BRIDGE_PREV: dict[str, Any] = {
    "cniVersion": "1.0.0", "dns": {"nameservers": ["10.20.100.1"]},
    "interfaces": [{"mac": "ea:b7:bb:10:2b:18", "name": "sheep0"},
                   {"mac": "9a:41:e7:be:84:dd", "name": "vetha0a59622"},
                   {"mac": "22:06:c3:94:01:5c", "name": "net0", "sandbox": NETNS}],
    "ips": [{"address": "10.20.100.50/24", "gateway": "10.20.100.1", "interface": 2}],
    "routes": [{"dst": "0.0.0.0/0"}]}
HOST = {"name": "shp3cafd4cca4", "mac": "9a:41:e7:be:84:dd"}
CONTAINER = {"name": "eth0", "mac": "02:5e:0a:14:00:05", "sandbox": NETNS}


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0"])
def test_legacy_results_tag_each_ip_with_its_version(version: str) -> None:
    assert add_result(R, version=version) == {
        "cniVersion": version, "interfaces": [HOST, CONTAINER],
        "ips": [{"version": "4", "address": "10.20.0.5/16", "gateway": "10.20.0.1",
                 "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.20.0.1"}], "dns": {}}


def test_a_1_0_0_result() -> None:
    assert add_result(R, version="1.0.0") == {
        "cniVersion": "1.0.0", "interfaces": [HOST, CONTAINER],
        "ips": [{"address": "10.20.0.5/16", "gateway": "10.20.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.20.0.1"}], "dns": {}}


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_a_dual_stack_result_lists_both_families(version: str) -> None:
    dual = dataclasses.replace(R, address6=IPv6Interface("fd00:20::5/64"),
                               gateway6=IPv6Address("fd00:20::1"))
    result = add_result(dual, version=version)
    tag: dict[str, str] = {"version": "6"} if version == "0.4.0" else {}
    assert result["ips"][1] == {**tag, "address": "fd00:20::5/64", "gateway": "fd00:20::1",
                                "interface": 1}
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.20.0.1"},
                                {"dst": "::/0", "gw": "fd00:20::1"}]


def test_a_1_1_0_result_gives_the_interfaces_mtu() -> None:
    result = add_result(R, version="1.1.0")
    assert result["interfaces"] == [{**HOST, "mtu": 1500}, {**CONTAINER, "mtu": 1500}]
    assert result["ips"] == [{"address": "10.20.0.5/16", "gateway": "10.20.0.1",
                              "interface": 1}]


def test_prev_result_is_passed_through_and_extended() -> None:
    prev = copy.deepcopy(BRIDGE_PREV)
    result = add_result(R, version="1.0.0", prev=prev)
    assert result["interfaces"] == [*BRIDGE_PREV["interfaces"], HOST, CONTAINER]
    assert result["ips"] == [BRIDGE_PREV["ips"][0], {"address": "10.20.0.5/16",
                                                     "gateway": "10.20.0.1", "interface": 4}]
    assert result["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "0.0.0.0/0", "gw": "10.20.0.1"}]
    assert result["dns"] == {"nameservers": ["10.20.100.1"]}
    assert prev == BRIDGE_PREV  # not modified in place


def test_prev_result_ips_take_the_shape_of_the_requested_version() -> None:
    legacy = add_result(R, version="0.4.0", prev=copy.deepcopy(BRIDGE_PREV))
    assert [ip["version"] for ip in legacy["ips"]] == ["4", "4"]
    prev = {"ips": [{"version": "6", "address": "fd00::5/64", "interface": 0}]}
    assert add_result(R, version="1.0.0", prev=prev)["ips"][0] == {
        "address": "fd00::5/64", "interface": 0}


def test_a_replayed_add_does_not_repeat_its_route() -> None:
    first = add_result(R, version="1.0.0")
    again = add_result(R, version="1.0.0", prev={"routes": first["routes"]})
    assert again["routes"] == first["routes"]


def test_a_malformed_prev_result_is_a_config_error() -> None:
    with pytest.raises(Failure) as e:
        add_result(R, version="1.0.0", prev={"interfaces": "eth0"})
    assert e.value.problem[0] == 7


def test_check_accepts_the_result_of_its_add() -> None:
    for version in ("0.4.0", "1.0.0", "1.1.0"):
        check_against(R, netns=NETNS, prev=add_result(R, version=version))


@pytest.mark.parametrize(("netns", "change", "reason"), [
    ("/run/netns/other", {}, "NETNS_DIFFERS"),
    (NETNS, {"interfaces": [HOST]}, "INTERFACE_DIFFERS"),
    (NETNS, {"interfaces": [HOST, {**CONTAINER, "mac": "02:00:00:00:00:01"}]},
     "MAC_DIFFERS"),
    (NETNS, {"interfaces": [HOST, {**CONTAINER, "sandbox": "/run/netns/x"}]},
     "INTERFACE_DIFFERS"),
    (NETNS, {"ips": [{"address": "10.20.0.6/16", "interface": 1}]}, "ADDRESS_DIFFERS"),
    (NETNS, {"ips": [{"address": "10.20.0.5/16", "gateway": "10.20.0.254"}]},
     "GATEWAY_DIFFERS")])
def test_check_says_what_differs(netns: str, change: dict[str, Any], reason: str) -> None:
    prev = {**add_result(R, version="1.0.0"), **change}
    with pytest.raises(Failure) as e:
        check_against(R, netns=netns, prev=prev)
    assert e.value.problem[0] == CHECK_FAILED
    assert e.value.problem[2] == f"FAILED_PRECONDITION: {reason}"


def test_check_needs_a_prev_result() -> None:
    with pytest.raises(Failure) as e:
        check_against(R, netns=NETNS, prev=None)
    assert e.value.problem[0] == 7


@pytest.mark.parametrize(("exc", "code", "details"), [
    (InvalidArgument("bad", field="CNI_IFNAME"), 4, "INVALID_ARGUMENT"),
    (InvalidArgument("bad port", field="ports"), 7, "INVALID_ARGUMENT"),
    (NotFound("no net", reason="NETWORK_NOT_FOUND", resource_type="network"), 7,
     "NOT_FOUND: NETWORK_NOT_FOUND"),
    (NotFound("no such", resource_type="attachment"), 3, "NOT_FOUND"),
    (AlreadyExists("taken", reason="CNI_ATTACHMENT_EXISTS"), 100,
     "ALREADY_EXISTS: CNI_ATTACHMENT_EXISTS"),
    (ResourceExhausted("full"), 101, "RESOURCE_EXHAUSTED"),
    (FailedPrecondition("differs", reason="CNI_CHECK_FAILED"), 102,
     "FAILED_PRECONDITION: CNI_CHECK_FAILED"),
    (KernelError("netlink"), 110, "INTERNAL")])
def test_daemon_errors_map_to_cni_codes(exc: SheepError, code: int, details: str) -> None:
    assert failure_of(exc).problem == (code, str(exc), details)


def request(command: str, conf: dict[str, Any], **env: str) -> bytes:
    return encode_request({"CNI_COMMAND": command, **env}, json.dumps(conf))


def test_a_podman_add_decodes_into_a_call() -> None:
    conf = {"capabilities": {"portMappings": True}, "cniVersion": "1.0.0", "name": "sheepnet",
            "type": "sheep", "network": "back", "prevResult": BRIDGE_PREV,
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "UDP",
                 "hostIP": "0.0.0.0"}]}}
    call = parse_call(request("ADD", conf, CNI_CONTAINERID="3cafd4cca40e", CNI_NETNS=NETNS,
                              CNI_IFNAME="eth0", CNI_ARGS="IgnoreUnknown=1;IP=10.20.100.50"))
    assert (call.command, call.version, call.network, call.key, call.netns) == (
        "ADD", "1.0.0", "back", KEY, NETNS)
    assert call.ports == (
        PortMapping(protocol="tcp", host_ip="", host_port=8080, container_port=80),
        PortMapping(protocol="udp", host_ip="", host_port=5353, container_port=53))
    assert call.prev_result == BRIDGE_PREV


def test_the_network_defaults_to_sheep0() -> None:
    call = parse_call(request("DEL", {"cniVersion": "0.4.0", "name": "n"},
                              CNI_CONTAINERID="c1", CNI_IFNAME="eth0"))
    assert (call.network, call.netns, call.key) == ("sheep0", "", CniKey("c1", "eth0"))


def test_gc_decodes_the_valid_attachments() -> None:
    conf = {"cniVersion": "1.1.0", "name": "n", "cni.dev/valid-attachments": [
        {"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}]}
    call = parse_call(request("GC", conf))
    assert call.valid == {CniKey("c1", "eth0"), CniKey("c2", "net1")}


@pytest.mark.parametrize("conf", [
    {"cni.dev/valid-attachments": None},
    {"cni.dev/valid-attachments": [{"containerID": "c1"}]}])
def test_gc_without_a_valid_list_is_a_config_error(conf: dict[str, Any]) -> None:
    with pytest.raises(Failure) as e:
        parse_call(request("GC", {"cniVersion": "1.1.0", "name": "n", **conf}))
    assert e.value.problem[0] == 7


@pytest.mark.parametrize("mappings", [
    "8080:80", [{"hostPort": 0, "containerPort": 80}], [{"hostPort": 80}],
    [{"hostPort": True, "containerPort": 80}], [{"hostPort": 80, "containerPort": 80,
                                                 "protocol": 6}], ["x"]])
def test_bad_port_mappings_are_config_errors(mappings: object) -> None:
    conf = {"cniVersion": "1.0.0", "name": "n", "runtimeConfig": {"portMappings": mappings}}
    with pytest.raises(Failure) as e:
        parse_call(request("ADD", conf, CNI_CONTAINERID="c", CNI_NETNS=NETNS,
                           CNI_IFNAME="eth0"))
    assert e.value.problem[0] == 7


@pytest.mark.parametrize(("data", "code"), [
    (b"not json", 6), (b'{"v": 2, "env": {}, "config": {}}', 6),
    (b'{"v": 1, "env": {"CNI_COMMAND": 5}, "config": {}}', 6),
    (b'{"v": 1, "env": {"CNI_COMMAND": "ADD"}, "config": {}}', 4),
    (b"\xff\xfe", 6)])
def test_requests_that_are_not_ours_are_refused(data: bytes, code: int) -> None:
    with pytest.raises(Failure) as e:
        parse_call(data)
    assert e.value.problem[0] == code
