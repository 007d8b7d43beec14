"""One layer blob, decompressed, checked against its digests and safely extracted."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zlib
from pathlib import Path
from typing import IO, cast

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.images.extract import extract_layer
from sheep_runtime.images.oci import HashingReader, LayerBlob, invalid

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
          (b"\x28\xb5\x2f\xfd", "zstd"))
_DECOMPRESS_ERRORS = (gzip.BadGzipFile, zlib.error, lzma.LZMAError, EOFError, ValueError)


class _Peek:
    """A reader that can look at its first bytes without losing them."""

    def __init__(self, f: HashingReader) -> None:
        self._f = f
        self._head = b""

    def peek(self, n: int) -> bytes:
        self._head += self._f.read(n - len(self._head))
        return self._head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            head = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(head):]
            return head if n < 0 or len(head) == n else head + self._f.read(n - len(head))
        return self._f.read(n)


def _decompressor(peek: _Peek, compression: str) -> IO[bytes]:
    if compression == "sniff":
        head = peek.peek(6)
        compression = next((kind for magic, kind in _MAGIC if head.startswith(magic)),
                           "none")
    raw = cast("IO[bytes]", peek)
    if compression == "gzip":
        return cast("IO[bytes]", gzip.GzipFile(fileobj=raw, mode="rb"))
    if compression == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    if compression == "zstd":
        raise invalid("zstd-compressed layers are not supported (use gzip or none)")
    return raw


def unpack_layer(blob: LayerBlob, dest: Path, *, trusted: bool) -> str:
    """Extract `blob` into the empty dir `dest`; return its diff_id (the sha256 of
    the uncompressed tar). InvalidArgument if a digest does not match."""
    with blob.open() as f:
        raw = HashingReader(f)
        try:
            tar = HashingReader(_decompressor(_Peek(raw), blob.compression))
            extract_layer(cast("IO[bytes]", tar), dest, trusted=trusted)
            diff_id = tar.drain()
            digest = raw.drain()
        except _DECOMPRESS_ERRORS as e:
            raise invalid(f"layer {blob.digest or 'tarball'} is corrupt: {e}") from e
    if blob.digest and digest != blob.digest:
        raise invalid(f"layer blob does not match its digest {blob.digest}")
    if blob.diff_id and diff_id != blob.diff_id:
        raise InvalidArgument(f"layer {blob.digest} unpacks to {diff_id}, not its "
                              f"diff_id {blob.diff_id}", field="source",
                              reason="MALFORMED_ARCHIVE")
    os.chmod(dest, 0o755)
    return diff_id
