"""Network namespaces as files, created and entered without forking (deps.md §1).

A namespace is made by a short-lived thread that unshares its own network namespace and bind-mounts
``/proc/thread-self/ns/net`` onto the file; a netlink socket inside a namespace is opened by switching
the calling thread in and straight back. Both rely on the network namespace being per thread, so the
daemon's other threads never notice, and no thread is ever left inside another namespace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import threading
from pathlib import Path

from berth.errors import KernelError
from berth.kernel import syscalls as sc

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_shared_dirs: set[Path] = set()
_shared_lock = threading.Lock()


def _share(directory: Path) -> None:
    """Make ``directory`` a shared mount point, as iproute2 does for /run/netns.

    Namespace files mounted in it then propagate to mount namespaces cloned later (a container's), and
    so does their unmount: a copy left behind in a container's mount table would otherwise keep a
    deleted namespace (and its veths) alive.
    """
    with _shared_lock:
        if directory in _shared_dirs:
            return
        try:
            sc.mount(None, str(directory), None, sc.MS_SHARED | sc.MS_REC)
        except OSError as err:
            if err.errno != errno.EINVAL:  # EINVAL: not a mount point yet
                raise
            sc.mount(str(directory), str(directory), None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, str(directory), None, sc.MS_SHARED | sc.MS_REC)
        _shared_dirs.add(directory)


def _loopback_up() -> None:
    """Raise ``lo`` of the calling thread's namespace with two ioctls: cheaper than a netlink socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request + bytes(22))[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP) + bytes(22))


def create(path: Path) -> None:
    """A new network namespace, ``lo`` up, kept alive by a bind mount on ``path`` (which must not exist)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _share(path.parent)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o444)
    except FileExistsError:
        raise KernelError(f"network namespace {path} already exists") from None
    except OSError as err:
        raise KernelError(f"cannot create network namespace {path}: {err.strerror}") from None
    os.close(fd)
    failure: list[OSError] = []

    def make() -> None:
        try:
            sc.unshare(sc.CLONE_NEWNET)
            _loopback_up()
            sc.mount("/proc/thread-self/ns/net", str(path), None, sc.MS_BIND)
        except OSError as err:
            failure.append(err)

    worker = threading.Thread(target=make, name="netns-create")
    worker.start()
    worker.join()
    if failure:
        path.unlink(missing_ok=True)
        raise KernelError(f"cannot create network namespace {path}: {failure[0].strerror}")


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


def mounted(directory: Path) -> list[str]:
    """Paths of the network namespace files mounted directly in ``directory``, from the mount table."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "nsfs" and fields[3].startswith("net:"):
                point = Path(fields[4].encode().decode("unicode_escape"))
                if point.parent == directory:
                    found.append(str(point))
    return sorted(found)


def netlink_socket(path: Path, protocol: int = 0) -> socket.socket:
    """A netlink socket that lives in the namespace at ``path`` (the calling thread returns home)."""
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KernelError(f"network namespace {path} does not exist") from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            try:
                sc.setns(target, sc.CLONE_NEWNET)
            except OSError as err:
                raise KernelError(f"cannot enter network namespace {path}: {err.strerror}") from None
            try:
                return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, protocol)
            finally:
                sc.setns(home, sc.CLONE_NEWNET)
        finally:
            os.close(home)
    finally:
        os.close(target)
