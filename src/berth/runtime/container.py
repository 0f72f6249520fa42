"""The container's side of a spawn: runs in the monitor's forked child, which is pid 1 of the new pid ns.

Order matters: join the network namespace first (while ``/run`` paths are still the host's), unshare the
rest, make every mount private so nothing propagates back to the host, build the root filesystem
(overlay over the read-only image, /proc, a minimal /dev, /sys, the /etc files), pivot into it, then
report ready and block until the daemon releases the container, so clients can attach before the
first byte of output exists.
"""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path
from typing import NoReturn

from berth.kernel import syscalls as sc
from berth.runtime.pathexec import ExecError, execute

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))
ETC_FILES = ("hosts", "hostname", "resolv.conf")
NOSUID_NODEV_NOEXEC = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


def _mountpoint(path: Path, directory: bool) -> None:
    """Make ``path`` a real directory or file inside the rootfs, replacing a symlink rather than following it.

    The image is the overlay's lowerdir, so replacing an entry only touches the container's upper dir.
    """
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) == directory and not stat.S_ISLNK(st.st_mode):
            return
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    if directory:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))


def _overlay(spec: dict) -> Path:
    state = Path(spec["state_dir"])
    upper, work, merged = state / "upper", state / "work", state / "merged"
    options = f"lowerdir={spec['rootfs']},upperdir={upper},workdir={work}"
    if any(c in spec["rootfs"] + str(state) for c in ",:"):
        raise OSError(0, f"paths with ',' or ':' cannot be used as overlay layers: {options}")
    try:
        sc.mount("overlay", str(merged), "overlay", 0, options)
    except OSError as err:
        raise OSError(err.errno, f"cannot mount the container's root filesystem (overlay {options}): "
                                 f"{os.strerror(err.errno or 0)}") from None
    return merged


def _dev(root: Path) -> None:
    dev = root / "dev"
    _mountpoint(dev, True)
    sc.mount("tmpfs", str(dev), "tmpfs", sc.MS_NOSUID, "mode=755,size=65536k")
    for name in DEVICES:
        _mountpoint(dev / name, False)
        sc.mount(f"/dev/{name}", str(dev / name), None, sc.MS_BIND)
    os.mkdir(dev / "pts", 0o755)
    sc.mount("devpts", str(dev / "pts"), "devpts", sc.MS_NOSUID | sc.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
    os.mkdir(dev / "shm", 0o1777)
    sc.mount("shm", str(dev / "shm"), "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    for name, target in DEV_LINKS:
        os.symlink(target, dev / name)


def _rootfs(spec: dict) -> Path:
    root = _overlay(spec)
    _mountpoint(root / "proc", True)
    sc.mount("proc", str(root / "proc"), "proc", NOSUID_NODEV_NOEXEC)
    _dev(root)
    _mountpoint(root / "sys", True)
    try:
        sc.mount("sysfs", str(root / "sys"), "sysfs", NOSUID_NODEV_NOEXEC | sc.MS_RDONLY)
    except OSError:
        pass  # sysfs is a convenience (some tools read /sys/class/net); a container runs without it
    _mountpoint(root / "etc", True)
    etc_dir = Path(spec["etc_dir"])
    for name in ETC_FILES:
        target = root / "etc" / name
        _mountpoint(target, False)
        sc.mount(str(etc_dir / name), str(target), None, sc.MS_BIND)
    return root


def _pivot(root: Path) -> None:
    """pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only the container's."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def _workdir(path: str) -> None:
    """Docker creates a missing working directory."""
    try:
        os.makedirs(path, exist_ok=True)
        os.chdir(path)
    except OSError as err:
        raise OSError(err.errno, f'chdir to cwd ("{path}") set in config.json failed: '
                                 f"{os.strerror(err.errno or 0).lower()}") from None


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return str(err) or type(err).__name__


def _report(fd: int, message: str) -> None:
    os.write(fd, message.encode() + b"\n")


def run(spec: dict, stdio: tuple[int, int, int], report_fd: int, release_fd: int) -> NoReturn:
    """Set the container up, wait for release, exec. Never returns; exits 1 on setup failure, 126/127 on exec failure."""
    try:
        sc.set_parent_death_signal(signal.SIGKILL)  # a crashed monitor must not leave an unsupervised container
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        if spec["netns"]:
            fd = os.open(spec["netns"], os.O_RDONLY | os.O_CLOEXEC)
            sc.setns(fd, sc.CLONE_NEWNET)
            os.close(fd)
        flags = sc.CLONE_NEWIPC | sc.CLONE_NEWNS | (0 if spec["share_uts"] else sc.CLONE_NEWUTS)
        sc.unshare(flags)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        _pivot(_rootfs(spec))
        if not spec["share_uts"]:
            sc.sethostname(spec["hostname"])
        _workdir(spec["workdir"] or "/")
        _report(report_fd, "ready")
        if os.read(release_fd, 1) != b"x":
            os._exit(1)  # the monitor gave up on this container before releasing it
        execute(spec["cmd"], spec["env"])
    except ExecError as err:
        _report(report_fd, f"exec:{err.code}:{err}")
        os._exit(err.code)
    except BaseException as err:  # noqa: BLE001 - anything here must be reported, never raised in a fork
        _report(report_fd, f"error:{_describe(err)}")
        os._exit(1)
