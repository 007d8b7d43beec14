"""Overlay mounts through mount(2) (ctypes): no `mount` process per container, and the
daemon never forks."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from pathlib import Path

from sheep_runtime.errors import InvalidArgument, KernelError

MNT_DETACH = 2
# The legacy mount data is one page; an image with very many layers does not fit.
MAX_DATA = 4095
SOURCE = b"sheep"  # how our overlays show in /proc/self/mountinfo
_UNSAFE = frozenset(",:\\")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


def _option_path(p: Path) -> str:
    s = str(p.absolute())
    if _UNSAFE & set(s):
        raise InvalidArgument(f"path {s!r} cannot be an overlay layer: it contains ',', "
                              "':' or '\\'", field="rootfs")
    return s


def mount_overlay(target: Path, *, lower: Sequence[Path], upper: Path, work: Path) -> None:
    """Mount an overlay at `target`: `lower` top first, writes to `upper`."""
    data = (f"lowerdir={':'.join(_option_path(p) for p in lower)},"
            f"upperdir={_option_path(upper)},workdir={_option_path(work)}")
    if len(data) > MAX_DATA:
        raise KernelError(f"overlay of {len(lower)} layers: mount options of {len(data)} "
                          f"bytes are over the kernel's {MAX_DATA}")
    if _libc.mount(SOURCE, os.fsencode(target), b"overlay", 0, data.encode()) != 0:
        e = ctypes.get_errno()
        raise KernelError(f"mount overlay at {target}: {os.strerror(e)}")


def unmount(target: Path) -> None:
    """Unmount `target`; not mounted is success. Busy: detach it lazily (the kernel
    frees it when its last user goes)."""
    path = os.fsencode(target)
    if _libc.umount2(path, 0) == 0:
        return
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOENT):
        return
    if e == errno.EBUSY and _libc.umount2(path, MNT_DETACH) == 0:
        return
    raise KernelError(f"unmount {target}: {os.strerror(ctypes.get_errno() or e)}")
