"""Container roots: an overlay of the image's layers under the container's own upper
dir (whiteouts and opaque dirs honoured), or of a plain directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sheep_runtime.images import ImageStore
from tests.images.builders import layer, oci_layout
from tests.images.test_store import BASE, TOP

pytestmark = pytest.mark.kernel


async def test_overlay_honours_whiteouts_and_keeps_writes_apart(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    image = await store.import_image(
        "two", oci_layout(tmp_path / "layout", [layer(BASE), layer(TOP)]))
    a_dir, b_dir = tmp_path / "c" / "a", tmp_path / "c" / "b"
    a = await store.prepare_rootfs("a", container_dir=a_dir, image=image)
    try:
        b = await store.prepare_rootfs("b", container_dir=b_dir, image=image)
        try:
            assert sorted(os.listdir(a / "etc")) == ["b", "c"]  # a is whited out
            assert os.listdir(a / "d") == ["y"]  # opaque: x of the base is hidden
            (a / "etc/new").write_text("mine")
            (a / "etc/b").unlink()
            assert (a_dir / "upper/etc/new").read_text() == "mine"
            assert sorted(os.listdir(b / "etc")) == ["b", "c"]
        finally:
            await store.release_rootfs("b")
        layer_dirs = [tmp_path / "store/layers" / d[7:] for d in image.layers]
        assert not any((d / "etc/new").exists() for d in layer_dirs)
        assert (layer_dirs[0] / "etc/b").exists()
    finally:
        await store.release_rootfs("a")
    assert not os.path.ismount(a) and not (a_dir / "upper").exists()
    assert store.rootfs_owners() == []


async def test_directory_root_is_not_written(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/f").write_text("orig")
    store = ImageStore(tmp_path / "store")
    cdir = tmp_path / "c"
    root = await store.prepare_rootfs("c", container_dir=cdir, directory=tree)
    try:
        (root / "etc/f").write_text("changed")
        assert (tree / "etc/f").read_text() == "orig"
    finally:
        await store.release_rootfs("c")
    assert (tree / "etc/f").read_text() == "orig" and not os.path.ismount(root)
