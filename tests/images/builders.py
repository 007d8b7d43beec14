"""Image sources made by the tests: layer tarballs, OCI layouts (directory and
archive) and a busybox rootfs, all built with tarfile."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "sleep", "cat", "ls", "echo", "hostname", "touch", "test", "mkdir")


@dataclass(frozen=True)
class Entry:
    """One tar member: a file (`data`), dir, symlink or hard link (`link`), device."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    devmajor: int = 0
    devminor: int = 0


def layer(entries: Sequence[Entry]) -> bytes:
    """An uncompressed layer tarball of `entries`, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.linkname = e.kind, e.mode, e.link
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.mtime = 1700000000
            if e.kind == tarfile.DIRTYPE and e.mode == 0o644:
                info.mode = 0o755
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e.data) if info.size else None)
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _blob(root: Path, data: bytes) -> str:
    d = _digest(data)
    path = root / "blobs" / "sha256" / d[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return d


def oci_layout(root: Path, layers: Sequence[bytes], *, config: Mapping[str, object] | None = None,
               gzip_layers: bool = True) -> Path:
    """Write an OCI image layout at `root` (as `skopeo copy ... oci:root` would)."""
    root.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descs = []
    for data in layers:
        blob = gzip.compress(data, mtime=0) if gzip_layers else data
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        descs.append({"mediaType": media, "digest": _blob(root, blob), "size": len(blob)})
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": dict(config or {}),
                      "rootfs": {"type": "layers",
                                 "diff_ids": [_digest(d) for d in layers]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _blob(root, cfg), "size": len(cfg)},
        "layers": descs}).encode()
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": _blob(root, manifest), "size": len(manifest)}]}
    (root / "index.json").write_text(json.dumps(index))
    return root


def oci_archive(layout: Path, dest: Path) -> Path:
    """A tar of an OCI layout (what `podman save --format oci-archive` writes)."""
    with tarfile.open(dest, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    return dest


def rootfs_tarball(dest: Path, entries: Sequence[Entry]) -> Path:
    """A plain rootfs tarball (`docker export` format)."""
    dest.write_bytes(layer(entries))
    return dest


def busybox_entries() -> list[Entry]:
    """A minimal rootfs: Debian's busybox-static at /bin/busybox and applet links."""
    if shutil.which("busybox") is None or not BUSYBOX.is_file():
        raise RuntimeError("tests need busybox-static (apt-get install busybox-static)")
    entries = [Entry("bin", tarfile.DIRTYPE), Entry("etc", tarfile.DIRTYPE),
               Entry("tmp", tarfile.DIRTYPE, mode=0o1777),
               Entry("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755)]
    entries += [Entry(f"bin/{a}", tarfile.SYMTYPE, link="busybox") for a in BUSYBOX_APPLETS]
    entries.append(Entry("etc/image-release", data=b"sheep test image\n"))
    return entries
