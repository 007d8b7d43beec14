"""`ImageStore`: the `Images` backend. Images and the container roots made from them,
under one directory (STATE_DIR/images):

    index.json          images by name, and the container roots prepared (the latter
                        written before their overlay is mounted, so none is forgotten)
    layers/HEX          one unpacked layer, named by its diff_id, shared by images
    tmp/                imports in progress (emptied at start: a crash leaves nothing)

Layers no image and no container root uses any more are removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sheep_runtime.errors import FailedPrecondition, InvalidArgument, KernelError, NotFound
from sheep_runtime.images import overlay
from sheep_runtime.images.oci import LayerBlob, Source, open_source
from sheep_runtime.images.unpack import unpack_layer
from sheep_runtime.model import Image

IMAGE_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.:/-]{0,127}")


def validate_image_name(name: str) -> str:
    """`name` if it is a valid image name, else InvalidArgument."""
    if not IMAGE_NAME_RE.fullmatch(name):
        raise InvalidArgument(f"invalid image name {name[:80]!r}: use 1-128 characters "
                              "from [a-zA-Z0-9_.:/-], starting with a letter or digit",
                              field="name")
    return name


class ImageStore:
    """Images under `root`; their layers are unpacked once and shared."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._layers = root / "layers"
        self._tmp = root / "tmp"
        self._index_path = root / "index.json"
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()  # layers of imports in progress
        for d in (self._layers, self._tmp):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self._tmp.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        self._images, self._roots = self._load()

    # -- the index ------------------------------------------------------------------

    def _load(self) -> tuple[dict[str, Image], dict[str, dict[str, Any]]]:
        try:
            doc = json.loads(self._index_path.read_text())
        except FileNotFoundError:
            return {}, {}
        except ValueError as e:
            raise KernelError(f"image index {self._index_path} is unreadable: {e}") from e
        images = {n: _image(rec) for n, rec in doc.get("images", {}).items()}
        return images, dict(doc.get("roots", {}))

    def _save(self) -> None:
        doc = {"images": {n: asdict(i) for n, i in self._images.items()},
               "roots": self._roots}
        fd, tmp = tempfile.mkstemp(dir=self._root, prefix=".index-")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._index_path)

    def _layer_dir(self, diff_id: str) -> Path:
        return self._layers / diff_id.removeprefix("sha256:")

    def _collect_layers(self) -> None:
        """Remove layers nothing refers to (lock held)."""
        used = {d.removeprefix("sha256:") for d in self._pending}
        used.update(d.removeprefix("sha256:") for i in self._images.values() for d in i.layers)
        used.update(d.removeprefix("sha256:") for r in self._roots.values()
                    for d in r["layers"])
        for layer in self._layers.iterdir():
            if layer.name not in used:
                gone = Path(tempfile.mkdtemp(dir=self._tmp, prefix="gc-"))
                layer.rename(gone / "layer")
                shutil.rmtree(gone, ignore_errors=True)

    # -- images ---------------------------------------------------------------------

    async def import_image(self, name: str, source: Path, *, trusted: bool = False) -> Image:
        """Import the OCI layout, OCI archive or rootfs tarball at `source` as `name`
        (replacing an image of that name). InvalidArgument if it is malformed or unsafe
        (device nodes and setuid files only with `trusted`); nothing is left then."""
        validate_image_name(name)
        return await asyncio.to_thread(self._import, name, source, trusted=trusted)

    def _import(self, name: str, source: Path, *, trusted: bool) -> Image:
        with open_source(source) as src:
            known = [layer.diff_id for layer in src.layers if layer.diff_id]
            with self._lock:
                self._pending.update(known)
            held = list(known)
            try:
                diff_ids, size = [], 0
                for blob in src.layers:
                    diff_id, n = self._ensure_layer(blob, trusted=trusted, held=held)
                    diff_ids.append(diff_id)
                    size += n
                return self._record(name, src, tuple(diff_ids), size)
            finally:
                with self._lock:
                    self._pending.subtract(held)
                    self._pending += Counter()  # drop the zero counts

    def _ensure_layer(self, blob: LayerBlob, *, trusted: bool, held: list[str]
                      ) -> tuple[str, int]:
        """Unpack `blob` unless its layer is there; its diff_id and unpacked size."""
        if blob.diff_id and self._layer_dir(blob.diff_id).is_dir():
            return blob.diff_id, _du(self._layer_dir(blob.diff_id))
        work = Path(tempfile.mkdtemp(dir=self._tmp, prefix="layer-"))
        try:
            fs = work / "fs"
            fs.mkdir()
            diff_id = unpack_layer(blob, fs, trusted=trusted)
            with self._lock:
                if diff_id not in held:
                    self._pending[diff_id] += 1
                    held.append(diff_id)
                final = self._layer_dir(diff_id)
                if not final.exists():
                    fs.rename(final)
            return diff_id, _du(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _record(self, name: str, src: Source, diff_ids: tuple[str, ...], size: int) -> Image:
        c = src.config
        image = Image(name=name, id=src.id or diff_ids[0], layers=diff_ids,
                      created_at=time.time(), size=size, env=c.env, cmd=c.cmd,
                      entrypoint=c.entrypoint, working_dir=c.working_dir)
        with self._lock:
            self._images[name] = image
            self._save()
            self._collect_layers()
        return image

    def list_images(self) -> list[Image]:
        """Every image, by name."""
        with self._lock:
            return sorted(self._images.values(), key=lambda i: i.name)

    def resolve(self, ref: str) -> Image:
        """The image named `ref`, else the one whose id (with or without "sha256:")
        starts with `ref`; NotFound, or InvalidArgument if ambiguous."""
        with self._lock:
            return self._resolve(ref)

    def _resolve(self, ref: str) -> Image:
        if ref in self._images:
            return self._images[ref]
        prefix = ref if ref.startswith("sha256:") else f"sha256:{ref}"
        found = {i.id: i for i in self._images.values()
                 if len(ref) >= 4 and i.id.startswith(prefix)}
        if len(found) > 1:
            raise InvalidArgument(f"image id prefix {ref!r} is ambiguous", field="image")
        if not found:
            raise NotFound(f"no image {ref!r}", reason="IMAGE_NOT_FOUND",
                           resource_type="image", resource_name=ref)
        return next(iter(found.values()))

    async def remove_image(self, ref: str) -> Image:
        """Remove an image (its layers, unless shared); FailedPrecondition while a
        container's root is made from it."""
        return await asyncio.to_thread(self._remove, ref)

    def _remove(self, ref: str) -> Image:
        with self._lock:
            image = self._resolve(ref)
            users = sorted(cid[:12] for cid, r in self._roots.items()
                           if r["image"] == image.name)
            if users:
                raise FailedPrecondition(
                    f"image {image.name} is used by container(s) {', '.join(users)}: "
                    "remove them first", reason="IMAGE_IN_USE", resource_type="image",
                    resource_name=image.name)
            del self._images[image.name]
            self._save()
            self._collect_layers()
        return image

    # -- container roots ------------------------------------------------------------

    async def prepare_rootfs(self, container_id: str, *, container_dir: Path,
                             image: Image | None = None, directory: Path | None = None
                             ) -> Path:
        """Mount the container's root at `container_dir/rootfs`: an overlay of the
        image's layers (or of `directory`), read-only, under its own upper dir. A root
        still mounted (a container started again) is reused; one recorded but no longer
        mounted (after a reboot) is mounted again over the upper dir it kept."""
        return await asyncio.to_thread(self._prepare, container_id, container_dir,
                                       image, directory)

    def _prepare(self, cid: str, cdir: Path, image: Image | None,
                 directory: Path | None) -> Path:
        target = cdir / "rootfs"
        with self._lock:
            kept = cid in self._roots
            if kept and os.path.ismount(target):
                return target
            if image is not None:
                image = self._resolve(image.name)  # removed meanwhile: NotFound
                lower = [self._layer_dir(d) for d in reversed(image.layers)]
            elif directory is not None and directory.is_dir():
                lower = [directory]
            else:
                raise InvalidArgument(f"rootfs {directory} is not a directory",
                                      field="rootfs")
            self._roots[cid] = {"image": image.name if image else "", "dir": str(cdir),
                                "layers": list(image.layers) if image else []}
            self._save()
        upper, work = cdir / "upper", cdir / "work"
        try:
            for d in (target, upper, work):
                d.mkdir(parents=True, exist_ok=True)
            # The merged root takes the upper dir's owner and mode: make them the image's.
            top = os.stat(lower[0])
            os.chown(upper, top.st_uid, top.st_gid)
            os.chmod(upper, stat.S_IMODE(top.st_mode))
            overlay.mount_overlay(target, lower=lower, upper=upper, work=work)
        except BaseException:
            if not kept:  # a kept upper dir is the container's: it stays
                self._release(cid)
            raise
        return target

    async def release_rootfs(self, container_id: str) -> None:
        """Unmount the container's root and remove its upper layer; no root: no-op."""
        await asyncio.to_thread(self._release, container_id)

    def _release(self, cid: str) -> None:
        with self._lock:
            root = self._roots.get(cid)
        if root is None:
            return
        cdir = Path(root["dir"])
        overlay.unmount(cdir / "rootfs")
        for d in ("upper", "work"):
            shutil.rmtree(cdir / d, ignore_errors=True)
        with self._lock:
            self._roots.pop(cid, None)
            self._save()
            self._collect_layers()

    def rootfs_owners(self) -> list[str]:
        """The containers with a prepared root (for leak collection)."""
        with self._lock:
            return list(self._roots)


def _image(rec: dict[str, Any]) -> Image:
    return Image(name=rec["name"], id=rec["id"], layers=tuple(rec["layers"]),
                 created_at=rec["created_at"], size=rec["size"], env=tuple(rec["env"]),
                 cmd=tuple(rec["cmd"]), entrypoint=tuple(rec["entrypoint"]),
                 working_dir=rec["working_dir"])


def _du(path: Path) -> int:
    return sum(e.stat(follow_symlinks=False).st_size for e in _walk(path))


def _walk(path: Path) -> Iterable[os.DirEntry[str]]:
    with os.scandir(path) as it:
        for e in it:
            yield e
            if e.is_dir(follow_symlinks=False):
                yield from _walk(Path(e.path))
