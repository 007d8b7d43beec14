"""The CNI contract against a real sheepd in a sandbox netns, driven like libcni
drives a plugin: the installed plugin runs in the sandbox (the runtime's "host"
netns) and attaches container netns this test made.

Network safety: packets go only between the sandbox, the container namespaces made
here, and (for published ports) the "internet" netns of tests/e2e/test_ports.py.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.cni.plugin import QUEUE_DIR
from tests.cni.driver import Cni
from tests.e2e.test_ports import World
from tests.sandbox import INTERNET, UPLINK, Sandbox, in_netns, sh
from tests.traffic import Servers

pytestmark = pytest.mark.kernel

NetnsFactory = Callable[[], str]


@pytest.fixture
def netns(box: Sandbox) -> Iterator[NetnsFactory]:
    """Make container namespaces (/run/netns/cni<tag>-N); all deleted at teardown."""
    made: list[str] = []

    def make() -> str:
        name = f"cni{box.tag}-{len(made)}"
        sh("ip", "netns", "add", name)
        made.append(name)
        path = f"/run/netns/{name}"
        in_netns(path, "ip", "link", "set", "lo", "up", check=True)
        return path
    yield make
    for name in made:
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def cni(box: Sandbox, plugin: Path) -> Cni:
    """The sheep0 network as a runtime in the sandbox sees it."""
    return Cni(plugin, {"type": "sheep", "socket": str(box.run_dir / "cni.sock"),
                        "stateDir": str(box.state_dir),
                        "capabilities": {"portMappings": True}},
               prefix=("nsenter", f"--net={box.netns}", "--"))


def leases(box: Sandbox) -> int:
    net = box.api.InspectNetwork(pb.InspectNetworkRequest(id="sheep0"))
    return int(net.leases_allocated)


def host_links(box: Sandbox) -> dict[str, dict[str, object]]:
    out = box.host("ip", "-j", "link", "show", check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def ping(netns: str | Path, address: str) -> bool:
    return in_netns(netns, "ping", "-c1", "-W2", address).returncode == 0


def address_of(result: dict[str, object]) -> str:
    ips = result["ips"]
    assert isinstance(ips, list)
    return str(ips[-1]["address"]).split("/")[0]


def queued(box: Sandbox) -> list[Path]:
    qdir = box.state_dir / QUEUE_DIR
    return sorted(qdir.glob("*.json")) if qdir.is_dir() else []


def test_add_attaches_the_netns_to_sheep0(box: Sandbox, cni: Cni,
                                          netns: NetnsFactory) -> None:
    assert cni.version_probe().status == 0
    peer = box.run("/bin/sleep", "300")
    ns = netns()
    out = cni.add("ctr1", ns)
    assert (out.status, out.stderr) == (0, ""), out
    result = out.json
    host, inside = result["interfaces"]
    assert inside == {"name": "eth0", "mac": inside["mac"], "sandbox": ns}
    assert result["ips"] == [{"address": result["ips"][0]["address"], "gateway": "10.20.0.1",
                              "interface": 1}]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.20.0.1"}]
    ip = ipaddress.ip_interface(result["ips"][0]["address"])
    assert ip.network == ipaddress.ip_network("10.20.0.0/16")
    # The kernel agrees: the interface, its address and MAC, the default route.
    (link,) = json.loads(in_netns(ns, "ip", "-j", "addr", "show", "eth0", check=True).stdout)
    assert link["address"] == inside["mac"] and link["operstate"] == "UP"
    assert {"local": str(ip.ip), "prefixlen": 16}.items() <= link["addr_info"][0].items()
    routes = json.loads(in_netns(ns, "ip", "-j", "route", check=True).stdout)
    assert {"dst": "default", "gateway": "10.20.0.1"}.items() <= routes[0].items()
    assert host_links(box)[host["name"]]["master"] == box.bridge
    # And it is on the network: its gateway, and a container made through gRPC.
    assert ping(ns, "10.20.0.1")
    assert ping(ns, peer.networks[0].ip_address)
    assert ping(peer.netns_path, str(ip.ip))
    assert cni.check("ctr1", ns).status == 0
    assert leases(box) == 2


def test_add_on_an_existing_interface_fails(box: Sandbox, cni: Cni,
                                            netns: NetnsFactory) -> None:
    ns, other = netns(), netns()
    assert cni.add("ctr1", ns).status == 0
    before = (leases(box), set(host_links(box)))
    # Another container id, same netns and ifname: the interface exists.
    err = cni.add("ctr2", ns).error()
    assert err["code"] == 100 and err["details"].startswith("ALREADY_EXISTS")
    # The same key in another netns: the attachment exists.
    err = cni.add("ctr1", other).error()
    assert err["code"] == 100 and err["details"] == "ALREADY_EXISTS: CNI_ATTACHMENT_EXISTS"
    assert (leases(box), set(host_links(box))) == before  # nothing leaked
    assert cni.delete("ctr2", ns).status == 0  # the DEL after a failed ADD
    assert cni.check("ctr1", ns).status == 0  # and it did not touch ctr1


def test_repeating_an_add_returns_the_same_result(cni: Cni, netns: NetnsFactory) -> None:
    ns = netns()
    first = cni.add("ctr1", ns)
    assert first.status == 0
    again = cni.add("ctr1", ns)
    assert (again.status, again.json) == (0, first.json)


def test_del_releases_everything_and_may_repeat(box: Sandbox, cni: Cni,
                                                netns: NetnsFactory) -> None:
    ns = netns()
    result = cni.add("ctr1", ns).json
    host = result["interfaces"][0]["name"]
    for _ in range(2):
        out = cni.delete("ctr1", ns)
        assert (out.status, out.stdout) == (0, "")
    assert leases(box) == 0
    assert host not in host_links(box)
    assert "eth0" not in in_netns(ns, "ip", "-o", "link").stdout
    assert cni.delete("never-added", ns).status == 0
    assert cni.check("ctr1", ns).error()["code"] == 3


def test_del_after_the_netns_is_gone_frees_the_lease(box: Sandbox, cni: Cni,
                                                     netns: NetnsFactory) -> None:
    ns = netns()
    host = cni.add("ctr1", ns).json["interfaces"][0]["name"]
    assert leases(box) == 1
    sh("ip", "netns", "del", Path(ns).name)
    assert cni.delete("ctr1", ns).status == 0
    assert leases(box) == 0 and host not in host_links(box)
    # A runtime may also leave CNI_NETNS empty once the netns is gone.
    ns2 = netns()
    assert cni.add("ctr2", ns2).status == 0
    sh("ip", "netns", "del", Path(ns2).name)
    assert cni.delete("ctr2", "").status == 0
    assert leases(box) == 0


def test_parallel_adds_get_distinct_addresses(box: Sandbox, cni: Cni,
                                              netns: NetnsFactory) -> None:
    spaces = [netns() for _ in range(20)]
    with ThreadPoolExecutor(20) as pool:
        outs = list(pool.map(lambda i: cni.add(f"ctr{i}", spaces[i]), range(20)))
    assert [o.status for o in outs] == [0] * 20, [o.stdout for o in outs if o.status]
    addresses = {address_of(o.json) for o in outs}
    assert len(addresses) == 20 and leases(box) == 20
    with ThreadPoolExecutor(20) as pool:
        dels = list(pool.map(lambda i: cni.delete(f"ctr{i}", spaces[i]), range(20)))
    assert [o.status for o in dels] == [0] * 20
    assert leases(box) == 0


def test_gc_removes_the_stale_attachments(box: Sandbox, cni: Cni,
                                          netns: NetnsFactory) -> None:
    cni.version = "1.1.0"
    spaces = {cid: netns() for cid in ("keep", "stale1", "stale2")}
    hosts = {cid: cni.add(cid, ns).json["interfaces"][0]["name"] for cid, ns in spaces.items()}
    grpc_made = box.run("/bin/sleep", "300")
    assert leases(box) == 4
    out = cni.gc([("keep", "eth0")])
    assert (out.status, out.stdout) == (0, ""), out
    assert leases(box) == 2  # "keep" and the gRPC container, which GC never touches
    links = host_links(box)
    assert hosts["keep"] in links and not {hosts["stale1"], hosts["stale2"]} & set(links)
    assert cni.check("keep", spaces["keep"]).status == 0
    assert ping(spaces["keep"], grpc_made.networks[0].ip_address)


def test_status_is_0_while_sheepd_serves(cni: Cni) -> None:
    cni.version = "1.1.0"
    out = cni.status()
    assert (out.status, out.stdout) == (0, "")


def test_published_ports_reach_the_container(box: Sandbox, cni: Cni,
                                             netns: NetnsFactory) -> None:
    world = World(box)
    servers = Servers()
    try:
        ns = netns()
        servers.listen(Path(ns), "cni", "tcp", 80)
        servers.start()
        out = cni.add("web", ns, ports=[{"hostPort": 8080, "containerPort": 80,
                                         "protocol": "tcp"}])
        assert out.status == 0, out
        assert world.ask(world.internet, UPLINK, 8080) == f"cni:80 {INTERNET}"
        assert cni.delete("web", ns).status == 0
        assert world.ask(world.internet, UPLINK, 8080) is None
    finally:
        servers.stop()
        world.close()


def test_dels_while_sheepd_is_down_are_queued_then_drained(box: Sandbox, cni: Cni,
                                                           netns: NetnsFactory) -> None:
    ns1, ns2 = netns(), netns()
    host1 = cni.add("ctr1", ns1).json["interfaces"][0]["name"]
    assert cni.add("ctr2", ns2).status == 0
    box.stop()
    err = cni.add("ctr3", netns()).error()
    assert err["code"] == 11
    cni.version = "1.1.0"
    assert cni.status().error()["code"] == 50
    cni.version = "1.0.0"
    out = cni.delete("ctr1", ns1)
    assert (out.status, out.stdout) == (0, "")
    sh("ip", "netns", "del", Path(ns2).name)  # gone while sheepd was down, then DEL
    assert cni.delete("ctr2", ns2).status == 0
    assert len(queued(box)) == 2
    box.start()
    assert queued(box) == []
    assert leases(box) == 0 and host1 not in host_links(box)
    assert "ran the queued CNI DEL of ctr1/eth0" in box.log()
    assert cni.add("ctr1", ns1).status == 0  # the key is free again
