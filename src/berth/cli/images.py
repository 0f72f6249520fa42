"""Image commands: import (rootfs tarball), load (``docker save`` archive), images, rmi."""

from __future__ import annotations

import argparse
import json
import time
from typing import IO, TYPE_CHECKING, Any, Iterator

from berth.cli.client import path_quote
from berth.cli.errors import CLIError, DaemonError
from berth.cli.render import Row, format_rows, human_size
from berth.units import human_duration

if TYPE_CHECKING:
    from berth.cli.context import Context

IMAGES_FIELDS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
                 "CreatedAt": "CREATED AT", "Size": "SIZE", "Digest": "DIGEST", "Containers": "CONTAINERS"}
IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def _messages(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The daemon's JSON progress messages; an ``error`` message ends the command with its text."""
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            raise CLIError(f"invalid progress message from the daemon: {line[:200]!r}") from None
        if message.get("error"):
            raise CLIError(str(message["error"]))
        yield message


def _open_source(path: str | None, ctx: "Context") -> IO[bytes]:
    if path in (None, "-"):
        if ctx.stdin.isatty():
            raise CLIError("requested load from stdin, but stdin is empty")
        return ctx.stdin
    try:
        return open(path, "rb")  # type: ignore[arg-type]
    except OSError as err:
        raise CLIError(f"open {path}: {err.strerror.lower() if err.strerror else err}") from None


def cmd_import(ctx: "Context", args: argparse.Namespace) -> int:
    source = _open_source(args.file, ctx)
    query = {"fromSrc": "-", "repo": args.reference, "message": args.message}
    try:
        resp = ctx.client.send("POST", "/images/create", query, body=source,
                               headers={"Content-Type": "application/x-tar"})
        for message in _messages(resp.lines()):
            if message.get("status"):
                ctx.out(message["status"] + "\n")
    finally:
        if source is not ctx.stdin:
            source.close()
    return 0


def cmd_load(ctx: "Context", args: argparse.Namespace) -> int:
    source = _open_source(args.input, ctx)
    try:
        resp = ctx.client.send("POST", "/images/load", {"quiet": 1 if args.quiet else 0}, body=source,
                               headers={"Content-Type": "application/x-tar"})
        for message in _messages(resp.lines()):
            if message.get("stream"):
                ctx.out(message["stream"])
    finally:
        if source is not ctx.stdin:
            source.close()
    return 0


class ImageRow(Row):
    FIELDS = IMAGES_FIELDS
    type_name = "formatter.imageContext"

    def __init__(self, image: dict[str, Any], repo: str, tag: str, trunc: bool, now: float) -> None:
        self._i, self.Repository, self.Tag, self._trunc, self._now = image, repo, tag, trunc, now

    @property
    def ID(self) -> str:
        image_id = self._i.get("Id", "")
        return image_id[len("sha256:"):][:12] if self._trunc and image_id.startswith("sha256:") else image_id

    @property
    def CreatedSince(self) -> str:
        return human_duration(self._now - self._i.get("Created", 0)) + " ago"

    @property
    def CreatedAt(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(self._i.get("Created", 0)))

    @property
    def Size(self) -> str:
        return human_size(self._i.get("Size", 0))

    @property
    def Digest(self) -> str:
        return "<none>"

    @property
    def Containers(self) -> str:
        count = self._i.get("Containers", -1)
        return "N/A" if count < 0 else str(count)


def image_rows(images: list[dict[str, Any]], trunc: bool, now: float) -> list[ImageRow]:
    """One row per repository:tag (``<none>`` for untagged images), as ``docker images`` lists them."""
    rows = []
    for image in images:
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        for tag in tags or ["<none>:<none>"]:
            repo, _, name = tag.rpartition(":")
            rows.append(ImageRow(image, repo, name, trunc, now))
    return rows


def cmd_images(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.options import filters_query

    query = filters_query(args.filter + ([f"reference={args.reference}"] if args.reference else []))
    images = ctx.client.get("/images/json", query) or []
    if args.quiet:
        seen: list[str] = []
        for row in image_rows(images, not args.no_trunc, time.time()):
            if row.ID not in seen:
                seen.append(row.ID)
        ctx.out("".join(i + "\n" for i in seen))
        return 0
    ctx.out(format_rows(image_rows(images, not args.no_trunc, time.time()), args.format, IMAGES_TABLE, IMAGES_FIELDS))
    return 0


def cmd_rmi(ctx: "Context", args: argparse.Namespace) -> int:
    status = 0
    for ref in args.images:
        try:
            report = ctx.client.delete(f"/images/{path_quote(ref)}", {"force": 1 if args.force else None})
        except DaemonError as err:
            ctx.err(err.message + "\n")
            status = 1
            continue
        for item in report or []:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    ctx.out(f"{key}: {item[key]}\n")
    return status


def register(commands: Any) -> None:
    p = commands.add_parser("import", help="Import the contents from a tarball to create a filesystem image")
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument("file", metavar="file|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_import)

    p = commands.add_parser("load", help="Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.set_defaults(func=cmd_load)

    p = commands.add_parser("images", help="List images")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_images)

    p = commands.add_parser("rmi", help="Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)

