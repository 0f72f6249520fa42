"""Safe extraction of rootfs tarballs and image layers into a directory.

Python's tarfile filters do not fit a root filesystem: ``data`` refuses absolute symlinks (normal in a
rootfs), ``tar`` strips setuid bits, and ``fully_trusted`` will happily write through a symlink that an
earlier member (or layer) pointed outside the target. So every member is placed by hand:

- names with ``..`` or a leading ``/`` are refused;
- no path component below the root is ever followed if it is a symlink: a member (or hard link target)
  reached through a symlinked directory is refused, and an existing symlink at the member's own path is
  replaced, never written through;
- symlinks are created verbatim (absolute ones included): as files they are harmless;
- device nodes are skipped: a container gets its devices from the runtime's /dev, and creating device
  nodes from an untrusted archive would hand out access to host hardware;
- ownership and mode bits (setuid, sticky) are kept.

Refusals raise ``InvalidParameter("refusing to extract <member>: it escapes the root filesystem")``.
Callers extract into a temporary directory and discard it on failure, so nothing partial is kept.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path

from berth.errors import InvalidParameter

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def _escapes(member: str) -> InvalidParameter:
    return InvalidParameter(f"refusing to extract {member}: it escapes the root filesystem")


def _parts(name: str, member: str) -> list[str]:
    """The normalised components of an archive path, refusing absolute paths and ``..``."""
    if name.startswith("/"):
        raise _escapes(member)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _escapes(member)
    return parts


def _parent(root: Path, parts: list[str], member: str, *, create: bool = True) -> Path | None:
    """The real directory holding ``parts[-1]``, checking no component on the way is a symlink.

    Missing parents are created (archives may omit directory entries) unless ``create`` is false, in which
    case None says there is no such directory.
    """
    current = root
    for part in parts[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _escapes(member)
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidParameter(f"cannot extract {member}: {'/'.join(parts[:-1])} is not a directory")
    return current


def _clear(path: Path, keep_dir: bool) -> None:
    """Remove whatever is at ``path`` (without following it) so a new entry can take its place."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(path)
    else:
        os.unlink(path)


def _remove(path: Path) -> None:
    _clear(path, keep_dir=False)


class LayerWriter:
    """Applies tar members to one root directory, layer after layer, tracking what needs fixing at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._as_root = os.geteuid() == 0
        self._dir_times: dict[Path, tuple[int, int]] = {}

    def apply(self, tar: tarfile.TarFile, *, layered: bool) -> None:
        """Extract every member of ``tar`` (in stream order); ``layered`` honours whiteouts."""
        created: set[Path] = set()
        for info in tar:
            parts = _parts(info.name, info.name)
            if not parts:
                continue  # the archive's "./" entry: the root itself
            base = parts[-1]
            if layered and base.startswith(WHITEOUT):
                parent = _parent(self.root, parts, info.name, create=False)
                if parent is None:
                    continue
                if base == OPAQUE:
                    for entry in os.listdir(parent):
                        if parent / entry not in created:
                            _remove(parent / entry)
                else:
                    hidden = base[len(WHITEOUT):]
                    if hidden in ("", ".", ".."):
                        raise _escapes(info.name)
                    _remove(parent / hidden)
                continue
            target = self._member(tar, info, parts)
            while target is not None and target != self.root and target not in created:
                created.add(target)  # with its parents: an opaque marker must not wipe them either
                target = target.parent

    def _member(self, tar: tarfile.TarFile, info: tarfile.TarInfo, parts: list[str]) -> Path | None:
        if info.ischr() or info.isblk():
            return None
        parent = _parent(self.root, parts, info.name)
        assert parent is not None  # created on demand
        path = parent / parts[-1]
        _clear(path, keep_dir=info.isdir())
        if info.isdir():
            if not path.is_dir():
                os.mkdir(path, 0o700)
            self._dir_times[path] = (info.mtime, info.mtime)
        elif info.issym():
            os.symlink(info.linkname, path)
        elif info.islnk():
            source_parts = _parts(info.linkname, info.name)
            if not source_parts:
                raise _escapes(info.name)
            source_dir = _parent(self.root, source_parts, info.name, create=False)
            source = (source_dir or self.root) / source_parts[-1]
            if source_dir is None or not os.path.lexists(source):
                raise InvalidParameter(f"cannot extract {info.name}: link target {info.linkname} does not exist")
            os.link(source, path, follow_symlinks=False)
            return path
        elif info.isfifo():
            os.mkfifo(path, 0o600)
        elif info.isreg():
            self._write_file(tar, info, path)
        else:
            return None  # nothing else a tar can hold is meaningful in a rootfs
        self._finish(info, path)
        return path

    def _write_file(self, tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> None:
        source = tar.extractfile(info)
        assert source is not None  # a regular member always has data
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)

    def _finish(self, info: tarfile.TarInfo, path: Path) -> None:
        """Owner, mode (setuid included; chmod after chown, which clears setuid) and mtime."""
        if self._as_root:  # without root, ownership cannot be kept; the files stay the extractor's
            os.chown(path, info.uid, info.gid, follow_symlinks=False)
        if not info.issym():
            os.chmod(path, stat.S_IMODE(info.mode))
        os.utime(path, (info.mtime, info.mtime), follow_symlinks=False)

    def close(self) -> None:
        """Directory mtimes last: creating entries inside a directory changes its mtime."""
        for path, times in self._dir_times.items():
            if path.is_dir() and not path.is_symlink():
                os.utime(path, times, follow_symlinks=False)


def tree_size(root: Path) -> int:
    """Bytes of regular files under ``root``, each inode once (what ``docker images`` calls SIZE)."""
    seen: set[int] = set()
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            if stat.S_ISREG(st.st_mode) and st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total
