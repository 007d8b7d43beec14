"""The image store: OCI images and rootfs tarballs unpacked into shared layers, and
each container's root as an overlay of them."""

from sheep_runtime.images.store import ImageStore, validate_image_name

__all__ = ["ImageStore", "validate_image_name"]
