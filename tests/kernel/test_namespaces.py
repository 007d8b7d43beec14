"""Kernel tests of pinned network namespaces and of where threads (and so sockets)
live. Every netns is created by the test, under its own temporary directory.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sheep_runtime.netlink import (
    NamespaceError,
    PinnedNamespaces,
    create_pinned_netns,
    delete_pinned_netns,
    is_pinned_netns,
)
from sheep_runtime.netlink.workers import NetlinkWorkers
from tests.kernel.conftest import NlRun

pytestmark = pytest.mark.kernel


def _mounted_at(path: Path) -> bool:
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == str(path) for line in mountinfo)


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_pinned_netns_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "ns1"
    create_pinned_netns(path)
    try:
        assert is_pinned_netns(path)
        assert _mounted_at(path)
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
        with pytest.raises(NamespaceError) as info:
            create_pinned_netns(path)
        assert info.value.errno == errno.EEXIST
    finally:
        delete_pinned_netns(path)
    assert not path.exists()
    assert not _mounted_at(path)
    assert not is_pinned_netns(path)
    delete_pinned_netns(path)  # already gone is success

    missing = tmp_path / "no-such-dir" / "ns2"
    with pytest.raises(NamespaceError) as info:
        create_pinned_netns(missing)
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value.__cause__, OSError)
    assert not _mounted_at(missing)

    stale = tmp_path / "stale"  # e.g. left by a crash between create and mount
    stale.write_text("")
    assert not is_pinned_netns(stale)
    create_pinned_netns(stale)
    try:
        assert is_pinned_netns(stale)
    finally:
        delete_pinned_netns(stale)
    assert not stale.exists() and not _mounted_at(stale)

    other = tmp_path / "other-mount"  # some other file mounted there: not ours to stack on
    other.write_text("")
    subprocess.run(["mount", "--bind", "/dev/null", str(other)], check=True)
    try:
        with pytest.raises(NamespaceError) as info:
            create_pinned_netns(other)
        assert info.value.errno == errno.EEXIST
    finally:
        subprocess.run(["umount", str(other)], check=True)
    assert not _mounted_at(other)


def test_pinned_namespaces(nl_netns_dir: Path) -> None:
    spaces = PinnedNamespaces()
    path = nl_netns_dir / "c1"

    async def body() -> None:
        await spaces.create(path)
        assert spaces.exists(path) and _mounted_at(path)
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
        with pytest.raises(NamespaceError) as info:
            await spaces.create(path)
        assert info.value.errno == errno.EEXIST
        await spaces.delete(path)
        await spaces.delete(path)  # already gone is success
        assert not spaces.exists(path) and not path.exists() and not _mounted_at(path)

    asyncio.run(body())


def test_threads_inherit_the_netns_of_their_creator(nl_run: NlRun, nl_sandbox: Path) -> None:
    sandbox = os.stat(nl_sandbox).st_ino

    async def body() -> None:
        assert _netns_inode() == sandbox
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(_netns_inode()))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(2) as pool:
            seen.append(pool.submit(_netns_inode).result())
        seen.append(await asyncio.to_thread(_netns_inode))
        workers = NetlinkWorkers(size=2)
        workers.start()
        try:
            seen.append(await workers.run(lambda ipr: _netns_inode()))
        finally:
            await workers.close()
        assert seen == [sandbox] * 4

    nl_run(body)
    assert _netns_inode() != sandbox
