"""sheepd's CNI endpoint: an asyncio Unix socket (mode 0600) on the daemon's loop.

One request per connection (the plugin's JSON, then EOF), one answer
(b"<exit status>\\n<stdout>"), then close. Operations on the same attachment key run
one at a time, and each runs to completion even if the plugin is killed mid-call (a
runtime timeout): it is a task of its own that the connection only waits for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from sheep_runtime.cni.codes import INTERNAL, failure_of
from sheep_runtime.cni.plugin import (
    DECODING_FAILURE,
    LATEST_VERSION,
    NOT_AVAILABLE,
    Failure,
    error_json,
)
from sheep_runtime.cni.queue import drain, locked_queue
from sheep_runtime.cni.request import CniCall, parse_call
from sheep_runtime.cni.results import add_result, check_against
from sheep_runtime.cni.service import CniOps
from sheep_runtime.errors import SheepError
from sheep_runtime.ops.cni import CniAdd, CniKey
from sheep_runtime.ops.locks import KeyedLocks

log = logging.getLogger(__name__)

READ_SECONDS = 10.0
MAX_REQUEST = 1 << 20
# Parallel ADDs from a runtime queue up in the backlog; a full backlog makes the
# plugin's connect fail, which must not look like a sheepd that is down.
BACKLOG = 1024


class CniServer:
    """Serves CNI requests onto `CniOps` (the daemon's `rt.cni`)."""

    def __init__(self, cni: CniOps) -> None:
        self._cni = cni
        self._locks = KeyedLocks()
        self._inflight: set[asyncio.Task[tuple[int, str]]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._socket: Path | None = None

    async def bind(self, socket: Path) -> None:
        """Listen on `socket` (0600) without serving yet: connections wait in the
        backlog until `start_serving`."""
        socket.parent.mkdir(parents=True, exist_ok=True)
        socket.unlink(missing_ok=True)  # sheepd holds the state lock: it is stale
        self._server = await asyncio.start_unix_server(
            self._handle, path=str(socket), backlog=BACKLOG, limit=MAX_REQUEST,
            start_serving=False)
        os.chmod(socket, 0o600)  # created under sheepd's umask 077: never wider
        self._socket = socket

    async def start_serving(self) -> None:
        assert self._server is not None
        await self._server.start_serving()
        log.info("serving CNI on unix:%s (mode 0600)", self._socket)

    async def close(self, grace: float) -> None:
        """Stop accepting, then give running operations up to `grace` seconds."""
        if self._server is not None:
            self._server.close()
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_SECONDS):
                data = await _read_all(reader)
        except (TimeoutError, OSError) as e:
            log.warning("dropping a CNI connection: %s", e or type(e).__name__)
            writer.close()
            return
        if len(data) > MAX_REQUEST:
            status, out = 1, error_json(LATEST_VERSION, (
                DECODING_FAILURE, f"request larger than {MAX_REQUEST} bytes", "INVALID_ARGUMENT"))
        else:
            task = asyncio.create_task(self._answer(data), name="cni-request")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            status, out = await asyncio.shield(task)
        try:
            writer.write(f"{status}\n{out}".encode())
            await writer.drain()
        except OSError:  # ConnectionError included: the runtime killed the plugin
            log.info("a CNI plugin left before its answer (the operation completed)")
        finally:
            writer.close()

    async def _answer(self, data: bytes) -> tuple[int, str]:
        """(exit status, stdout) for one request; never raises."""
        version = LATEST_VERSION
        started = time.monotonic()
        what = "request"
        try:
            call = parse_call(data)
            version, what = call.version, _describe(call)
            out = await self._run(call)
        except Failure as f:
            problem = f.problem
        except SheepError as e:
            problem = failure_of(e).problem
        except Exception:
            log.exception("CNI %s failed", what)
            problem = (INTERNAL, f"sheepd failed on the CNI {what}; see its log", "INTERNAL")
        else:
            log.info("CNI %s: ok (%.1f ms)", what, (time.monotonic() - started) * 1e3)
            return 0, out
        log.info("CNI %s: code %d, %s (%.1f ms)", what, problem[0], problem[1],
                 (time.monotonic() - started) * 1e3)
        return 1, error_json(version, problem)

    async def _run(self, call: CniCall) -> str:
        if call.command == "STATUS":
            if not self._cni.ready():
                raise Failure(NOT_AVAILABLE, "sheepd is not ready to serve ADD yet",
                              "UNAVAILABLE")
            return ""
        if call.command == "GC":
            removed = await self._cni.gc(call.network, set(call.valid))
            log.info("CNI GC of %s removed %d attachments", call.network, len(removed))
            return ""
        assert call.key is not None
        async with self._locks.hold(f"{call.key.container_id}\0{call.key.ifname}"):
            return await self._run_keyed(call, call.key)

    async def _run_keyed(self, call: CniCall, key: CniKey) -> str:
        if call.command == "ADD":
            r = await self._cni.add(CniAdd(key=key, netns=call.netns, network=call.network,
                                           ports=call.ports))
            result = add_result(r, version=call.version, prev=call.prev_result)
            return json.dumps(result, separators=(",", ":"))
        if call.command == "DEL":
            await self._cni.delete(key)
            return ""
        r = await self._cni.check(key)  # CHECK: the command set is closed in parse_call
        check_against(r, netns=call.netns, prev=call.prev_result)
        return ""


def _describe(call: CniCall) -> str:
    if call.key is None:
        return f"{call.command} on {call.network}"
    return f"{call.command} {call.key.container_id[:12]}/{call.key.ifname} on {call.network}"


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """The request up to EOF; past MAX_REQUEST + 1 bytes the rest is read and dropped,
    so that the client, still sending, gets its answer rather than EPIPE."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        if size <= MAX_REQUEST:
            chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def start_cni_server(cni: CniOps, *, socket: Path, state_dir: Path) -> CniServer:
    """Bind the CNI socket, run the DELs queued while sheepd was down, then serve.
    Call it before the gRPC API serves, so no request overtakes a queued DEL."""
    server = CniServer(cni)
    async with locked_queue(state_dir) as qdir:
        await server.bind(socket)
        drained = await drain(cni, qdir)
    if drained:
        log.info("ran %d CNI DELs queued while sheepd was down", drained)
    await server.start_serving()
    return server
