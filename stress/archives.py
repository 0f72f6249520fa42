"""Image archives that try to escape the rootfs, sent through the API as ``docker import`` and
``docker load`` send them: each must be refused (device nodes: never created), with nothing written
outside the image store and nothing partial left inside it.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Callable

from stress.api import Api
from stress.report import reply_problem
from stress.stage import Stage

SCENARIO = "archives"
Member = Callable[[tarfile.TarFile], None]


def _file(name: str, data: bytes = b"pwned\n") -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return add


def _link(name: str, target: str, kind: bytes) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)
    return add


def _dir(name: str) -> Member:
    return _link(name, "", tarfile.DIRTYPE)


def _device(name: str) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 1  # /dev/mem
        tar.addfile(info)
    return add


def _huge(name: str) -> Member:
    """A member that claims a terabyte and then stops: the archive ends mid-file."""
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = 1 << 40
        tar.fileobj.write(info.tobuf(tar.format, tar.encoding, tar.errors))
        tar.fileobj.write(b"\0" * (1 << 20))
        tar.offset += 512 + (1 << 20)
    return add


def _tar(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for add in members:
            add(tar)
    return buf.getvalue()


def _cases(outside: Path) -> dict[str, list[list[Member]]]:
    """Each case: its layers (one layer for ``import``; ``load`` gets them as a docker save archive)."""
    out = str(outside)
    up = "../" * (len(outside.parts) + 2)
    return {
        "dot-dot path": [[_file("etc/../../escape-dotdot")]],
        "dot-dot to the outside dir": [[_file(f"{up}{out.lstrip('/')}/escape-up")]],
        "absolute path": [[_file(f"{out}/escape-abs")]],
        "absolute symlink, then a write through it": [[_link("abs", out, tarfile.SYMTYPE), _file("abs/escape-sym")]],
        "relative symlink, then a write through it": [[_link("rel", f"{up}{out.lstrip('/')}", tarfile.SYMTYPE),
                                                       _file("rel/escape-rel")]],
        "hardlink to a file outside": [[_link("hl", f"{out}/canary", tarfile.LNKTYPE)]],
        "hardlink by dot-dot": [[_link("hl2", f"{up}{out.lstrip('/')}/canary", tarfile.LNKTYPE)]],
        "device node": [[_device("dev/mem"), _file("ok")]],
        "huge file, truncated": [[_huge("huge")]],
        "symlinked directory in a later layer": [[_dir("d"), _file("d/a")],
                                                 [_link("d", out, tarfile.SYMTYPE)], [_file("d/escape-layer")]],
        "symlink replaced by a directory walk": [[_link("x", "/", tarfile.SYMTYPE)],
                                                 [_file(f"x/{out.lstrip('/')}/escape-root")]],
    }


def _save_archive(layers: list[list[Member]]) -> bytes:
    """A ``docker save`` archive (manifest.json, config, one tar per layer) around these layers."""
    buf = io.BytesIO()
    names = [f"layer{i}/layer.tar" for i in range(len(layers))]
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
              "rootfs": {"type": "layers", "diff_ids": [f"sha256:{i:064x}" for i in range(len(layers))]}}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        files = {"config.json": json.dumps(config).encode(),
                 "manifest.json": json.dumps([{"Config": "config.json", "RepoTags": ["escape:1"],
                                               "Layers": names}]).encode()}
        files.update({name: _tar(layer) for name, layer in zip(names, layers)})
        for name, data in files.items():
            _file(name, data)(tar)
    return buf.getvalue()


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
            for p in sorted(directory.rglob("*"))}


def run(stage: Stage) -> None:
    report = stage.report
    outside = stage.host.tmp / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "canary").write_text("canary\n")
    images = stage.host.root / "images"
    api = Api(str(stage.host.socket))
    tried = refused = 0
    try:
        for name, layers in _cases(outside).items():
            for how in ("import", "load"):
                if how == "import" and len(layers) > 1:
                    continue  # one rootfs tarball has one layer
                before_out, before_images = _snapshot(outside), _snapshot(images)
                if how == "import":
                    reply = api.call("POST", "/images/create", query={"fromSrc": "-", "repo": "escape", "tag": "1"},
                                     raw=_tar(layers[0]), headers={"Content-Type": "application/x-tar"})
                else:
                    reply = api.call("POST", "/images/load", raw=_save_archive(layers),
                                     headers={"Content-Type": "application/x-tar"})
                tried += 1
                what = f"{how} of {name}"
                problem = reply_problem(reply)
                if problem:
                    report.violation(SCENARIO, f"{what}: {problem}")
                if name == "device node" and reply.ok:
                    created = [p for p in images.rglob("mem") if p.is_char_device()]
                    if created:
                        report.violation(SCENARIO, f"{what}: device node created at {created[0]}")
                    else:
                        refused += 1
                    api.call("DELETE", "/images/escape:1", query={"force": "1"})
                elif reply.ok:
                    report.violation(SCENARIO, f"{what}: accepted")
                    api.call("DELETE", "/images/escape:1", query={"force": "1"})
                else:
                    refused += 1
                if _snapshot(outside) != before_out:
                    report.violation(SCENARIO, f"{what}: something was written outside the image store")
                if _snapshot(images) != before_images:
                    report.violation(SCENARIO, f"{what}: the image store changed")
                stray = [p for p in stage.host.tmp.rglob("escape-*")]
                if stray:
                    report.violation(SCENARIO, f"{what}: {stray[0]} was written")
    finally:
        api.close()
    report.inputs += tried
    report.figure(SCENARIO, "archives tried", tried)
    report.figure(SCENARIO, "refused (device nodes: never created)", refused)
