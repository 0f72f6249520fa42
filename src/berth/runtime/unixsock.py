"""Unix socket paths that may be longer than the kernel's 108-byte ``sun_path`` limit.

Container run directories can sit deep in a test's temp dir; going through ``/proc/self/fd/<dirfd>/``
keeps the address short without changing the working directory (which a threaded daemon cannot do).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable

SUN_PATH_MAX = 100  # leaves room for the terminating NUL and a margin


def _with_address(path: Path, action: Callable[[str], None]) -> None:
    if len(os.fsencode(path)) < SUN_PATH_MAX:
        action(str(path))
        return
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        action(f"/proc/self/fd/{dirfd}/{path.name}")
    finally:
        os.close(dirfd)


def listen(path: Path, backlog: int = 16) -> socket.socket:
    """A listening socket at ``path`` (a stale socket file is replaced), readable by root only."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _with_address(path, sock.bind)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return sock


def connect(path: Path, timeout: float | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _with_address(path, sock.connect)
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock
