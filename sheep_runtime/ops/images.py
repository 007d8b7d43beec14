"""Images: import, list and remove, with their events. Container roots made from them
are prepared and released by `ContainerService`."""

from __future__ import annotations

from pathlib import Path

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.model import Image
from sheep_runtime.ops.backends import Images
from sheep_runtime.ops.events import EventBus


class ImageService:
    """The image store behind the API."""

    def __init__(self, *, images: Images, events: EventBus) -> None:
        self._images = images
        self._events = events

    async def import_image(self, name: str, source: str, *, trusted: bool = False) -> Image:
        """Import the image at `source` (an absolute path on this host) as `name`."""
        if not source.startswith("/") or "\0" in source:
            raise InvalidArgument(f"source {source[:200]!r} is not an absolute path",
                                  field="source")
        image = await self._images.import_image(name, Path(source), trusted=trusted)
        self._events.publish("image.imported", attributes={"name": image.name,
                                                           "id": image.id})
        return image

    def list(self) -> list[Image]:
        """Every image, by name."""
        return self._images.list_images()

    async def remove(self, ref: str) -> Image:
        """Remove an image no container's root is made from."""
        if not ref:
            raise InvalidArgument("an image name or id is required", field="id")
        image = await self._images.remove_image(ref)
        self._events.publish("image.removed", attributes={"name": image.name,
                                                          "id": image.id})
        return image
