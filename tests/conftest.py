"""Shared fixtures. Kernel tests need root; in CI they must run, never skip."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.sandbox import Sandbox, sandbox


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("kernel tests need root and must run in CI")
    skip = pytest.mark.skip(reason="kernel tests need root")
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def box(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox netns with a running sheepd; its log is printed if the test fails."""
    with sandbox(tmp_path) as b:
        b.start()
        yield b
        if request.node.stash.get(FAILED, False):
            print("---- sheepd log ----\n" + b.log()[-20000:])


# What podman makes outside its --root/--runroot whatever its config says: the blob
# info cache and the network state dir.
PODMAN_STRAYS = (Path("/var/lib/containers/cache"), Path("/run/containers/networks"))


@pytest.fixture
def podman_strays() -> Iterator[None]:
    """Remove the dirs podman makes outside its own, if the test made them."""
    new = [d for d in PODMAN_STRAYS if not d.exists()]
    yield
    for d in new:
        shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):  # its parent, if that is empty now
            d.parent.rmdir()
