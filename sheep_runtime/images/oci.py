"""Reading an image source: an OCI image layout (a directory, or a tar of one, as
`skopeo copy ... oci:DIR`, `podman save --format oci-archive` and `buildah push ...
oci:` make) or a plain rootfs tarball (`docker export`), into its config and layers.

Every blob is checked against its digest, every layer against its diff_id while it
is unpacked (`HashingReader`); anything malformed is InvalidArgument.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from sheep_runtime.errors import InvalidArgument

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
MAX_JSON_BYTES = 4 << 20
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
GZIP_TYPES = ("application/vnd.oci.image.layer.v1.tar+gzip",
              "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
              "application/vnd.docker.image.rootfs.diff.tar.gzip")
PLAIN_TYPES = ("application/vnd.oci.image.layer.v1.tar",
               "application/vnd.oci.image.layer.nondistributable.v1.tar",
               "application/vnd.docker.image.rootfs.diff.tar")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


def invalid(why: str) -> InvalidArgument:
    return InvalidArgument(f"not an importable image: {why}", field="source",
                           reason="MALFORMED_ARCHIVE")


class HashingReader:
    """A file-like reader that hashes (sha256) and counts what passes through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> str:
        """Read to the end; the digest of everything read."""
        while self.read(1 << 20):
            pass
        return f"sha256:{self._hash.hexdigest()}"


@dataclass(frozen=True)
class ImageConfig:
    """What the image says about running it."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""


@dataclass(frozen=True)
class LayerBlob:
    """One layer to unpack: `diff_id` ("" if unknown: a rootfs tarball), the blob's
    own `digest` ("" if none to check), its compression ("gzip", "none" or "sniff")."""

    diff_id: str
    digest: str
    compression: str
    open: Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Source:
    """An image as read from its source: `id` is its config's digest ("" for a rootfs
    tarball: the store names it by its layer)."""

    id: str
    config: ImageConfig
    layers: tuple[LayerBlob, ...]


def _strings(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise invalid(f"config {what} is not a list of strings")
    return tuple(v)


def parse_config(raw: dict[str, Any]) -> tuple[ImageConfig, tuple[str, ...]]:
    """The run config and the diff_ids of an OCI image config."""
    c = raw.get("config") or {}
    rootfs = raw.get("rootfs") or {}
    if not isinstance(c, dict) or not isinstance(rootfs, dict):
        raise invalid("config is not an OCI image config")
    wd = c.get("WorkingDir") or ""
    if not isinstance(wd, str):
        raise invalid("config WorkingDir is not a string")
    diff_ids = _strings(rootfs.get("diff_ids"), "rootfs.diff_ids")
    if not all(DIGEST_RE.fullmatch(d) for d in diff_ids):
        raise invalid("config rootfs.diff_ids holds a digest that is not sha256")
    return ImageConfig(env=_strings(c.get("Env"), "Env"), cmd=_strings(c.get("Cmd"), "Cmd"),
                       entrypoint=_strings(c.get("Entrypoint"), "Entrypoint"),
                       working_dir=wd), diff_ids


class _Layout:
    """Blobs of an OCI layout, in a directory or a tar archive."""

    def __init__(self, read: Callable[[str], IO[bytes] | None]) -> None:
        self._read = read

    def open_file(self, name: str) -> IO[bytes]:
        f = self._read(name)
        if f is None:
            raise invalid(f"{name} is missing")
        return f

    def open_blob(self, digest: Any) -> IO[bytes]:
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            raise invalid(f"unsupported digest {str(digest)[:80]!r} (sha256 only)")
        return self.open_file(f"blobs/sha256/{digest[7:]}")

    def json_blob(self, digest: Any) -> dict[str, Any]:
        with self.open_blob(digest) as f:
            data = f.read(MAX_JSON_BYTES + 1)
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            raise invalid(f"blob {digest} does not match its digest")
        return _json(data, digest)

    def manifest(self) -> dict[str, Any]:
        with self.open_file("index.json") as f:
            index = _json(f.read(MAX_JSON_BYTES + 1), "index.json")
        for _ in range(4):  # an index may point at an index (multi-arch)
            desc = _pick(index)
            doc = self.json_blob(desc.get("digest", ""))
            if desc.get("mediaType") not in INDEX_TYPES and "manifests" not in doc:
                return doc
            index = doc
        raise invalid("index nesting too deep")


def _json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_JSON_BYTES:
        raise invalid(f"{what} is over {MAX_JSON_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise invalid(f"{what} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise invalid(f"{what} is not a JSON object")
    return doc


def _pick(index: dict[str, Any]) -> dict[str, Any]:
    """The manifest of an index: the only one, else the one for this machine."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise invalid("index lists no manifests")
    if len(manifests) == 1:
        chosen: Any = manifests[0]
    else:
        arch = _ARCH.get(platform.machine(), platform.machine())
        chosen = next((m for m in manifests if isinstance(m, dict)
                       and (m.get("platform") or {}).get("architecture") == arch
                       and (m.get("platform") or {}).get("os", "linux") == "linux"), None)
        if chosen is None:
            raise invalid(f"index has {len(manifests)} manifests, none for linux/{arch}")
    if not isinstance(chosen, dict):
        raise invalid("index entry is not an object")
    return chosen


