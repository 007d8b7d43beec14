"""The store's reads of containers: an unchanged row is decoded once, and every read
still shows what the database holds, whoever changed it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from sheep_runtime.model import Container, ContainerState
from sheep_runtime.store.sqlite import Store


def record(name: str) -> Container:
    return Container(id=name * 64, name=name, command=("/bin/sleep", "3600"),
                     env={"MODE": "demo"}, hostname=name, network_mode="none",
                     state=ContainerState.CREATED, created_at=1.0, netns_path="")


def test_an_unchanged_row_is_decoded_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.add_container(record("a"))
    first = store.container("a" * 64)
    assert first is not None
    assert store.container("a" * 64) is first
    assert store.find_containers("a") == [first] and store.find_containers("a")[0] is first
    assert store.containers()[0] is first


def test_every_read_shows_the_row_as_it_now_is(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.add_container(record("a"))
    before = store.container("a" * 64)
    assert before is not None
    store.update_container(replace(before, state=ContainerState.RUNNING, pid=42))
    after = store.container("a" * 64)
    assert after is not None and (after.state, after.pid) == (ContainerState.RUNNING, 42)
    store.mark_removing("a" * 64)
    assert store.container("a" * 64).removing  # type: ignore[union-attr]
    # changed behind the store's back (another connection): seen too
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE containers SET hostname='elsewhere'")
    assert store.container("a" * 64).hostname == "elsewhere"  # type: ignore[union-attr]
    store.remove_container("a" * 64)
    assert store.container("a" * 64) is None and store.containers() == []


def test_a_row_that_turns_unreadable_is_skipped_not_served_from_memory(tmp_path: Path
                                                                       ) -> None:
    store = Store(tmp_path / "state.db")
    store.add_container(record("a"))
    assert store.container("a" * 64) is not None
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE containers SET command='not json'")
    assert store.container("a" * 64) is None
    assert ("containers", "a" * 64) in store.unreadable
