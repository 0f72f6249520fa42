"""The local image store: rootfs tarballs (``docker import``) and ``docker save`` archives (``docker load``).

Layout under ``<root>/images``: one directory per image, named by the hex of its id, holding ``rootfs/``
(the flattened filesystem, used read-only as an overlay lowerdir) and ``image.json`` (tags, creation
time, size and the config subset a container needs). Both appear atomically: the rootfs is extracted
into a ``.tmp-*`` directory that is renamed into place once complete, and metadata is written to a
temporary file and renamed, so a crash never leaves a half image that looks whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from berth.errors import Conflict, InvalidParameter, KernelError, NotFound
from berth.runtime.rootfs import LayerWriter, tree_size

CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "WorkingDir")
TMP_PREFIX = ".tmp-"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_HEX_RE = re.compile(r"^[0-9a-f]{1,64}$")


@dataclass(frozen=True)
class Image:
    id: str                      # "sha256:<64 hex>"
    repo_tags: tuple[str, ...]   # "name:tag"
    created: float
    size: int
    rootfs: Path
    config: dict = field(default_factory=dict)


def normalize_reference(reference: str) -> str:
    """``name`` -> ``name:latest``; refuses what Docker calls an invalid reference format."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    name, tag = (reference[:colon], reference[colon + 1:]) if colon > slash else (reference, "latest")
    if name.lower() != name and _NAME_RE.match(name.lower()):
        raise InvalidParameter("invalid reference format: repository name must be lowercase")
    if not _NAME_RE.match(name) or not _TAG_RE.match(tag):
        raise InvalidParameter("invalid reference format")
    return f"{name}:{tag}"


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e9):09d}Z"


def _parse_time(text: str) -> float:
    """An RFC 3339 timestamp with up to nanosecond precision (Go's format) as epoch seconds."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


class _HashingReader:
    """Passes a stream through while hashing it, so an import's layer digest costs no second read."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.sha.update(data)
        return data


