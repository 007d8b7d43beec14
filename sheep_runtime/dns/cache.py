"""A bounded cache of upstream answers that honours their TTLs."""

from __future__ import annotations

import collections
import time

import dns.message
import dns.rcode
import dns.rdatatype

Key = tuple[str, int, int]  # (lower-case name, type, class)

MAX_TTL = 3600  # keep nothing longer than an hour, whatever upstream says
NEGATIVE_TTL = 60  # an NXDOMAIN / NODATA answer without an SOA


class AnswerCache:
    """Least-recently-used, at most `max_entries`; an entry expires after the smallest
    TTL of its records (for negative answers the SOA's), and a hit comes back with its
    TTLs lowered by the time it spent here."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: collections.OrderedDict[Key, tuple[float, float, bytes]] = (
            collections.OrderedDict())
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, *, now: float | None = None) -> dns.message.Message | None:
        """The cached answer for `key`, None if absent or expired."""
        now = time.monotonic() if now is None else now
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, expires, wire = entry
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        msg = dns.message.from_wire(wire)
        elapsed = int(now - stored)
        for section in (msg.answer, msg.authority, msg.additional):
            for rrset in section:
                rrset.ttl = max(0, rrset.ttl - elapsed)
        return msg

    def put(self, key: Key, response: dns.message.Message, *,
            now: float | None = None) -> None:
        """Keep `response` (a NOERROR or NXDOMAIN answer) for its TTL."""
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return
        ttl = ttl_of(response)
        if ttl <= 0:
            return
        now = time.monotonic() if now is None else now
        self._entries[key] = (now, now + ttl, response.to_wire())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def ttl_of(response: dns.message.Message) -> int:
    """How long `response` may be kept: its smallest TTL, for a negative answer the
    SOA's (RFC 2308), capped at MAX_TTL."""
    if response.answer and response.rcode() == dns.rcode.NOERROR:
        return min(MAX_TTL, *(r.ttl for r in response.answer))
    soa = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
    if soa:  # RFC 2308: the negative TTL is min(SOA TTL, SOA minimum)
        return min(MAX_TTL, soa[0].ttl, *(getattr(rd, "minimum", MAX_TTL) for rd in soa[0]))
    return NEGATIVE_TTL
