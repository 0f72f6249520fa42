"""nftables through libnftables (ctypes), JSON in and out: no subprocess, one atomic batch per call.

A libnftables context is not thread-safe, so calls are serialised with a lock; a batch costs well under
a millisecond, far less than the ``nft`` binary's 3-4 ms start-up (deps.md §2).
"""

from __future__ import annotations

import ctypes
import json
import threading
from typing import Any

from berth.errors import KernelError

NFT_CTX_OUTPUT_JSON = 1 << 4


class Nftables:
    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError as err:
            raise KernelError(f"cannot load libnftables (install the libnftables1 package): {err}") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_output_set_flags(self._ctx, NFT_CTX_OUTPUT_JSON)
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    def run(self, text: str) -> list[dict[str, Any]]:
        """Run one batch (JSON or nft syntax); everything in it is applied, or nothing is."""
        with self._lock:
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
            out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
            err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        if rc != 0:
            lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
            message = next((line for line in lines if "Error" in line), lines[0] if lines else "unknown error")
            raise KernelError(f"nftables refused berth's change: {message.strip()}")
        if not out.strip():
            return []
        return json.loads(out).get("nftables", [])

    def batch(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not commands:
            return []
        return self.run(json.dumps({"nftables": commands}))

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None
