"""Parsing of docker's repeated ``key=value`` flags and filters, and the y/N confirmation prompt."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from berth.cli.errors import CLIError

if TYPE_CHECKING:
    from berth.cli.context import Context


def key_values(items: list[str]) -> dict[str, str]:
    """docker's MapOpts: ``k=v`` pairs in flag order; a bare ``k`` means an empty value."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def filters_query(items: list[str]) -> dict[str, Any] | None:
    """``-f k=v``… as the ``filters`` query parameter, in the docker CLI's form ``{"k":{"v":true}}``."""
    if not items:
        return None
    filters: dict[str, dict[str, bool]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError("bad format of filter (expected name=value)")
        filters.setdefault(key.strip().lower(), {})[value.strip()] = True
    return {"filters": json.dumps(filters, separators=(",", ":"))}


def prompt_yes(ctx: "Context", message: str) -> bool:
    """Ask ``message``; only an answer of y (any case) confirms, as docker's PromptForConfirmation."""
    ctx.out(message)
    line = ctx.stdin.readline()
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    return line.strip().lower() == "y"
