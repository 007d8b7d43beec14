"""Audit of the calls that change something: who did what, and how it ended.

`AuditInterceptor` wraps every mutating method of the API service (`Create*`,
`Remove*`, `Stop*`, `Attach*`, `Detach*`). When such a call ends it logs

    audit: method=CreateContainer peer=ipv4:127.0.0.1:40312 identity=alice code=OK

and publishes an `api.audit` event with the attributes `method`, `identity`, `peer`
and `code` (the status code's name, e.g. OK, INVALID_ARGUMENT).

The identity on the TCP listener is the client certificate's subject common name, or
its first subject alternative name if it has no CN (mutual TLS: there always is a
certificate). gRPC exposes no peer credentials of a Unix socket connection, so there
the identity is "unix": whoever could open the socket, i.e. root or a member of the
socket group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from sheep_runtime.api.interceptor import API_SERVICE, split_method, status_of
from sheep_runtime.api.richstatus import bounded
from sheep_runtime.ops.events import EventBus

log = logging.getLogger(__name__)

EVENT_TYPE = "api.audit"
MUTATING_PREFIXES = ("Create", "Remove", "Stop", "Start", "Restart", "Attach", "Detach",
                     "Import", "Exec", "Leave")
# auth_context() keys, in order of preference.
_IDENTITY_KEYS = ("x509_common_name", "x509_subject_alternative_name")

Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def identity(context: grpc.aio.ServicerContext) -> str:
    """Who is calling: the client certificate's CN (or first SAN), else "unix" on the
    Unix socket, else "unknown"."""
    auth = context.auth_context()
    for key in _IDENTITY_KEYS:
        values = auth.get(key)
        if values:
            return bounded(values[0].decode("utf-8", "replace"))
    return "unix" if context.peer().startswith("unix:") else "unknown"


def _code_after(exc: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    if isinstance(exc, grpc.aio.AbortError):
        return status_of(context, grpc.StatusCode.UNKNOWN)
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class AuditInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Logs and publishes one `api.audit` event per mutating call of `service`."""

    def __init__(self, events: EventBus, *, service: str = API_SERVICE) -> None:
        self.events = events
        self.service = service

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        service, method = split_method(handler_call_details.method)
        if (handler is None or handler.unary_unary is None or service != self.service
                or not method.startswith(MUTATING_PREFIXES)):
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._audited(handler.unary_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def _audited(self, behavior: Unary, method: str) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                response = await behavior(request, context)
            except BaseException as e:
                self._record(method, context, _code_after(e, context))
                raise
            self._record(method, context, status_of(context, grpc.StatusCode.OK))
            return response

        return call

    def _record(self, method: str, context: grpc.aio.ServicerContext,
                code: grpc.StatusCode) -> None:
        who, peer = identity(context), context.peer()
        log.info("audit: method=%s peer=%s identity=%s code=%s", method, peer, who,
                 code.name)
        self.events.publish(EVENT_TYPE, attributes={
            "method": method, "identity": who, "peer": peer, "code": code.name})
