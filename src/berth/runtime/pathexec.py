"""Executing a container command the way Docker does: PATH lookup in the container's env, Docker's errors.

Used after the process is already inside the container's root (pivot_root or chroot), so every path is
the container's. Errors carry Docker's wording and exit code (127 not found, 126 cannot execute).
"""

from __future__ import annotations

import os
import stat
from typing import NoReturn

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecError(Exception):
    """The command cannot run; ``str()`` is Docker's message, ``code`` the exit status to report."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _executable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def _env_map(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def resolve(name: str, env: dict[str, str]) -> str:
    """Go's exec.LookPath: a name with a slash is used as is, otherwise searched in the container's PATH."""
    if not name:
        raise ExecError('exec: "": executable file not found in $PATH', 127)
    if "/" in name:
        try:
            os.stat(name)
        except FileNotFoundError:
            raise ExecError(f'exec: "{name}": stat {name}: no such file or directory', 127) from None
        except NotADirectoryError:
            raise ExecError(f'exec: "{name}": stat {name}: not a directory', 127) from None
        return name
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        candidate = os.path.join(directory or ".", name)
        if _executable(candidate):
            return candidate
    raise ExecError(f'exec: "{name}": executable file not found in $PATH', 127)


def execute(argv: list[str], env: list[str]) -> NoReturn:
    """Replace this process with ``argv``; raises ExecError if that is impossible."""
    if not argv:
        raise ExecError("No command specified", 126)
    envmap = _env_map(env)
    path = resolve(argv[0], envmap)
    try:
        os.execve(path, argv, envmap)
    except PermissionError:
        raise ExecError(f'exec: "{argv[0]}": permission denied', 126) from None
    except OSError as err:
        raise ExecError(f'exec: "{argv[0]}": {os.strerror(err.errno or 0).lower()}', 126) from None