def _read_layout(layout: _Layout) -> Source:
    manifest = layout.manifest()
    config_desc = manifest.get("config")
    layers = manifest.get("layers")
    if not isinstance(config_desc, dict) or not isinstance(layers, list):
        raise invalid("manifest has no config or layers")
    config, diff_ids = parse_config(layout.json_blob(config_desc.get("digest")))
    if len(diff_ids) != len(layers):
        raise invalid(f"manifest lists {len(layers)} layers, config {len(diff_ids)} diff_ids")
    blobs = []
    for desc, diff_id in zip(layers, diff_ids, strict=True):
        media = desc.get("mediaType", "") if isinstance(desc, dict) else ""
        if media not in GZIP_TYPES + PLAIN_TYPES:
            raise invalid(f"unsupported layer type {str(media)[:100]!r} (tar or tar+gzip)")
        digest = desc.get("digest")
        blobs.append(LayerBlob(diff_id=diff_id, digest=digest,
                               compression="gzip" if media in GZIP_TYPES else "none",
                               open=partial(layout.open_blob, digest)))
    return Source(id=str(config_desc.get("digest")), config=config, layers=tuple(blobs))


def _dir_reader(root: Path) -> Callable[[str], IO[bytes] | None]:
    def read(name: str) -> IO[bytes] | None:
        path = root / name
        return open(path, "rb") if path.is_file() else None
    return read


def _tar_reader(tar: tarfile.TarFile) -> Callable[[str], IO[bytes] | None] | None:
    members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isreg()}
    if "index.json" not in members:
        return None
    return lambda name: tar.extractfile(members[name]) if name in members else None


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[Source]:
    """The image at `path`: an OCI layout directory, an OCI archive, or a rootfs
    tarball (plain or compressed). The source stays readable inside the block."""
    if path.is_dir():
        if not (path / "index.json").is_file():
            raise invalid(f"directory {path} has no index.json (not an OCI layout)")
        yield _read_layout(_Layout(_dir_reader(path)))
        return
    if not path.is_file():
        raise InvalidArgument(f"no file or directory {path}", field="source",
                              reason="SOURCE_NOT_FOUND")
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError) as e:
        raise invalid(f"{path} is not a tar archive: {e}") from e
    with tar:
        try:
            reader = _tar_reader(tar)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise invalid(f"{path}: {e}") from e
        if reader is not None:
            yield _read_layout(_Layout(reader))
            return
    yield Source(id="", config=ImageConfig(), layers=(
        LayerBlob(diff_id="", digest="", compression="sniff",
                  open=lambda: open(path, "rb")),))  # noqa: SIM115 - caller closes
