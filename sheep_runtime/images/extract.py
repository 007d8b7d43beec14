"""Safe extraction of one layer tarball into an empty directory.

Nothing an archive says can reach outside `dest`: member names are relative with no
`..`, no member is written through a symlink, relative symlinks stay inside, hard
links point at regular files of the same layer. Absolute symlink targets are kept as
they are: they are resolved inside the container's root, and we never follow them.
Device nodes and setuid/setgid files are refused unless the import is trusted. OCI
whiteouts become overlayfs ones: `.wh.NAME` a 0:0 character device, `.wh..wh..opq`
the `trusted.overlay.opaque` xattr on its directory.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO

from sheep_runtime.errors import InvalidArgument

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_SPECIAL_SUID = stat.S_ISUID | stat.S_ISGID


def _refuse(member: tarfile.TarInfo, why: str) -> InvalidArgument:
    return InvalidArgument(f"unsafe layer member {member.name[:200]!r}: {why}",
                           field="source", reason="UNSAFE_ARCHIVE")


def _parts(name: str, member: tarfile.TarInfo) -> tuple[str, ...]:
    if name.startswith("/"):
        raise _refuse(member, "absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _refuse(member, "path with '..'")
    return parts


def _parent(dest: Path, parts: tuple[str, ...], member: tarfile.TarInfo) -> Path:
    """The directory for `parts[-1]`, made if missing; refused if any component on the
    way is a symlink or not a directory."""
    d = dest
    for p in parts[:-1]:
        d = d / p
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            os.mkdir(d)
            os.chmod(d, 0o755)  # not the daemon's umask
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(member, f"path goes through the symlink {p!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(member, f"path goes through the non-directory {p!r}")
    return d


def _clear(target: Path, *, keep_dir: bool) -> None:
    """Remove what a later member with the same name replaces."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(target)
    else:
        os.unlink(target)


def _check_link_target(member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
    target = member.linkname
    if not target:
        raise _refuse(member, "symlink without a target")
    if target.startswith("/"):
        return
    resolved = posixpath.normpath("/".join((*parts[:-1], target)))
    if resolved == ".." or resolved.startswith("../"):
        raise _refuse(member, f"symlink points outside the layer ({target[:200]!r})")


def _hardlink(dest: Path, member: tarfile.TarInfo, target: Path) -> None:
    src_parts = _parts(member.linkname, member)
    if not src_parts:
        raise _refuse(member, "hard link to the layer root")
    src = _parent(dest, src_parts, member) / src_parts[-1]
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        raise _refuse(member, "hard link to a file not in this layer") from None
    if not stat.S_ISREG(st.st_mode) or src == target:
        raise _refuse(member, "hard link to something not a regular file")
    _clear(target, keep_dir=False)
    os.link(src, target, follow_symlinks=False)


def _whiteout(parent: Path, name: str) -> None:
    if name == OPAQUE:
        os.setxattr(parent, OPAQUE_XATTR, b"y")
    elif not name.startswith(WHITEOUT_PREFIX * 2):  # other .wh..wh.* are aufs metadata
        target = parent / name[len(WHITEOUT_PREFIX):]
        if not os.path.lexists(target):  # a whiteout hides lower layers only
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))


def _create(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, *,
            trusted: bool) -> None:
    if member.isreg():
        _clear(target, keep_dir=False)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            src = tar.extractfile(member)
            assert src is not None  # a regular member always has data
            shutil.copyfileobj(src, out, 1 << 20)
    elif member.isdir():
        _clear(target, keep_dir=True)
        if not os.path.isdir(target):
            os.mkdir(target, 0o700)
    elif member.isfifo():
        _clear(target, keep_dir=False)
        os.mkfifo(target, 0o600)
    elif member.ischr() or member.isblk():
        if not trusted:
            raise _refuse(member, "device node (allowed only in a trusted import)")
        _clear(target, keep_dir=False)
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    else:
        raise _refuse(member, f"unsupported member type {member.type!r}")


def _set_metadata(member: tarfile.TarInfo, target: Path) -> None:
    os.lchown(target, member.uid, member.gid)
    if not member.issym():
        os.chmod(target, member.mode & 0o7777)


def extract_layer(stream: IO[bytes], dest: Path, *, trusted: bool) -> None:
    """Unpack the (uncompressed) tar `stream` into the empty directory `dest`.
    InvalidArgument if it is unsafe or malformed; `dest` is then half-filled, and the
    caller removes it."""
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                parts = _parts(member.name, member)
                if not parts:
                    continue  # "./": the layer root itself
                if member.isreg() and member.mode & _SPECIAL_SUID and not trusted:
                    raise _refuse(member, "setuid/setgid file (allowed only in a "
                                  "trusted import)")
                parent = _parent(dest, parts, member)
                name = parts[-1]
                target = parent / name
                if name.startswith(WHITEOUT_PREFIX):
                    _whiteout(parent, name)
                    continue
                if member.issym():
                    _check_link_target(member, parts)
                    _clear(target, keep_dir=False)
                    os.symlink(member.linkname, target)
                elif member.islnk():
                    _hardlink(dest, member, target)
                    continue  # a hard link shares its target's metadata
                else:
                    _create(tar, member, target, trusted=trusted)
                if member.isdir():
                    dirs.append((target, member))  # modes and times once it is filled
                    continue
                _set_metadata(member, target)
                os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
    except (tarfile.TarError, EOFError) as e:
        raise InvalidArgument(f"malformed layer tarball: {e}", field="source",
                              reason="MALFORMED_ARCHIVE") from e
    for target, member in reversed(dirs):
        _set_metadata(member, target)
        os.utime(target, (member.mtime, member.mtime))
