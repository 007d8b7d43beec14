"""Kernel-test fixtures of the netlink backend (all named `nl_*`).

Network safety: nothing here touches the machine's root netns. Each test gets a
throwaway sandbox netns and runs its async body in a thread that joined it, so the
code under test (which binds "its own" netns) lives entirely inside the sandbox.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sheep_runtime.netlink import (
    create_pinned_netns,
    delete_pinned_netns,
    is_pinned_netns,
    run_in_netns,
)

T = TypeVar("T")
NlRun = Callable[[Callable[[], Awaitable[Any]]], Any]


@pytest.fixture
def nl_netns_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for pinned netns; every netns left in it is removed at teardown."""
    directory = tmp_path / "netns"
    directory.mkdir()
    yield directory
    for path in directory.iterdir():
        if is_pinned_netns(path) or path.is_file():
            delete_pinned_netns(path)


@pytest.fixture
def nl_sandbox(nl_netns_dir: Path) -> Path:
    """The pinned path of a fresh sandbox netns standing in for the host."""
    path = nl_netns_dir / "sandbox"
    create_pinned_netns(path)
    return path


@pytest.fixture
def nl_run(nl_sandbox: Path) -> NlRun:
    """`nl_run(async_fn)`: run `async_fn()` on a new event loop inside the sandbox."""
    root_netns = os.stat("/proc/self/ns/net").st_ino  # the main thread's netns

    def in_sandbox(fn: Callable[[], Awaitable[T]]) -> T:
        def body() -> T:
            current = os.stat("/proc/thread-self/ns/net").st_ino
            assert current != root_netns, "refusing to run outside the sandbox netns"
            assert current == os.stat(nl_sandbox).st_ino

            async def main() -> T:
                return await fn()

            return asyncio.run(main())

        return run_in_netns(nl_sandbox, body)

    return in_sandbox


class Heartbeat:
    """Ticks every millisecond on the running loop while in use, so a test can see
    whether the loop stalled (`gaps`)."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _beat(self) -> None:
        while not self._stop.is_set():
            self.ticks.append(time.perf_counter())
            await asyncio.sleep(0.001)

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.ticks)]
