"""The image store: imports of OCI layouts, OCI archives and rootfs tarballs, layer
sharing and removal, and refusal of unsafe or malformed archives.

Needs root (layers keep their owners; whiteouts and the opaque xattr are made as the
daemon makes them), hence the kernel mark.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from pathlib import Path

import pytest

from sheep_runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from sheep_runtime.images import ImageStore
from sheep_runtime.images.extract import OPAQUE_XATTR
from tests.images.builders import Entry, layer, oci_archive, oci_layout, rootfs_tarball

pytestmark = pytest.mark.kernel

D, L, S, C = tarfile.DIRTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE
BASE = [Entry("etc", D), Entry("etc/a", data=b"a\n"), Entry("etc/b", data=b"b\n"),
        Entry("d", D), Entry("d/x", data=b"x\n"), Entry("bin", D),
        Entry("bin/tool", data=b"#!/bin/sh\n", mode=0o755),
        Entry("bin/alias", L, link="bin/tool"), Entry("bin/sh", S, link="tool")]
TOP = [Entry("etc", D), Entry("etc/.wh.a"), Entry("d", D), Entry("d/.wh..wh..opq"),
       Entry("d/y", data=b"y\n"), Entry("etc/c", data=b"c\n")]
CONFIG = {"Env": ["PATH=/bin", "GREETING=hello"], "Cmd": ["-c", "echo hi"],
          "Entrypoint": ["/bin/sh"], "WorkingDir": "/d"}


def layers_of(store_root: Path) -> set[str]:
    return {p.name for p in (store_root / "layers").iterdir()}


def assert_clean(store_root: Path) -> None:
    assert list((store_root / "tmp").iterdir()) == []
    assert layers_of(store_root) == set()


async def test_oci_layout_imports_with_whiteouts_and_config(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    src = oci_layout(tmp_path / "layout", [layer(BASE), layer(TOP)], config=CONFIG)
    image = await store.import_image("two:latest", src)
    assert len(image.layers) == 2 and image.id.startswith("sha256:")
    assert (image.env, image.cmd, image.entrypoint, image.working_dir) == (
        ("PATH=/bin", "GREETING=hello"), ("-c", "echo hi"), ("/bin/sh",), "/d")
    base, top = (tmp_path / "store" / "layers" / d[7:] for d in image.layers)
    assert (base / "etc/a").read_text() == "a\n"
    assert os.stat(base / "bin/alias").st_ino == os.stat(base / "bin/tool").st_ino
    assert os.readlink(base / "bin/sh") == "tool"
    assert stat.S_IMODE(os.stat(base / "bin/tool").st_mode) == 0o755
    whiteout = os.lstat(top / "etc/a")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert os.getxattr(top / "d", OPAQUE_XATTR) == b"y"
    assert not (top / "d/.wh..wh..opq").exists() and (top / "d/y").read_text() == "y\n"
    assert store.list_images() == [image]
    assert store.resolve(image.id[7:19]) == image


async def test_archive_of_the_same_layout_shares_its_layers(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    layout = oci_layout(tmp_path / "layout", [layer(BASE), layer(TOP)], config=CONFIG)
    first = await store.import_image("dir", layout)
    second = await store.import_image("archive", oci_archive(layout, tmp_path / "img.tar"))
    assert second.id == first.id and second.layers == first.layers
    assert layers_of(tmp_path / "store") == {d[7:] for d in first.layers}
    await store.remove_image("dir")
    assert layers_of(tmp_path / "store") == {d[7:] for d in first.layers}  # still used
    await store.remove_image("archive")
    assert_clean(tmp_path / "store")
    with pytest.raises(NotFound):
        store.resolve("archive")


async def test_plain_rootfs_tarball_imports_as_one_layer(tmp_path: Path) -> None:
    tar = rootfs_tarball(tmp_path / "rootfs.tar", BASE)
    gz = tmp_path / "rootfs.tar.gz"
    gz.write_bytes(gzip.compress(tar.read_bytes()))
    store = ImageStore(tmp_path / "store")
    image = await store.import_image("plain", gz)
    assert len(image.layers) == 1 and image.cmd == () and image.env == ()
    (lay,) = layers_of(tmp_path / "store")
    assert (tmp_path / "store/layers" / lay / "etc/b").read_text() == "b\n"
    # The index survives a restart of the store.
    assert ImageStore(tmp_path / "store").list_images() == [image]


async def test_reimport_under_a_name_replaces_it(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    await store.import_image("x", rootfs_tarball(tmp_path / "a.tar", BASE))
    image = await store.import_image("x", rootfs_tarball(tmp_path / "b.tar", TOP[:1]))
    assert store.list_images() == [image]
    assert layers_of(tmp_path / "store") == {image.layers[0][7:]}


MALICIOUS = {
    "traversal": [Entry("../../escaped", data=b"!")],
    "absolute path": [Entry("/tmp/escaped", data=b"!")],
    "write through an absolute symlink": [Entry("evil", S, link="{outside}"),
                                          Entry("evil/escaped", data=b"!")],
    "relative symlink out": [Entry("a", D), Entry("a/up", S, link="../../..")],
    "hard link out": [Entry("escaped", L, link="../../../../etc/passwd")],
    "hard link to an absolute path": [Entry("escaped", L, link="/etc/passwd")],
    "device node": [Entry("dev", D), Entry("dev/mem", C, devmajor=1, devminor=1)],
    "setuid": [Entry("su", data=b"x", mode=0o4755)],
    "setgid": [Entry("sg", data=b"x", mode=0o2755)],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
@pytest.mark.parametrize("packaging", ["tarball", "oci"])
async def test_malicious_archives_are_refused_and_leave_nothing(
        tmp_path: Path, case: str, packaging: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    entries = [Entry("ok", data=b"fine"),
               *(Entry(e.name, e.kind, e.data, e.link.replace("{outside}", str(outside)),
                       e.mode, e.devmajor, e.devminor) for e in MALICIOUS[case])]
    data = layer(entries)
    src = (rootfs_tarball(tmp_path / "evil.tar", entries) if packaging == "tarball"
           else oci_layout(tmp_path / "layout", [data]))
    store_root = tmp_path / "deep" / "er" / "store"
    store = ImageStore(store_root)
    with pytest.raises(InvalidArgument) as err:
        await store.import_image("evil", src)
    assert err.value.field == "source"
    assert_clean(store_root)
    assert store.list_images() == []
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "deep" / "escaped").exists()
    assert not Path("/tmp/escaped").exists()


async def test_trusted_import_keeps_devices_and_setuid(tmp_path: Path) -> None:
    entries = [Entry("dev", D), Entry("dev/null", C, mode=0o666, devmajor=1, devminor=3),
               Entry("su", data=b"x", mode=0o4755)]
    store = ImageStore(tmp_path / "store")
    image = await store.import_image("t", rootfs_tarball(tmp_path / "t.tar", entries),
                                     trusted=True)
    root = tmp_path / "store/layers" / image.layers[0][7:]
    assert os.lstat(root / "dev/null").st_rdev == os.makedev(1, 3)
    assert os.stat(root / "su").st_mode & stat.S_ISUID


@pytest.mark.parametrize("corruption", ["truncated gzip", "digest mismatch", "not a tar",
                                        "no index"])
async def test_malformed_sources_are_invalid_argument(tmp_path: Path, corruption: str
                                                      ) -> None:
    layout = oci_layout(tmp_path / "layout", [layer(BASE)])
    blobs = sorted((layout / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    src: Path = layout
    if corruption == "truncated gzip":
        big = blobs[-1]
        big.write_bytes(big.read_bytes()[:200])
    elif corruption == "digest mismatch":
        big = blobs[-1]
        big.write_bytes(gzip.compress(layer(TOP)))
    elif corruption == "not a tar":
        src = tmp_path / "junk"
        src.write_bytes(b"\x00junk" * 1000)
    else:
        (layout / "index.json").unlink()
    store = ImageStore(tmp_path / "store")
    with pytest.raises(InvalidArgument):
        await store.import_image("bad", src)
    assert_clean(tmp_path / "store")


async def test_image_in_use_cannot_be_removed(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    image = await store.import_image("base", rootfs_tarball(tmp_path / "r.tar", BASE))
    cdir = tmp_path / "containers" / "c1"
    root = await store.prepare_rootfs("c1", container_dir=cdir, image=image)
    try:
        assert (root / "etc/a").read_text() == "a\n"
        with pytest.raises(FailedPrecondition):
            await store.remove_image("base")
        assert store.rootfs_owners() == ["c1"]
    finally:
        await store.release_rootfs("c1")
    assert not (cdir / "upper").exists() and not os.path.ismount(root)
    await store.remove_image("base")
    assert_clean(tmp_path / "store")
