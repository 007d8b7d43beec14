"""Fixtures of the client tests: a SheepClient on the sandbox daemon's socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sheep_client import SheepClient

from tests.sandbox import Sandbox


@pytest.fixture
def client(box: Sandbox) -> Iterator[SheepClient]:
    """A blocking client connected to the sandbox sheepd over its Unix socket."""
    with SheepClient(socket=str(box.socket), timeout=30) as c:
        yield c
