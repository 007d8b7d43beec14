"""One grpc.aio server interceptor for every call's metrics.

It exports the grpc-ecosystem server metrics (the names and labels of
go-grpc-middleware's prometheus provider, so stock gRPC dashboards work):

- `grpc_server_started_total{grpc_type, grpc_service, grpc_method}`
- `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`
- `grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}` (100 µs .. 10 s)

`grpc_code` is the canonical Go spelling of the status (`OK`, `NotFound`,
`FailedPrecondition`, ...) as in the ecosystem's dashboards and alerts, and
`grpc_type` is one of `unary`, `server_stream`, `client_stream`, `bidi_stream`.

Calls of the daemon's own API service also count in `sheep_operations_total{op, result}`:
`op` is the method in snake_case (`CreateContainer` -> `create_container`), `result` is
`ok` or `error`. A server stream that the client ends (CANCELLED) is `ok`: that is how a
watch ends. Labels are bounded: methods come from the registered services only (an
unknown method never reaches a handler, so it is not counted).

The status of a call is read from its context after the handler ends (`context.abort`
records it there before raising); an exception escaping the handler is `Unknown`, a
cancelled handler `Canceled`.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import Counter, Histogram

from sheep_runtime.metrics import LATENCY_BUCKETS, Metrics

API_SERVICE = "sheep.runtime.v1.RuntimeService"

# Canonical names of the status codes, as grpc-go's codes.Code.String() spells them.
CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
# The numeric values too: some grpc versions hand back the bare integer.
_CODE_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def snake_case(method: str) -> str:
    """`CreateContainer` -> `create_container`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", method).lower()


def split_method(full_method: str) -> tuple[str, str]:
    """`/pkg.Service/Method` -> (`pkg.Service`, `Method`)."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


# (request streaming, response streaming) -> grpc_type
_KINDS = {(False, False): "unary", (False, True): "server_stream",
          (True, False): "client_stream", (True, True): "bidi_stream"}


def rpc_type(handler: grpc.RpcMethodHandler) -> str:
    return _KINDS[(bool(handler.request_streaming), bool(handler.response_streaming))]


def status_of(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    """The code the call will end with, as recorded on its context (abort/set_code)."""
    try:
        code = context.code()
    except (AttributeError, NotImplementedError):
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return _CODE_BY_NUMBER.get(code, default)
    return default


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every call; register it with `grpc.aio.server(interceptors=...)`."""

    def __init__(self, metrics: Metrics, *, api_service: str = API_SERVICE) -> None:
        self.metrics = metrics
        self.api_service = api_service
        r = metrics.registry
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter("grpc_server_started", "RPCs started on the server.",
                               labels, registry=r)
        self.handled = Counter("grpc_server_handled",
                               "RPCs completed on the server, regardless of success or "
                               "failure.", [*labels, "grpc_code"], registry=r)
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Response latency (seconds) of gRPC that had been application-level handled "
            "by the server.", labels, buckets=LATENCY_BUCKETS, registry=r)

    def initialize(self, *services: ServiceDescriptor) -> None:
        """Export zeros for every method of `services` before its first call (the
        grpc-ecosystem's InitializeMetrics), so rates and ratios have series from the
        start; the API service's operations get their ok and error series too."""
        for svc in services:
            for m in svc.methods:
                kind = _KINDS[(m.client_streaming, m.server_streaming)]
                self.started.labels(kind, svc.full_name, m.name)
                self.handled.labels(kind, svc.full_name, m.name, "OK")
                self.handling_seconds.labels(kind, svc.full_name, m.name)
                if svc.full_name == self.api_service:
                    for result in ("ok", "error"):
                        self.metrics.operations.labels(snake_case(m.name), result)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, method = split_method(handler_call_details.method)
        return self._wrap(handler, _Call(self, rpc_type(handler), service, method))

    def _wrap(self, handler: grpc.RpcMethodHandler, call: _Call) -> grpc.RpcMethodHandler:
        kw = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, call), **kw)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, call), **kw)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, call), **kw)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, call), **kw)
        return handler


class _Call:
    """The label values of one method, and what to do when one of its calls ends."""

    def __init__(self, owner: MetricsInterceptor, kind: str, service: str,
                 method: str) -> None:
        self.owner = owner
        self.kind = kind
        self.service = service
        self.method = method

    def start(self) -> float:
        self.owner.started.labels(self.kind, self.service, self.method).inc()
        return time.perf_counter()

    def finish(self, t0: float, code: grpc.StatusCode) -> None:
        o = self.owner
        o.handling_seconds.labels(self.kind, self.service, self.method).observe(
            time.perf_counter() - t0)
        o.handled.labels(self.kind, self.service, self.method,
                         CODE_NAMES.get(code, "Unknown")).inc()
        if self.service == o.api_service:
            ok = code == grpc.StatusCode.OK or (
                code == grpc.StatusCode.CANCELLED and self.kind.endswith("stream"))
            o.metrics.operations.labels(snake_case(self.method),
                                         "ok" if ok else "error").inc()


def _code_after(exc: BaseException | None, context: grpc.aio.ServicerContext
                ) -> grpc.StatusCode:
    if exc is None:
        return status_of(context, grpc.StatusCode.OK)
    if isinstance(exc, grpc.aio.AbortError):
        return status_of(context, grpc.StatusCode.UNKNOWN)
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # The call was cancelled: by its deadline, or by the client going away.
        return (grpc.StatusCode.DEADLINE_EXCEEDED if _deadline_passed(context)
                else grpc.StatusCode.CANCELLED)
    return grpc.StatusCode.UNKNOWN


def _deadline_passed(context: grpc.aio.ServicerContext) -> bool:
    try:
        remaining = context.time_remaining()
    except (AttributeError, NotImplementedError):
        return False
    return remaining is not None and remaining <= 0


def _wrap_unary(behavior: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    if not inspect.iscoroutinefunction(behavior):
        return behavior  # a sync handler (thread pool): left as is, never used here

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        t0 = call.start()
        try:
            response = await behavior(request, context)
        except BaseException as e:
            call.finish(t0, _code_after(e, context))
            raise
        call.finish(t0, _code_after(None, context))
        return response

    return unary


def _wrap_stream(behavior: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def generator(request: Any, context: grpc.aio.ServicerContext
                            ) -> AsyncIterator[Any]:
            t0 = call.start()
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as e:
                # GeneratorExit: the server closed the stream (the client went away).
                call.finish(t0, _code_after(e, context))
                raise
            call.finish(t0, _code_after(None, context))

        return generator
    # A coroutine that writes with context.write() has the same shape as a unary one.
    return _wrap_unary(behavior, call)


def runtime_service_interceptor(metrics: Metrics) -> MetricsInterceptor:
    """A MetricsInterceptor with every RPC of RuntimeService exported at zero."""
    from sheep_runtime.api.v1 import runtime_pb2 as pb

    interceptor = MetricsInterceptor(metrics)
    interceptor.initialize(pb.DESCRIPTOR.services_by_name["RuntimeService"])
    return interceptor
