"""`Images`: an image store in memory; a container root is a plain directory."""

from __future__ import annotations

import errno
from pathlib import Path

from sheep_runtime.errors import FailedPrecondition, NotFound
from sheep_runtime.model import Image
from tests.fakes.calls import CallLog
from tests.fakes.errors import FakeKernelError


def _injected(message: str) -> FakeKernelError:
    return FakeKernelError(message, errno=errno.EIO)


class FakeImages:
    """Images a test adds with `add`; roots by container id."""

    def __init__(self, calls: CallLog) -> None:
        self._calls = calls
        self.images: dict[str, Image] = {}
        self.roots: dict[str, Path] = {}  # container id -> its root
        self.users: dict[str, str] = {}  # container id -> its image ("" for a directory)

    def add(self, image: Image) -> Image:
        self.images[image.name] = image
        return image

    async def import_image(self, name: str, source: Path, *, trusted: bool = False
                           ) -> Image:
        self._calls.record("images.import_image", mutating=True, error=_injected)
        return self.add(Image(name=name, id=f"sha256:{name}", layers=(str(source),),
                              created_at=0.0, size=0))

    def list_images(self) -> list[Image]:
        return sorted(self.images.values(), key=lambda i: i.name)

    def resolve(self, ref: str) -> Image:
        self._calls.record("images.resolve", mutating=False)
        if ref not in self.images:
            raise NotFound(f"no image {ref!r}", reason="IMAGE_NOT_FOUND",
                           resource_type="image", resource_name=ref)
        return self.images[ref]

    async def remove_image(self, ref: str) -> Image:
        self._calls.record("images.remove_image", mutating=True, error=_injected)
        image = self.resolve(ref)
        if image.name in self.users.values():
            raise FailedPrecondition(f"image {image.name} is in use", reason="IMAGE_IN_USE")
        return self.images.pop(image.name)

    async def prepare_rootfs(self, container_id: str, *, container_dir: Path,
                             image: Image | None = None, directory: Path | None = None
                             ) -> Path:
        self._calls.record("images.prepare_rootfs", mutating=True, error=_injected)
        root = container_dir / "rootfs"
        root.mkdir(parents=True, exist_ok=True)
        self.roots[container_id] = root
        self.users[container_id] = image.name if image else ""
        return root

    async def release_rootfs(self, container_id: str) -> None:
        if container_id not in self.roots:
            return  # no call logged: containers without a root see no extra step
        self._calls.record("images.release_rootfs", mutating=True, error=_injected)
        del self.roots[container_id], self.users[container_id]

    def rootfs_owners(self) -> list[str]:
        return list(self.roots)
