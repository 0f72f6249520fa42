"""Sysctls of the calling thread's network namespace, read and written through ``/proc/sys``.

``sysctl`` keys use dots as separators, but interface names may contain dots too
(``net.ipv4.conf.eth0.100.forwarding``); the interface part of a ``net.*.conf.<if>.<key>`` is kept whole.
"""

from __future__ import annotations

from pathlib import Path

from berth.errors import KernelError

PROC_SYS = Path("/proc/sys")


def path(key: str) -> Path:
    parts = key.split(".")
    if len(parts) > 4 and parts[0] == "net" and parts[2] in ("conf", "neigh"):
        parts = parts[:3] + [".".join(parts[3:-1]), parts[-1]]
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise KernelError(f"invalid sysctl key {key!r}")
    return PROC_SYS.joinpath(*parts)


def write(key: str, value: str) -> None:
    try:
        path(key).write_text(value)
    except OSError as err:
        raise KernelError(f"cannot set sysctl {key}={value}: {err.strerror}") from None


def read(key: str) -> str:
    try:
        return path(key).read_text().strip()
    except OSError as err:
        raise KernelError(f"cannot read sysctl {key}: {err.strerror}") from None
