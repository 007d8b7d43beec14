"""Wake-ups when files appear in a directory (inotify(7), through libc: the stdlib has
no binding and the three calls do not justify a dependency).

One inotify instance serves every watch of an event loop: closing an instance waits
for an SRCU grace period in the kernel (~10-30 ms, which would stall the loop), while
removing one watch from it does not wait."""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
from pathlib import Path
from typing import ClassVar

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then name
_libc = ctypes.CDLL(None, use_errno=True)


class DirWatch:
    """Sets `changed` whenever a file in `path` is written and closed, or renamed into
    it (how runc writes its pid file and the shim its exit record). Carries no names:
    the waiter looks again at what it waits for. A context manager; close() ends it."""

    def __init__(self, path: Path) -> None:
        self.changed = asyncio.Event()
        self._instance = _Instance.of_running_loop()
        self._wd = self._instance.add(path, self.changed)

    def close(self) -> None:
        if self._wd >= 0:
            self._instance.remove(self._wd, self.changed)
            self._wd = -1

    def __enter__(self) -> DirWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Instance:
    """An inotify fd read on one loop, waking the events of its watches."""

    _by_loop: ClassVar[dict[int, _Instance]] = {}

    @classmethod
    def of_running_loop(cls) -> _Instance:
        loop = asyncio.get_running_loop()
        found = cls._by_loop.get(id(loop))
        if found is None or found.loop is not loop:
            for key, old in list(cls._by_loop.items()):  # loops of earlier runs (tests)
                if old.loop.is_closed():
                    os.close(old.fd)
                    del cls._by_loop[key]
            found = cls._by_loop[id(loop)] = cls(loop)
        return found

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise _error("inotify_init1")
        self._events: dict[int, list[asyncio.Event]] = {}
        loop.add_reader(self.fd, self._drain)

    def add(self, path: Path, event: asyncio.Event) -> int:
        wd = int(_libc.inotify_add_watch(self.fd, os.fsencode(path),
                                         IN_CLOSE_WRITE | IN_MOVED_TO))
        if wd < 0:
            raise _error(f"inotify_add_watch {path}")
        self._events.setdefault(wd, []).append(event)  # the same dir twice: the same wd
        return wd

    def remove(self, wd: int, event: asyncio.Event) -> None:
        events = self._events.get(wd, [])
        if event in events:
            events.remove(event)
        if not events:
            self._events.pop(wd, None)
            _libc.inotify_rm_watch(self.fd, wd)  # EINVAL if the dir is gone: nothing to do

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, _, _, name_len = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + name_len
                # wd -1: the queue overflowed and events were lost; wake every watch
                woken = self._events.get(wd, ()) if wd >= 0 else [
                    e for events in self._events.values() for e in events]
                for event in woken:
                    event.set()


def _error(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")
