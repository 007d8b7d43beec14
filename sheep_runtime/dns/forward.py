"""Forwarding of names that are not containers': each upstream in turn over UDP (TCP
when the answer is truncated), with a timeout, through the answer cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode

from sheep_runtime.dns.cache import AnswerCache, Key
from sheep_runtime.dns.upstreams import Upstream
from sheep_runtime.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


class Forwarder:
    """Asks the upstream resolvers. The daemon itself sends the query, from its own
    netns: an upstream on the host's loopback (127.0.0.53) works as well as any."""

    def __init__(self, upstreams: Sequence[Upstream], *, metrics: Metrics,
                 timeout: float = DEFAULT_TIMEOUT, cache: AnswerCache | None = None) -> None:
        self.upstreams = tuple(upstreams)
        self._metrics = metrics
        self._timeout = timeout
        self._cache = AnswerCache() if cache is None else cache

    async def resolve(self, query: dns.message.Message) -> dns.message.Message | None:
        """The answer to `query` (its id), from the cache or the first upstream that
        gives one; None if none did (the caller answers SERVFAIL)."""
        cached = self.cached(query)
        if cached is not None:
            return cached
        key = _key(query)
        for host, port in self.upstreams:
            t0 = time.perf_counter()
            response = await self._ask(query, host, port)
            if response is None or response.rcode() in (dns.rcode.SERVFAIL,
                                                         dns.rcode.REFUSED):
                continue
            self._metrics.dns_forward_seconds.observe(time.perf_counter() - t0)
            self._cache.put(key, response)
            return response
        return None

    def cached(self, query: dns.message.Message) -> dns.message.Message | None:
        """The cached answer to `query` (its id), None if there is none."""
        cached = self._cache.get(_key(query))
        if cached is not None:
            self._metrics.dns_cache_hits.inc()
            cached.id = query.id
        return cached

    async def _ask(self, query: dns.message.Message, host: str, port: int
                   ) -> dns.message.Message | None:
        try:
            response = await dns.asyncquery.udp(query, host, port=port,
                                                timeout=self._timeout)
            if response.flags & dns.flags.TC:
                response = await dns.asyncquery.tcp(query, host, port=port,
                                                    timeout=self._timeout)
        except (dns.exception.DNSException, OSError, EOFError) as e:
            log.debug("upstream %s:%d failed for %s: %r", host, port, query.question[0], e)
            return None
        return response


def _key(query: dns.message.Message) -> Key:
    q = query.question[0]
    return q.name.to_text().lower(), q.rdtype, q.rdclass
