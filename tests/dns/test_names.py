"""The name index and the wire handling, without root: the index from plain records,
and a DnsServer on 127.0.0.1 forwarding to a fake upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
import collections
import socket
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import cast

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from sheep_runtime.dns import DnsServer, Forwarder, parse_upstreams
from sheep_runtime.dns.cache import AnswerCache
from sheep_runtime.errors import InvalidArgument
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Container, ContainerState
from sheep_runtime.ops.dns import NameIndex, NetworkNames, hosts_file
from sheep_runtime.ops.specs import validate_aliases
from tests.dns.upstream import answer

LO = IPv4Address("127.0.0.1")


def container(name: str, cid: str) -> Container:
    return Container(id=cid * 64, name=name, command=("sleep",), env={}, hostname=name,
                     network_mode="", state=ContainerState.RUNNING, created_at=0.0,
                     netns_path="")


def attachment(c: Container, net: str, ip: str, *aliases: str) -> Attachment:
    return Attachment(container_id=c.id, network_id=net, interface_name="eth0",
                      address=IPv4Interface(f"{ip}/24"), gateway=IPv4Address("10.0.0.1"),
                      mac="02:00:00:00:00:01", host_interface="h", aliases=aliases)


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


def test_aliases_are_validated_like_hostnames() -> None:
    assert validate_aliases(["db", "a.b-c", "db"]) == ("db", "a.b-c")
    for bad in ("db\n", "-db", "a..b", "x" * 65, "", "a b"):
        with pytest.raises(InvalidArgument):
            validate_aliases([bad])


def test_hosts_file_names_the_container() -> None:
    c = container("web", "w")
    text = hosts_file(c, [attachment(c, "n1", "10.0.1.9")])
    assert "127.0.0.1\tlocalhost\n" in text and "10.0.1.9\tweb\n" in text


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


class _Names:
    version = 0

    def addresses(self, asker: IPv4Address, name: str) -> tuple[IPv4Address, ...] | None:
        return {"web": (IPv4Address("10.9.0.2"),), "hidden": ()}.get(name)

    def name_of(self, asker: IPv4Address, address: IPv4Address) -> str | None:
        return "web" if address == IPv4Address("10.9.0.2") else None


class _Upstream(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(answer(data, {"outside.example": "192.0.2.7"}), addr)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_answers_local_names_forwards_others_and_refuses_strangers() -> None:
    loop = asyncio.get_running_loop()
    up, _ = await loop.create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", 0))
    up_port = up.get_extra_info("sockname")[1]
    metrics = Metrics()
    dead = _free_port()  # nothing listens there: the first upstream times out
    forwarder = Forwarder([("127.0.0.1", dead), ("127.0.0.1", up_port)], metrics=metrics,
                          timeout=0.3)
    port = _free_port()
    server = DnsServer(forwarder=forwarder, metrics=metrics, port=port)
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
