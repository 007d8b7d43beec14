"""Answers from the name table: containers' A, AAAA and PTR (in-addr.arpa and
ip6.arpa) records (pure, no I/O)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from sheep_runtime.model import NameTable

# Answers change the moment a container goes: resolvers must not keep them.
LOCAL_TTL = 0
REVERSE_V4 = dns.name.from_text("in-addr.arpa.")
REVERSE_V6 = dns.name.from_text("ip6.arpa.")
KNOWN_TYPES = frozenset({"A", "AAAA", "PTR", "SRV", "MX", "TXT", "CNAME", "NS", "SOA",
                         "ANY", "HTTPS", "SVCB", "CAA"})

IPAddress = IPv4Address | IPv6Address


def type_label(rdtype: dns.rdatatype.RdataType) -> str:
    """A bounded metric label for a query type."""
    text = dns.rdatatype.to_text(rdtype)
    return text if text in KNOWN_TYPES else "other"


def local_answer(query: dns.message.Message, names: NameTable, asker: IPAddress
                 ) -> tuple[dns.message.Message, str] | None:
    """The answer and its result label ("answered", "nxdomain") if the question is
    about a container; None if it is to be forwarded. `asker` is the query's source
    address, IPv4 or IPv6."""
    q = query.question[0]
    if q.rdclass != dns.rdataclass.IN:
        return None
    if q.name.is_subdomain(REVERSE_V4) or q.name.is_subdomain(REVERSE_V6):
        return _reverse(query, q.name, q.rdtype, names, asker)
    name = q.name.to_text(omit_final_dot=True).lower()
    found = names.addresses(asker, name)
    if found is None:
        return None
    response = _response(query)
    if not found:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response, "nxdomain"
    if q.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
        _add(response, q.name, dns.rdatatype.A, found)
    if q.rdtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY):
        # no IPv6 address on the shared networks: NODATA, never forwarded (the name is
        # a container's: upstream must not answer for it)
        _add(response, q.name, dns.rdatatype.AAAA, names.addresses6(asker, name))
    return response, "answered"  # other types of a container's name: NODATA


def _add(response: dns.message.Message, qname: dns.name.Name,
         rdtype: dns.rdatatype.RdataType,
         addresses: tuple[IPv4Address, ...] | tuple[IPv6Address, ...]) -> None:
    if addresses:
        response.answer.append(dns.rrset.from_text_list(
            qname, LOCAL_TTL, dns.rdataclass.IN, rdtype, [str(a) for a in addresses]))


def _reverse(query: dns.message.Message, qname: dns.name.Name, rdtype: int,
             names: NameTable, asker: IPAddress
             ) -> tuple[dns.message.Message, str] | None:
    try:  # a partial name (fewer labels than an address has) names no address: forward
        address = ip_address(dns.reversename.to_address(qname))
    except (ValueError, dns.exception.DNSException):
        return None
    target = names.name_of(asker, address)
    if target is None:
        return None
    response = _response(query)
    if not target:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response, "nxdomain"
    if rdtype in (dns.rdatatype.PTR, dns.rdatatype.ANY):
        response.answer.append(dns.rrset.from_text_list(
            qname, LOCAL_TTL, dns.rdataclass.IN, dns.rdatatype.PTR, [f"{target}."]))
    return response, "answered"


def _response(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA | dns.flags.RA
    return response


def status_response(query: dns.message.Message, rcode: dns.rcode.Rcode
                    ) -> dns.message.Message:
    """An empty answer with `rcode` (SERVFAIL, REFUSED, ...)."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    return response
