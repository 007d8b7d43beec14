"""The name index and the wire handling, without root: the index from plain records,
a DnsServer on 127.0.0.1 and ::1 forwarding to a fake upstream on 127.0.0.1, and the
ops side over the fakes (a recording resolver: no packet leaves the process)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
)
from pathlib import Path
from typing import cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.dns import DnsServer, Forwarder, parse_upstreams
from sheep_runtime.dns.answer import local_answer
from sheep_runtime.dns.cache import AnswerCache
from sheep_runtime.errors import InvalidArgument, KernelError
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Container, ContainerState, NameTable
from sheep_runtime.ops.dns import NameIndex, NetworkNames, hosts_file
from sheep_runtime.ops.specs import validate_aliases
from tests.dns.upstream import answer
from tests.ops.daemon import Daemon

LO = IPv4Address("127.0.0.1")
LO6 = IPv6Address("::1")


def container(name: str, cid: str) -> Container:
    return Container(id=cid * 64, name=name, command=("sleep",), env={}, hostname=name,
                     network_mode="", state=ContainerState.RUNNING, created_at=0.0,
                     netns_path="")


def attachment(c: Container, net: str, ip: str, *aliases: str, ip6: str = "",
               seq: int = 0) -> Attachment:
    return Attachment(container_id=c.id, network_id=net, interface_name="eth0",
                      address=IPv4Interface(f"{ip}/24"), gateway=IPv4Address("10.0.0.1"),
                      mac="02:00:00:00:00:01", host_interface="h", aliases=aliases,
                      address6=IPv6Interface(f"{ip6}/64") if ip6 else None,
                      gateway6=IPv6Address("fd00::1") if ip6 else None, seq=seq)


def test_index_resolves_names_for_askers_on_shared_networks_only() -> None:
    idx = NameIndex()
    a, b, c = container("a", "a"), container("b", "b"), container("c", "c")
    idx.set(a, [attachment(a, "n1", "10.0.1.2"), attachment(a, "n2", "10.0.2.2")])
    idx.set(b, [attachment(b, "n1", "10.0.1.3", "db")])
    idx.set(c, [attachment(c, "n2", "10.0.2.3")])
    ip = IPv4Address
    assert idx.addresses("n1", ip("10.0.1.2"), "b") == (ip("10.0.1.3"),)
    assert idx.addresses("n1", ip("10.0.1.2"), "db") == (ip("10.0.1.3"),)
    assert idx.addresses("n1", ip("10.0.1.2"), "b" * 12) == (ip("10.0.1.3"),)
    assert idx.addresses("n1", ip("10.0.1.2"), "c") == (ip("10.0.2.3"),)  # via n2
    assert idx.addresses("n1", ip("10.0.1.3"), "c") == ()  # b shares nothing with c
    assert idx.addresses("n2", ip("10.0.2.3"), "db") == ()  # an alias is per network
    assert idx.addresses("n1", ip("10.0.1.2"), "example.com") is None
    assert idx.name_of("n1", ip("10.0.1.2"), ip("10.0.1.3")) == "b"
    assert idx.name_of("n2", ip("10.0.2.3"), ip("10.0.1.3")) == ""
    assert idx.name_of("n1", ip("10.0.1.2"), ip("8.8.8.8")) is None
    idx.drop(b.id)
    assert idx.addresses("n1", ip("10.0.1.2"), "b") is None
    assert idx.name_of("n1", ip("10.0.1.2"), ip("10.0.1.3")) is None
    idx.clear()
    assert len(idx) == 0 and idx.addresses("n2", ip("10.0.2.2"), "c") is None


def dual_world() -> NameIndex:
    """n1 dual stack (a, b), n2 dual stack (c, f), n3 IPv4 only (a, d, f)."""
    idx = NameIndex()
    a, b, c = container("a", "a"), container("b", "b"), container("c", "c")
    d, f = container("d", "d"), container("f", "f")
    idx.set(a, [attachment(a, "n1", "10.0.1.2", ip6="fd00:1::2"),
                attachment(a, "n3", "10.0.3.2")])
    idx.set(b, [attachment(b, "n1", "10.0.1.3", "db", ip6="fd00:1::3")])
    idx.set(c, [attachment(c, "n2", "10.0.2.3", ip6="fd00:2::3")])
    idx.set(d, [attachment(d, "n3", "10.0.3.4")])
    idx.set(f, [attachment(f, "n2", "10.0.2.5", ip6="fd00:2::5"),
                attachment(f, "n3", "10.0.3.5")])
    return idx


def test_index_answers_ipv6_on_shared_networks_only() -> None:
    idx = dual_world()
    v4, v6 = IPv4Address, IPv6Address
    for asker in (v4("10.0.1.2"), v6("fd00:1::2")):  # a, by either of its addresses
        assert idx.addresses6("n1", asker, "b") == (v6("fd00:1::3"),)
        assert idx.addresses6("n1", asker, "db") == (v6("fd00:1::3"),)
        assert idx.addresses6("n1", asker, "b" * 12) == (v6("fd00:1::3"),)
        assert idx.addresses("n1", asker, "b") == (v4("10.0.1.3"),)
        # d shares n3 (IPv4 only) with a: a name with no IPv6 address (NODATA)
        assert idx.addresses("n1", asker, "d") == (v4("10.0.3.4"),)
        assert idx.addresses6("n1", asker, "d") == ()
        # f has IPv6 only on n2, which a does not share: A via n3, no AAAA
        assert idx.addresses("n1", asker, "f") == (v4("10.0.3.5"),)
        assert idx.addresses6("n1", asker, "f") == ()
        # c is only on n2: NXDOMAIN for every type
        assert idx.addresses("n1", asker, "c") == ()
        assert idx.addresses6("n1", asker, "c") == ()
        assert idx.name_of("n1", asker, v6("fd00:1::3")) == "b"
        assert idx.name_of("n1", asker, v6("fd00:2::3")) == ""  # c's, not for a
        assert idx.name_of("n1", asker, v6("fd00:2::5")) == ""  # f's n2 address
        assert idx.name_of("n1", asker, v6("2001:db8::1")) is None
    # c asks over IPv6 on n2: it sees f there (both families), not b
    assert idx.addresses6("n2", v6("fd00:2::3"), "f") == (v6("fd00:2::5"),)
    assert idx.addresses("n2", v6("fd00:2::3"), "f") == (v4("10.0.2.5"),)
    assert idx.addresses("n2", v6("fd00:2::3"), "b") == ()
    assert idx.name_of("n2", v6("fd00:2::3"), v6("fd00:1::3")) == ""
    # an address of n1 that no container holds sees n1 only
    assert idx.addresses6("n1", v6("fd00:1::99"), "b") == (v6("fd00:1::3"),)
    assert idx.addresses("n1", v6("fd00:1::99"), "d") == ()
    # an IPv6 address holds no more once its container is gone
    idx.drop("b" * 64)
    assert idx.addresses("n1", v6("fd00:1::2"), "b") is None
    assert idx.name_of("n1", v6("fd00:1::2"), v6("fd00:1::3")) is None
    assert idx.addresses6("n1", v6("fd00:1::3"), "a") == (v6("fd00:1::2"),)  # a stranger


def _ask(names: NameTable, asker: str, qname: str, rdtype: str
         ) -> tuple[str, list[str]] | None:
    local = local_answer(dns.message.make_query(qname, rdtype), names, ip_address(asker))
    if local is None:
        return None
    response, _ = local
    assert response.flags & dns.flags.AA
    return (dns.rcode.to_text(response.rcode()),
            sorted(f"{dns.rdatatype.to_text(r.rdtype)} {rd}" for r in response.answer
                   for rd in r))


def test_local_answers_aaaa_nodata_nxdomain_and_ip6_ptr() -> None:
    names = NetworkNames(dual_world(), "n1")
    a6 = "fd00:1::2"
    assert _ask(names, a6, "b", "AAAA") == ("NOERROR", ["AAAA fd00:1::3"])
    assert _ask(names, "10.0.1.2", "DB", "AAAA") == ("NOERROR", ["AAAA fd00:1::3"])
    assert _ask(names, a6, "b", "ANY") == ("NOERROR", ["A 10.0.1.3", "AAAA fd00:1::3"])
    assert _ask(names, a6, "d", "AAAA") == ("NOERROR", [])  # NODATA, not forwarded
    assert _ask(names, a6, "d", "A") == ("NOERROR", ["A 10.0.3.4"])
    assert _ask(names, a6, "c", "AAAA") == ("NXDOMAIN", [])
    assert _ask(names, a6, "outside.example", "AAAA") is None  # forwarded
    ptr = dns.reversename.from_address("fd00:1::3").to_text()
    assert ptr.endswith(".ip6.arpa.")
    assert _ask(names, a6, ptr, "PTR") == ("NOERROR", ["PTR b."])
    assert _ask(names, "10.0.1.2", ptr, "PTR") == ("NOERROR", ["PTR b."])
    hidden = dns.reversename.from_address("fd00:2::3").to_text()
    assert _ask(names, a6, hidden, "PTR") == ("NXDOMAIN", [])
    assert _ask(names, a6, dns.reversename.from_address("2001:db8::1").to_text(),
                "PTR") is None
    assert _ask(names, a6, "0.0.d.f.ip6.arpa", "PTR") is None  # no whole address
    four = dns.reversename.from_address("10.0.1.3").to_text()
    assert _ask(names, a6, four, "PTR") == ("NOERROR", ["PTR b."])  # v6 asker, v4 PTR


def test_aliases_are_validated_like_hostnames() -> None:
    assert validate_aliases(["db", "a.b-c", "db"]) == ("db", "a.b-c")
    for bad in ("db\n", "-db", "a..b", "x" * 65, "", "a b"):
        with pytest.raises(InvalidArgument):
            validate_aliases([bad])


def test_hosts_file_names_the_container() -> None:
    c = container("web", "w")
    text = hosts_file(c, [attachment(c, "n1", "10.0.1.9")])
    assert "127.0.0.1\tlocalhost\n" in text and "10.0.1.9\tweb\n" in text
    assert "::1\tlocalhost ip6-localhost ip6-loopback\n" in text
    text = hosts_file(c, [attachment(c, "n2", "10.0.2.9", ip6="fd00:2::9", seq=1),
                          attachment(c, "n1", "10.0.1.9", seq=0)])
    assert text.splitlines()[2:] == ["10.0.1.9\tweb", "10.0.2.9\tweb", "fd00:2::9\tweb"]


def test_upstreams_and_cache() -> None:
    assert parse_upstreams(["1.2.3.4", "127.0.0.1:5353", "[::1]:53"]) == (
        ("1.2.3.4", 53), ("127.0.0.1", 5353), ("::1", 53))
    with pytest.raises(InvalidArgument):
        parse_upstreams(["resolver.example"])
    cache = AnswerCache(max_entries=2)
    query = dns.message.make_query("x.example", "A")
    response = dns.message.from_wire(answer(query.to_wire(), {"x.example": "192.0.2.1"}))
    cache.put(("x.example.", 1, 1), response, now=0.0)
    hit = cache.get(("x.example.", 1, 1), now=100.0)
    assert hit is not None and hit.answer[0].ttl == 200
    assert cache.get(("x.example.", 1, 1), now=300.0) is None  # TTL 300 is over
    for n in range(3):
        cache.put((f"{n}.", 1, 1), response, now=0.0)
    assert len(cache) == 2


IPAddress = IPv4Address | IPv6Address


class _Names:
    """web: 10.9.0.2 and fd00:9::2; plain: 10.9.0.3 only; hidden: not for this asker."""

    version = 0

    def addresses(self, asker: IPAddress, name: str) -> tuple[IPv4Address, ...] | None:
        return {"web": (IPv4Address("10.9.0.2"),), "plain": (IPv4Address("10.9.0.3"),),
                "hidden": ()}.get(name)

    def addresses6(self, asker: IPAddress, name: str) -> tuple[IPv6Address, ...]:
        return (IPv6Address("fd00:9::2"),) if name == "web" else ()

    def name_of(self, asker: IPAddress, address: IPAddress) -> str | None:
        return "web" if str(address) in ("10.9.0.2", "fd00:9::2") else None


class _Upstream(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(answer(data, {"outside.example": ("192.0.2.7",
                                                                "2001:db8::7")}), addr)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(metrics: Metrics, *upstream_ports: int, timeout: float) -> tuple[DnsServer, int]:
    """A DnsServer on a free port forwarding to 127.0.0.1 at `upstream_ports`, in order;
    the server and its port."""
    forwarder = Forwarder([("127.0.0.1", p) for p in upstream_ports], metrics=metrics,
                          timeout=timeout)
    port = _free_port()
    return DnsServer(forwarder=forwarder, metrics=metrics, port=port), port


async def test_server_answers_local_names_forwards_others_and_refuses_strangers() -> None:
    loop = asyncio.get_running_loop()
    up, _ = await loop.create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", 0))
    up_port = up.get_extra_info("sockname")[1]
    metrics = Metrics()
    dead = _free_port()  # nothing listens there: the first upstream times out
    server, port = _server(metrics, dead, up_port, timeout=0.3)
    await server.serve(network_id="n", address=LO, subnet=IPv4Network("127.0.0.0/8"),
                       names=_Names(), forward=True)
    try:
        async def ask(name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
            q = dns.message.make_query(name, rdtype)
            query = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
            return await query(q, "127.0.0.1", port=port, timeout=3)
        r = await ask("web")
        assert [str(rd) for rd in r.answer[0]] == ["10.9.0.2"]
        assert (await ask("web", tcp=True)).answer[0][0].to_text() == "10.9.0.2"
        assert (await ask("hidden")).rcode() == dns.rcode.NXDOMAIN
        assert (await ask("2.0.9.10.in-addr.arpa", "PTR")).answer[0][0].to_text() == "web."
        r = await ask("outside.example")
        assert [str(rd) for rd in r.answer[0]] == ["192.0.2.7"]
        assert (await ask("nowhere.example")).rcode() == dns.rcode.NXDOMAIN
        up.close()
        assert (await ask("second.example")).rcode() == dns.rcode.SERVFAIL
        await server.serve(network_id="n", address=LO, subnet=IPv4Network("10.0.0.0/8"),
                           names=NetworkNames(NameIndex(), "n"), forward=True)
        assert (await ask("web")).rcode() == dns.rcode.REFUSED  # 127.0.0.1 is no member
    finally:
        await server.close()
    assert server.serving() == []
    counted: collections.Counter[str] = collections.Counter()
    for m in metrics.registry.collect():
        for sample in m.samples:
            if sample.name == "sheep_dns_queries_total":
                counted[sample.labels["result"]] += int(sample.value)
    assert counted == {"answered": 3, "nxdomain": 1, "forwarded": 2, "servfail": 1,
                       "refused": 1}


class _ShortLivedUpstream(asyncio.DatagramProtocol):
    """Answers every A query with 192.0.2.9, TTL 1 s; counts the queries."""

    queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 1, "IN", "A",
                                                   "192.0.2.9"))
        self.transport.sendto(response.to_wire(), addr)


async def test_a_forwarded_answer_is_reused_while_its_ttl_lasts() -> None:
    loop = asyncio.get_running_loop()
    up, upstream = await loop.create_datagram_endpoint(_ShortLivedUpstream,
                                                       local_addr=("127.0.0.1", 0))
    metrics = Metrics()
    server, port = _server(metrics, up.get_extra_info("sockname")[1], timeout=0.3)
    await server.serve(network_id="n", address=LO, subnet=IPv4Network("127.0.0.0/8"),
                       names=_Names(), forward=True)
    try:
        async def ask() -> list[str]:
            q = dns.message.make_query("short.example", "A")
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
            assert r.id == q.id
            return [str(rd) for rd in r.answer[0]]
        for _ in range(3):  # the same question: the memo, then the cache
            assert await ask() == ["192.0.2.9"]
        assert upstream.queries == 1
        await asyncio.sleep(1.2)  # the TTL is over: asked again
        assert await ask() == ["192.0.2.9"]
        assert upstream.queries == 2
    finally:
        await server.close()
        up.close()
    forwarded = metrics.registry.get_sample_value(
        "sheep_dns_queries_total", {"type": "A", "result": "forwarded"})
    assert forwarded == 4


async def test_server_listens_on_the_ipv6_gateway_too() -> None:
    loop = asyncio.get_running_loop()
    up, _ = await loop.create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", 0))
    metrics = Metrics()
    server, port = _server(metrics, up.get_extra_info("sockname")[1], timeout=1)
    await server.serve(network_id="n", address=LO, subnet=IPv4Network("127.0.0.0/8"),
                       names=_Names(), forward=True, address6=LO6,
                       subnet6=IPv6Network("::1/128"))
    try:
        async def ask(name: str, rdtype: str, *, where: str = "::1", tcp: bool = False
                      ) -> tuple[str, list[str]]:
            q = dns.message.make_query(name, rdtype)
            query = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
            r = await query(q, where, port=port, timeout=3)
            return (dns.rcode.to_text(r.rcode()),
                    sorted(str(rd) for rrset in r.answer for rd in rrset))
        for tcp in (False, True):
            assert await ask("web", "AAAA", tcp=tcp) == ("NOERROR", ["fd00:9::2"])
            assert await ask("web", "A", tcp=tcp) == ("NOERROR", ["10.9.0.2"])
        assert await ask("web", "AAAA", where="127.0.0.1") == ("NOERROR", ["fd00:9::2"])
        assert await ask("plain", "AAAA") == ("NOERROR", [])
        assert await ask("hidden", "AAAA") == ("NXDOMAIN", [])
        ptr = dns.reversename.from_address("fd00:9::2").to_text()
        assert await ask(ptr, "PTR") == ("NOERROR", ["web."])
        # AAAA of other names goes upstream like any type
        assert await ask("outside.example", "AAAA") == ("NOERROR", ["2001:db8::7"])
        assert await ask("outside.example", "A") == ("NOERROR", ["192.0.2.7"])
        assert await ask("outside.example", "AAAA", tcp=True) == ("NOERROR",
                                                                   ["2001:db8::7"])
        # ::1 is no member of this subnet6: refused, over IPv6 as over IPv4
        await server.serve(network_id="n", address=LO, subnet=IPv4Network("127.0.0.0/8"),
                           names=_Names(), forward=True, address6=LO6,
                           subnet6=IPv6Network("fd00:9::/64"))
        assert await ask("web", "AAAA") == ("REFUSED", [])
        assert await ask("web", "AAAA", where="127.0.0.1") == ("NOERROR", ["fd00:9::2"])
        # without IPv6 the network has no IPv6 listener
        await server.serve(network_id="n", address=LO, subnet=IPv4Network("127.0.0.0/8"),
                           names=_Names(), forward=True)
        with pytest.raises(dns.exception.Timeout):
            await dns.asyncquery.udp(dns.message.make_query("web", "AAAA"), "::1",
                                     port=port, timeout=0.3)
    finally:
        await server.close()
        up.close()


async def test_a_network_whose_ipv6_gateway_cannot_be_bound_gets_no_listener() -> None:
    metrics = Metrics()
    port = _free_port()
    server = DnsServer(forwarder=Forwarder([], metrics=metrics), metrics=metrics, port=port)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as taken:
        taken.bind(("::1", port))
        with pytest.raises(KernelError, match=r"\[::1\]:"):
            await server.serve(network_id="n", address=LO, subnet=IPv4Network("127.0.0.0/8"),
                               names=_Names(), forward=False, address6=LO6,
                               subnet6=IPv6Network("::1/128"))
    assert server.serving() == []
    await asyncio.sleep(0)  # a closed transport lets go of its socket on the next turn
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # all or nothing: the IPv4 socket was closed too


class RecordingResolver:
    """A `Resolver` that only records what it was asked to serve."""

    def __init__(self) -> None:
        self.served: dict[str, dict[str, object]] = {}

    async def serve(self, *, network_id: str, address: IPv4Address, subnet: IPv4Network,
                    names: NameTable, forward: bool, address6: IPv6Address | None = None,
                    subnet6: IPv6Network | None = None) -> None:
        self.served[network_id] = {"address": address, "subnet": subnet, "names": names,
                                   "address6": address6, "subnet6": subnet6}

    async def stop(self, network_id: str) -> None:
        self.served.pop(network_id, None)


@pytest.fixture
async def daemon_with_dns(tmp_path: Path) -> AsyncIterator[tuple[Daemon, RecordingResolver]]:
    socket_dir = Path(tempfile.mkdtemp(prefix="shp", dir="/tmp"))
    d = Daemon(tmp_path / "state", socket_dir)
    resolver = RecordingResolver()
    plain = d.machine.backends

    def backends(db_path: Path):  # type: ignore[no-untyped-def]
        b, store = plain(db_path)
        return dataclasses.replace(b, resolver=resolver), store
    d.machine.backends = backends  # type: ignore[method-assign]
    try:
        await d.start()
        yield d, resolver
    finally:
        await d.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(200):  # the index follows events on the next loop turns
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the index did not follow")


async def test_ops_serves_gateway6_and_indexes_ipv6_addresses(
        daemon_with_dns: tuple[Daemon, RecordingResolver]) -> None:
    d, resolver = daemon_with_dns
    net = await d.api.CreateNetwork(pb.CreateNetworkRequest(
        name="dual", subnet="10.30.0.0/24", subnet6="fd00:30::/64"))
    await _until(lambda: net.id in resolver.served)
    served = resolver.served[net.id]
    assert (str(served["address6"]), str(served["subnet6"])) == ("fd00:30::1",
                                                                 "fd00:30::/64")
    default = next(n for n in d.store.networks() if n.name == "sheep0")
    assert resolver.served[default.id]["address6"] is None
    assert resolver.served[default.id]["subnet6"] is None

    def run(name: str, *networks: str) -> pb.Container:
        return d.api.CreateContainer(pb.CreateContainerRequest(  # type: ignore[no-any-return]
            name=name, command=["sleep", "inf"],
            networks=[pb.NetworkAttachmentRequest(network=n) for n in networks]))
    a = await run("ay", "dual")
    b = await run("bee", "dual", "sheep0")
    c = await run("sea")  # sheep0 only, IPv4 only
    names = cast(NameTable, served["names"])
    a6, b6 = IPv6Address(a.networks[0].ip6_address), IPv6Address(b.networks[0].ip6_address)
    await _until(lambda: names.addresses6(a6, "bee") == (b6,))
    assert names.addresses(a6, "bee") == (IPv4Address(b.networks[0].ip_address),)
    assert names.addresses6(a6, "sea") == () and names.addresses(a6, "sea") == ()
    assert names.name_of(a6, b6) == "bee"
    on_default = cast(NameTable, resolver.served[default.id]["names"])
    c4 = IPv4Address(c.networks[0].ip_address)
    assert names.addresses(c4, "bee") is not None
    assert on_default.addresses(c4, "bee") == (IPv4Address(b.networks[1].ip_address),)
    assert on_default.addresses6(c4, "bee") == ()  # its IPv6 is on "dual": NODATA
    assert on_default.name_of(c4, b6) == ""
    etc = d.config.containers_dir / b.id / "etc"
    if Path("/etc/resolv.conf").exists():  # only files the host has are written
        assert (etc / "resolv.conf").read_text() == "nameserver 10.30.0.1\n"
    if Path("/etc/hosts").exists():
        assert f"{b6}\tbee\n" in (etc / "hosts").read_text()
    await d.api.DetachNetwork(pb.DetachNetworkRequest(container_id=b.id, network="dual"))
    await _until(lambda: names.addresses6(a6, "bee") == ())
    assert names.name_of(a6, b6) is None
