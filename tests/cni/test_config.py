"""`--cni-socket`: where sheepd serves the plugin, or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from sheep_runtime.config import parse_args


def test_the_cni_socket_defaults_to_the_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHEEP_CNI_SOCKET", raising=False)
    assert parse_args(["--run-dir", "/r"]).cni_socket == Path("/r/cni.sock")
    assert parse_args(["--cni-socket", "/x/c.sock"]).cni_socket == Path("/x/c.sock")


def test_an_empty_cni_socket_disables_cni(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHEEP_CNI_SOCKET", raising=False)
    assert parse_args(["--cni-socket", ""]).cni_socket is None
    monkeypatch.setenv("SHEEP_CNI_SOCKET", "")
    assert parse_args([]).cni_socket is None
    monkeypatch.setenv("SHEEP_CNI_SOCKET", "/e/cni.sock")
    assert parse_args([]).cni_socket == Path("/e/cni.sock")
