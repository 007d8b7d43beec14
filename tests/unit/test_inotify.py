"""DirWatch: woken by files written or renamed into its dir, by nothing once closed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sheep_runtime.process.inotify import DirWatch

WOKEN_WITHIN = 2.0


async def _woken(watch: DirWatch) -> bool:
    try:
        await asyncio.wait_for(watch.changed.wait(), WOKEN_WITHIN)
    except TimeoutError:
        return False
    return True


async def test_a_rename_into_the_dir_wakes_only_its_watch(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    with DirWatch(a) as watch_a, DirWatch(b) as watch_b:
        (tmp_path / "tmp").write_text("123\n")
        os.rename(tmp_path / "tmp", a / "init.pid")  # as runc writes its pid file
        assert await _woken(watch_a)
        assert not watch_b.changed.is_set()


async def test_a_file_written_and_closed_wakes_it(tmp_path: Path) -> None:
    with DirWatch(tmp_path) as watch:
        (tmp_path / "exit").write_text("0 1\n")
        assert await _woken(watch)


async def test_a_closed_watch_is_not_woken(tmp_path: Path) -> None:
    watch = DirWatch(tmp_path)
    watch.close()
    with DirWatch(tmp_path / ".." / tmp_path.name) as again:  # same dir: same wd
        (tmp_path / "exit").write_text("0 1\n")
        assert await _woken(again)
    assert not watch.changed.is_set()