class ImageStore:
    """Images on disk, safe for concurrent use by the daemon's threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        for leftover in directory.glob(TMP_PREFIX + "*"):  # an extraction or removal cut short by a crash
            shutil.rmtree(leftover, ignore_errors=True)
        self._images: dict[str, Image] = {}
        for meta in directory.glob("*/image.json"):
            image = self._read(meta)
            self._images[image.id] = image

    # -- reading ------------------------------------------------------------------------------

    def _read(self, meta: Path) -> Image:
        data = json.loads(meta.read_text())
        return Image(id=data["Id"], repo_tags=tuple(data["RepoTags"]), created=data["Created"],
                     size=data["Size"], rootfs=meta.parent / "rootfs", config=data["Config"])

    def list(self) -> list[Image]:
        """Newest first, as ``docker images`` shows them."""
        with self._lock:
            return sorted(self._images.values(), key=lambda i: i.created, reverse=True)

    def get(self, ref: str) -> Image:
        """By ``name[:tag]``, full id (with or without ``sha256:``) or a unique id prefix."""
        with self._lock:
            image = self._by_tag(ref) or self._by_id(ref)
        if image is None:
            raise NotFound(f"No such image: {ref}")
        return image

    def _by_tag(self, ref: str) -> Image | None:
        if ref.startswith("sha256:"):
            return None
        try:
            tag = normalize_reference(ref)
        except InvalidParameter:
            return None
        return next((i for i in self._images.values() if tag in i.repo_tags), None)

    def _by_id(self, ref: str) -> Image | None:
        prefix = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if not _HEX_RE.match(prefix):
            return None
        found = [i for i in self._images.values() if i.id[len("sha256:"):].startswith(prefix)]
        return found[0] if len(found) == 1 else None

    # -- writing ------------------------------------------------------------------------------

    def _write_meta(self, image: Image) -> None:
        meta = {"Id": image.id, "RepoTags": list(image.repo_tags), "Created": image.created,
                "Size": image.size, "Config": image.config}
        target = image.rootfs.parent / "image.json"
        tmp = target.with_name(f"{TMP_PREFIX}image.json")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, target)

    def _set_tags(self, image: Image, tags: tuple[str, ...]) -> Image:
        """Give ``image`` these tags; a tag held by another image moves (that image may become dangling)."""
        for other in list(self._images.values()):
            if other.id != image.id and set(other.repo_tags) & set(tags):
                self._store(replace(other, repo_tags=tuple(t for t in other.repo_tags if t not in tags)))
        merged = tuple(dict.fromkeys((*image.repo_tags, *tags)))
        return self._store(replace(image, repo_tags=merged))

    def _store(self, image: Image) -> Image:
        self._write_meta(image)
        self._images[image.id] = image
        return image

    def _new_tmp(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.directory))

    def _commit(self, tmp: Path, image_id: str, created: float, config: dict) -> Image:
        """Rename a fully extracted rootfs into place and record it (the caller holds the lock)."""
        final = self.directory / image_id[len("sha256:"):]
        image = Image(id=image_id, repo_tags=(), created=created, size=tree_size(tmp / "rootfs"),
                      rootfs=final / "rootfs", config=config)
        meta = replace(image, rootfs=tmp / "rootfs")
        self._write_meta(meta)
        os.rename(tmp, final)
        self._images[image_id] = image
        return image

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk or a read-only store as one clear line, not an internal error (the partial image
        is already gone: every writer removes its temporary directory on the way out)."""
        try:
            yield
        except OSError as err:
            raise KernelError(f"cannot write the image store {self.directory}: {err.strerror or err}") from None

    def import_tar(self, stream: BinaryIO, reference: str | None) -> Image:
        """A flat rootfs tarball (plain or compressed), like ``docker import``; no reference = untagged."""
        tag = normalize_reference(reference) if reference else None
        with self._writing():
            return self._import_tar(stream, tag)

    def _import_tar(self, stream: BinaryIO, tag: str | None) -> Image:
        tmp = self._new_tmp()
        try:
            reader = _HashingReader(stream)
            writer = LayerWriter(tmp / "rootfs")
            (tmp / "rootfs").mkdir(mode=0o755)
            try:
                with tarfile.open(fileobj=reader, mode="r|*") as tar:  # type: ignore[call-overload]
                    writer.apply(tar, layered=False)
            except (tarfile.TarError, EOFError) as err:
                raise InvalidParameter(f"Error processing tar file: {err}") from None
            writer.close()
            created = time.time()
            config = {"architecture": "amd64", "os": "linux", "created": _rfc3339(created), "config": {},
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + reader.sha.hexdigest()]}}
            image_id = "sha256:" + hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
            with self._lock:
                image = self._commit(tmp, image_id, created, {})
                return self._set_tags(image, (tag,)) if tag else image
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def load(self, stream: BinaryIO) -> list[Image]:
        """A ``docker save`` archive: every image of its manifest, layers applied in order, with tags."""
        with self._writing():
            return self._load(stream)

    def _load(self, stream: BinaryIO) -> list[Image]:
        with tempfile.TemporaryFile(dir=self.directory) as spool:
            shutil.copyfileobj(stream, spool, 1 << 20)  # layers need random access; the body is a stream
            spool.seek(0)
            try:
                with tarfile.open(fileobj=spool, mode="r:*") as archive:
                    return [self._load_one(archive, entry) for entry in self._manifest(archive)]
            except (tarfile.TarError, EOFError) as err:
                raise InvalidParameter(f"Error processing tar file: {err}") from None

    def _manifest(self, archive: tarfile.TarFile) -> list[dict]:
        try:
            member = archive.extractfile("manifest.json")
        except KeyError:
            member = None
        if member is None:
            raise InvalidParameter("invalid image archive: manifest.json not found (is this a docker save archive?)")
        manifest = json.loads(member.read())
        if not isinstance(manifest, list) or not all(isinstance(e, dict) and "Config" in e for e in manifest):
            raise InvalidParameter("invalid image archive: malformed manifest.json")
        return manifest

    def _blob(self, archive: tarfile.TarFile, name: str) -> BinaryIO:
        try:
            member = archive.extractfile(name)
        except KeyError:
            member = None
        if member is None:
            raise InvalidParameter(f"invalid image archive: {name} not found")
        return member  # type: ignore[return-value]

    def _load_one(self, archive: tarfile.TarFile, entry: dict) -> Image:
        raw_config = self._blob(archive, entry["Config"]).read()
        image_id = "sha256:" + hashlib.sha256(raw_config).hexdigest()
        tags = tuple(normalize_reference(t) for t in entry.get("RepoTags") or ())
        with self._lock:
            known = image_id in self._images
        if not known:
            self._extract_layers(archive, entry.get("Layers") or [], image_id, json.loads(raw_config))
        with self._lock:
            return self._set_tags(self._images[image_id], tags)

    def _extract_layers(self, archive: tarfile.TarFile, layers: list[str], image_id: str, config: dict) -> Image:
        tmp = self._new_tmp()
        try:
            (tmp / "rootfs").mkdir(mode=0o755)
            writer = LayerWriter(tmp / "rootfs")
            for name in layers:
                with tarfile.open(fileobj=self._blob(archive, name), mode="r|*") as layer:  # type: ignore[call-overload]
                    writer.apply(layer, layered=True)
            writer.close()
            container_config = config.get("config") or {}
            subset = {k: container_config[k] for k in CONFIG_KEYS if container_config.get(k)}
            with self._lock:
                if image_id in self._images:  # loaded concurrently by another request
                    shutil.rmtree(tmp, ignore_errors=True)
                    return self._images[image_id]
                return self._commit(tmp, image_id, _parse_time(config.get("created", "")), subset)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, ref: str, *, in_use_by: Callable[[str], str | None]) -> list[dict]:
        """``docker rmi``: untag a tag reference; delete the image when no tag is left and nothing uses it."""
        with self._lock:
            image = self.get(ref)
            short = image.id[len("sha256:"):][:12]
            tag = self._tag_of(image, ref)
            if tag is not None and len(image.repo_tags) > 1:
                self._store(replace(image, repo_tags=tuple(t for t in image.repo_tags if t != tag)))
                return [{"Untagged": tag}]
            if tag is None and len(image.repo_tags) > 1:
                raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is referenced in "
                               "multiple repositories")
            user = in_use_by(image.id)
            if user is not None:
                if tag is not None:
                    raise Conflict(f'conflict: unable to remove repository reference "{ref}" (must force) - '
                                   f"container {user[:12]} is using its referenced image {short}")
                raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is being used by "
                               f"container {user[:12]}")
            answer: list[dict] = [{"Untagged": t} for t in image.repo_tags]
            doomed = self.directory / f"{TMP_PREFIX}rm-{image.id[len('sha256:'):]}"
            os.rename(image.rootfs.parent, doomed)
            del self._images[image.id]
        shutil.rmtree(doomed, ignore_errors=True)
        return [*answer, {"Deleted": image.id}]

    def _tag_of(self, image: Image, ref: str) -> str | None:
        """The tag ``ref`` names, or None when it named the image by id."""
        if ref.startswith("sha256:"):
            return None
        try:
            tag = normalize_reference(ref)
        except InvalidParameter:
            return None
        return tag if tag in image.repo_tags else None
