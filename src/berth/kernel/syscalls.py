"""Thin ctypes wrappers for the namespace and mount system calls Python does not expose.

Every wrapper raises ``OSError`` carrying errno and a message that names the call and its arguments, so
a failure deep in a spawn or netns step says exactly what the kernel refused.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36

# The C library already loaded into the interpreter: ctypes.util.find_library would run ``ldconfig -p``
# in a subprocess, which every container's monitor paid at start-up (and half a MiB of imports for).
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_SYS_PIVOT_ROOT = 155  # x86_64; glibc has no wrapper


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def setns(fd: int, nstype: int = 0) -> None:
    """Move the calling thread into the namespace open at ``fd`` (per thread for net, per process for mnt)."""
    _check(_libc.setns(fd, nstype), f"setns(fd={fd}, type={nstype:#x})")


def unshare(flags: int) -> None:
    """Move the calling thread into new namespaces of the given ``CLONE_NEW*`` kinds."""
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
        f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x})",
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount2({target!r}, {flags})")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), f"pivot_root({new_root!r}, {put_old!r})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname({name!r})")


def set_child_subreaper() -> None:
    """Orphaned descendants are re-parented to this process, so a monitor can reap its container's init."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def set_parent_death_signal(sig: int) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0), f"prctl(PR_SET_PDEATHSIG, {sig})")


def set_process_title(args: list[str], name: str) -> None:
    """Show this process as ``args`` in ``ps`` and ``/proc/<pid>/cmdline``, and as ``name`` in ``top``.

    A process forked without exec keeps its parent's command line. The kernel reads the command line from
    the argument area of the original exec (``arg_start``..``arg_end`` in ``/proc/self/stat``), so the new
    one is written over it, NUL-separated and NUL-padded; it must fit (the parent reserves the room).
    Changing the area's bounds instead (``PR_SET_MM``) would need CAP_SYS_RESOURCE, which a root daemon in a
    container often lacks.
    """
    fields = open("/proc/self/stat", "rb").read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # fields 48 and 49; the list starts at field 3
    title = b"\0".join(os.fsencode(a) for a in args) + b"\0"
    if len(title) > end - start:
        raise OSError(f"process title of {len(title)} bytes does not fit the {end - start} bytes of the argument area")
    ctypes.memmove(start, title.ljust(end - start, b"\0"), end - start)
    comm = ctypes.create_string_buffer(name.encode()[:15])
    _check(_libc.prctl(PR_SET_NAME, ctypes.addressof(comm), 0, 0, 0), f"prctl(PR_SET_NAME, {name!r})")
