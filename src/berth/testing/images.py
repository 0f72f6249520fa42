"""Image archives for tests: a busybox rootfs tarball and synthetic ``docker save`` archives.

Built from the host's static busybox so tests need no registry and no network; the same builders serve
unit tests of the image store and integration tests that run real containers.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, kind: bytes = tarfile.DIRTYPE,
         mode: int = 0o755, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime = int(time.time())
    info.mode = mode
    if data is not None:
        info.type, info.size = tarfile.REGTYPE, len(data)
        tar.addfile(info, io.BytesIO(data))
        return
    info.type, info.linkname = kind, linkname
    tar.addfile(info)


def busybox_rootfs_tar(path: Path) -> Path:
    """A flat rootfs tarball (``docker import`` style) with busybox, one symlink per applet and basic /etc."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "etc", "proc", "dev", "sys", "root", "var", "usr", "usr/bin"):
            _add(tar, d)
        _add(tar, "tmp", mode=0o1777)
        tar.add(busybox, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                _add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        _add(tar, "etc/passwd", data=PASSWD.encode(), mode=0o644)
        _add(tar, "etc/group", data=GROUP.encode(), mode=0o644)
    return path


def layer_tar(files: dict[str, bytes | None]) -> bytes:
    """One layer: a name maps to file content, or to None for a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            _add(tar, name, data=content, mode=0o644 if content is not None else 0o755)
    return buf.getvalue()


def docker_save_archive(path: Path, layers: list[dict[str, bytes | None] | bytes], tags: list[str],
                        config: dict | None = None) -> Path:
    """A ``docker save`` archive (manifest.json, config JSON, one layer.tar per layer) of the given layers.

    Whiteouts are ordinary entries named ``.wh.<name>`` / ``.wh..wh..opq``; ``config`` is the image's
    ``config`` section (Cmd, Entrypoint, Env, WorkingDir). A layer given as bytes is already a tarball.
    """
    blobs = [files if isinstance(files, bytes) else layer_tar(files) for files in layers]
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    image_config = {
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123456789Z",
        "config": config or {}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(image_config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_names = [f"{d.split(':', 1)[1]}/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": list(tags), "Layers": layer_names}]
    with tarfile.open(path, "w") as tar:
        for name, blob in zip(layer_names, blobs):
            _add(tar, name.split("/", 1)[0])
            _add(tar, name, data=blob, mode=0o644)
        _add(tar, config_name, data=config_bytes, mode=0o644)
        _add(tar, "manifest.json", data=json.dumps(manifest).encode(), mode=0o644)
    return path
