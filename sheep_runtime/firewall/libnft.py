"""A typed ctypes binding of libnftables (`libnftables.so.1`, Debian's libnftables1):
only the calls sheepd needs, with JSON input and output.

A context opens its netlink socket when created and is not thread-safe: create, use
and free it on one thread (see nft.py)."""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from typing import Any

SONAME = "libnftables.so.1"

# include/nftables/libnftables.h
_NFT_CTX_DEFAULT = 0
_NFT_CTX_OUTPUT_HANDLE = 1 << 3
_NFT_CTX_OUTPUT_JSON = 1 << 4

_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {  # name: (restype, argtypes)
    "nft_ctx_new": (_P, [ctypes.c_uint32]),
    "nft_ctx_free": (None, [_P]),
    "nft_ctx_output_get_flags": (ctypes.c_uint, [_P]),
    "nft_ctx_output_set_flags": (None, [_P, ctypes.c_uint]),
    "nft_ctx_buffer_output": (ctypes.c_int, [_P]),
    "nft_ctx_buffer_error": (ctypes.c_int, [_P]),
    "nft_ctx_get_output_buffer": (ctypes.c_char_p, [_P]),
    "nft_ctx_get_error_buffer": (ctypes.c_char_p, [_P]),
    "nft_run_cmd_from_buffer": (ctypes.c_int, [_P, ctypes.c_char_p]),
}


@dataclass(frozen=True)
class Result:
    """What one command buffer gave: nft's return code (0: the whole batch was
    committed), its decoded JSON output (None if it printed nothing) and its error text."""

    rc: int
    output: Any
    error: str


def load(soname: str = SONAME) -> ctypes.CDLL:
    """The library with the signatures of the calls used; OSError if it is missing."""
    lib = ctypes.CDLL(soname, use_errno=True)
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


class Context:
    """One libnftables context with buffered JSON output and errors, no handles."""

    def __init__(self, lib: ctypes.CDLL | None = None) -> None:
        self._lib = lib if lib is not None else load()
        ctx = self._lib.nft_ctx_new(_NFT_CTX_DEFAULT)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        self._ctx: int | None = ctx
        flags = self._lib.nft_ctx_output_get_flags(ctx)
        self._lib.nft_ctx_output_set_flags(
            ctx, (flags | _NFT_CTX_OUTPUT_JSON) & ~_NFT_CTX_OUTPUT_HANDLE)
        if self._lib.nft_ctx_buffer_output(ctx) or self._lib.nft_ctx_buffer_error(ctx):
            self.free()
            raise OSError("nft_ctx_buffer_output/error failed")

    def run_json(self, document: Any) -> Result:
        """Run a JSON document ({"nftables": [...]}) as one transaction."""
        if self._ctx is None:
            raise ValueError("the libnftables context is freed")
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, json.dumps(document).encode())
        out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
        err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        return Result(rc=int(rc), output=json.loads(out) if out.strip() else None,
                      error=err)

    def free(self) -> None:
        """Close the context's socket and free it (idempotent)."""
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            self._lib.nft_ctx_free(ctx)
