"""Fixtures of the CNI tests: the plugin as `make install-cni` installs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DESTDIR of a `make install-cni`: opt/cni/bin/sheep, etc/cni/net.d/10-sheep.conflist."""
    dest = tmp_path_factory.mktemp("destdir")
    subprocess.run(["make", "-s", "-C", str(REPO), "install-cni", f"DESTDIR={dest}"],
                   check=True, capture_output=True, timeout=60)
    return dest


@pytest.fixture(scope="session")
def plugin(installed: Path) -> Path:
    """The installed plugin, /opt/cni/bin/sheep under DESTDIR."""
    return installed / "opt" / "cni" / "bin" / "sheep"
