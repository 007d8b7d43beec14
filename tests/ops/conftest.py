"""The fast tier: the real ops layer and gRPC API over the in-memory fakes and a real
SQLite store in a temp dir. Needs no privilege, sends no packet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.ops.daemon import Daemon, running_daemon


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A started daemon over a fresh machine."""
    async with running_daemon(tmp_path / "state") as d:
        yield d
