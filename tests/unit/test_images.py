"""The image store: import, load with whiteouts, lookup, removal, and extraction that cannot escape."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from berth.errors import Conflict, InvalidParameter, NotFound
from berth.runtime.images import ImageStore, normalize_reference
from berth.testing.images import docker_save_archive


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644, linkname: str = "",
          devmajor: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.devmajor = kind, mode, linkname, devmajor
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar_bytes(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def save_archive(tmp_path: Path, layers: list[bytes], tags: list[str]) -> io.BytesIO:
    """A docker save archive whose layers are given as raw tar bytes (for symlink and device cases)."""
    names = [f"l{i}/layer.tar" for i in range(len(layers))]
    config = json.dumps({"created": "2024-01-02T03:04:05Z", "config": {}}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": tags, "Layers": names}]).encode()
    return io.BytesIO(tar_bytes(*[entry(n, data=b) for n, b in zip(names, layers)],
                                entry("c.json", data=config), entry("manifest.json", data=manifest)))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def leftovers(store: ImageStore) -> list[str]:
    return sorted(p.name for p in store.directory.iterdir())


def test_import_flat_rootfs_and_find_it_by_tag_and_id(store):
    image = store.import_tar(io.BytesIO(tar_bytes(entry("bin", tarfile.DIRTYPE, mode=0o755),
                                                  entry("bin/hello", data=b"hi", mode=0o755))), "bb")
    assert image.repo_tags == ("bb:latest",) and image.id.startswith("sha256:") and len(image.id) == 71
    assert (image.rootfs / "bin" / "hello").read_bytes() == b"hi"
    assert image.config == {} and image.size == 2
    hex_id = image.id[len("sha256:"):]
    for ref in ("bb", "bb:latest", image.id, hex_id, hex_id[:12], "sha256:" + hex_id[:5]):
        assert store.get(ref).id == image.id
    with pytest.raises(NotFound, match="^No such image: nosuch$"):
        store.get("nosuch")
    # metadata is on disk: a new store (daemon restart) sees the same image
    assert [i.id for i in ImageStore(store.directory).list()] == [image.id]


def test_import_keeps_setuid_sticky_and_absolute_symlinks(store):
    image = store.import_tar(io.BytesIO(tar_bytes(
        entry("su", data=b"x", mode=0o4755), entry("tmp", tarfile.DIRTYPE, mode=0o1777),
        entry("lib64", tarfile.SYMTYPE, linkname="/usr/lib64"),
    )), "t")
    assert stat.S_IMODE(os.lstat(image.rootfs / "su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(image.rootfs / "tmp").st_mode) == 0o1777
    assert os.readlink(image.rootfs / "lib64") == "/usr/lib64"


def test_import_skips_device_nodes(store):
    image = store.import_tar(io.BytesIO(tar_bytes(
        entry("dev", tarfile.DIRTYPE, mode=0o755), entry("dev/sda", tarfile.BLKTYPE, devmajor=8),
        entry("dev/null", tarfile.CHRTYPE, devmajor=1), entry("ok", data=b"1"),
    )), "t")
    assert os.listdir(image.rootfs / "dev") == [] and (image.rootfs / "ok").exists()


@pytest.mark.parametrize("evil", [
    [entry("../outside", data=b"x")],
    [entry("/abs", data=b"x")],
    [entry("a/../../outside", data=b"x")],
    # a symlinked directory (absolute or relative) placed by an earlier member is never written through
    [entry("esc", tarfile.SYMTYPE, linkname="{outside}"), entry("esc/pwned", data=b"x")],
    [entry("esc", tarfile.SYMTYPE, linkname="../../../.."), entry("esc/tmp/pwned", data=b"x")],
    # hard links must name a file inside the rootfs, not through a symlink
    [entry("hl", tarfile.LNKTYPE, linkname="../../etc/passwd")],
    [entry("hl", tarfile.LNKTYPE, linkname="/etc/passwd")],
    [entry("esc", tarfile.SYMTYPE, linkname="{outside}"), entry("hl", tarfile.LNKTYPE, linkname="esc/secret")],
])
def test_import_refuses_members_that_escape_and_leaves_nothing(store, tmp_path, evil):
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (outside / "secret").write_text("s")
    for info, _ in evil:
        info.linkname = info.linkname.replace("{outside}", str(outside))
    with pytest.raises(InvalidParameter, match=r"^refusing to extract .*: it escapes the root filesystem$"):
        store.import_tar(io.BytesIO(tar_bytes(*evil)), "evil")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert not (tmp_path / "outside").exists()
    assert leftovers(store) == [] and store.list() == []


def test_a_later_member_replaces_a_symlink_instead_of_following_it(store, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    image = store.import_tar(io.BytesIO(tar_bytes(
        entry("f", tarfile.SYMTYPE, linkname=str(victim)), entry("f", data=b"new"),
    )), "t")
    assert victim.read_text() == "untouched"
    assert not (image.rootfs / "f").is_symlink() and (image.rootfs / "f").read_bytes() == b"new"


def test_load_applies_layers_whiteouts_and_opaque_dirs(store, tmp_path):
    archive = docker_save_archive(tmp_path / "save.tar", [
        {"etc": None, "etc/a": b"1", "etc/b": b"2", "opt": None, "opt/old": b"o", "keep": b"k"},
        {"etc/.wh.a": b"", "opt/.wh..wh..opq": b"", "opt/new": b"n", "etc/c": b"3"},
    ], ["app:v1", "app:latest"], config={"Cmd": ["sh"], "Env": ["A=1"], "WorkingDir": "/srv", "Labels": {"x": "y"}})
    [image] = store.load(archive.open("rb"))
    root = image.rootfs
    assert sorted(os.listdir(root / "etc")) == ["b", "c"]
    assert os.listdir(root / "opt") == ["new"]
    assert (root / "keep").read_bytes() == b"k"
    assert image.repo_tags == ("app:v1", "app:latest")
    assert image.config == {"Cmd": ["sh"], "Env": ["A=1"], "WorkingDir": "/srv"}
    assert image.size == 4  # b, c, new and keep: files removed by a later layer do not count
    assert image.created == 1704164645.123456
    # loading the same archive again changes nothing but is not an error
    assert [i.id for i in store.load(archive.open("rb"))] == [image.id]
    assert len(store.list()) == 1


def test_load_refuses_a_later_layer_writing_through_an_earlier_layers_symlink(store, tmp_path):
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    archive = save_archive(tmp_path, [
        tar_bytes(entry("esc", tarfile.SYMTYPE, linkname=str(outside))),
        tar_bytes(entry("esc/pwned", data=b"x")),
    ], ["evil:latest"])
    with pytest.raises(InvalidParameter, match="refusing to extract esc/pwned: it escapes the root filesystem"):
        store.load(archive)
    assert list(outside.iterdir()) == [] and store.list() == []
    assert leftovers(store) == []


def test_load_refuses_whiteouts_that_escape(store, tmp_path):
    archive = save_archive(tmp_path, [tar_bytes(entry("../.wh.victim", data=b""))], ["evil:latest"])
    with pytest.raises(InvalidParameter, match="escapes the root filesystem"):
        store.load(archive)


def test_load_without_manifest_is_a_clear_error(store):
    with pytest.raises(InvalidParameter, match="manifest.json not found"):
        store.load(io.BytesIO(tar_bytes(entry("x", data=b"1"))))


def test_a_tag_moves_to_the_newer_image(store):
    first = store.import_tar(io.BytesIO(tar_bytes(entry("a", data=b"1"))), "bb")
    second = store.import_tar(io.BytesIO(tar_bytes(entry("b", data=b"2"))), "bb")
    assert store.get("bb").id == second.id
    assert store.get(first.id).repo_tags == ()


def test_remove_untags_then_deletes(store):
    image = store.import_tar(io.BytesIO(tar_bytes(entry("a", data=b"1"))), "bb")
    store.import_tar(io.BytesIO(tar_bytes(entry("a", data=b"1"))), "other:1")
    store._set_tags(image, ("bb:v2",))
    assert store.remove("bb:v2", in_use_by=lambda _: None) == [{"Untagged": "bb:v2"}]
    assert store.remove("bb", in_use_by=lambda _: None) == [{"Untagged": "bb:latest"}, {"Deleted": image.id}]
    assert not image.rootfs.exists()
    with pytest.raises(NotFound):
        store.get(image.id)
    assert [i.repo_tags for i in store.list()] == [("other:1",)]


def test_remove_refuses_an_image_a_container_uses(store):
    image = store.import_tar(io.BytesIO(tar_bytes(entry("a", data=b"1"))), "bb")
    user = "c" * 64
    with pytest.raises(Conflict) as err:
        store.remove("bb", in_use_by=lambda i: user if i == image.id else None)
    short = image.id[7:19]
    assert str(err.value) == (f'conflict: unable to remove repository reference "bb" (must force) - container '
                              f"cccccccccccc is using its referenced image {short}")
    assert store.get("bb").id == image.id and image.rootfs.exists()


def test_remove_by_id_of_an_image_with_several_tags_is_refused(store):
    image = store.import_tar(io.BytesIO(tar_bytes(entry("a", data=b"1"))), "bb")
    store._set_tags(image, ("bb:v2",))
    with pytest.raises(Conflict, match="image is referenced in multiple repositories"):
        store.remove(image.id, in_use_by=lambda _: None)


def test_reference_rules():
    assert normalize_reference("bb") == "bb:latest"
    assert normalize_reference("localhost:5000/team/app") == "localhost:5000/team/app:latest"
    assert normalize_reference("app:1.2") == "app:1.2"
    with pytest.raises(InvalidParameter, match="^invalid reference format: repository name must be lowercase$"):
        normalize_reference("BB")
    for bad in ("a b", "app:", "-x", "app:t@g"):
        with pytest.raises(InvalidParameter, match="^invalid reference format"):
            normalize_reference(bad)


def test_corrupt_tar_is_refused_and_nothing_kept(store):
    with pytest.raises(InvalidParameter, match="^Error processing tar file"):
        store.import_tar(io.BytesIO(b"not a tar at all" * 100), "bad")
    assert leftovers(store) == []
