"""Network namespaces as files, created and entered without forking (deps.md §1).

A namespace is made by a short-lived thread that unshares its own network namespace and bind-mounts
``/proc/thread-self/ns/net`` onto the file; a netlink socket inside a namespace is opened by switching
the calling thread in and straight back. Both rely on the network namespace being per thread, so the
daemon's other threads never notice.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path

from berth.errors import KernelError
from berth.kernel import syscalls as sc

def create(path: Path) -> None:
    """A new, empty network namespace kept alive by a bind mount on ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o444)
    except FileExistsError:
        raise KernelError(f"network namespace {path} already exists") from None
    os.close(fd)
    failure: list[BaseException] = []

    def make() -> None:
        try:
            sc.unshare(sc.CLONE_NEWNET)
            sc.mount("/proc/thread-self/ns/net", str(path), None, sc.MS_BIND)
        except BaseException as err:  # noqa: BLE001 - reported by the caller
            failure.append(err)

    worker = threading.Thread(target=make, name="netns-create")
    worker.start()
    worker.join()
    if failure:
        path.unlink(missing_ok=True)
        raise KernelError(f"cannot create network namespace {path}: {failure[0]}")


def delete(path: Path) -> None:
    """Unmount and remove a namespace file; a missing one counts as deleted."""
    try:
        sc.umount2(str(path), sc.MNT_DETACH)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOENT):
            raise KernelError(f"cannot unmount network namespace {path}: {err.strerror}") from None
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise KernelError(f"cannot remove network namespace {path}: {err.strerror}") from None


def exists(path: Path) -> bool:
    """Is ``path`` a mounted network namespace (not just a leftover empty file)?"""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def netlink_socket(path: Path, protocol: int = 0) -> socket.socket:
    """A netlink socket that lives in the namespace at ``path`` (the calling thread returns home)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise KernelError(f"network namespace {path} does not exist") from None
        try:
            sc.setns(target, sc.CLONE_NEWNET)
            try:
                return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, protocol)
            finally:
                sc.setns(home, sc.CLONE_NEWNET)
        finally:
            os.close(target)
    finally:
        os.close(home)
