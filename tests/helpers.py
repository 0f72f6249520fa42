"""Assertions and probes shared by the whole-system tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable


def ok(result: Any) -> str:
    """The stdout of a command that must succeed (the assertion shows stderr when it does not)."""
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}{result.stdout}"
    return result.stdout


def fails(result: Any, message: str) -> None:
    """A command that must fail with exactly one clear line on stderr containing ``message``."""
    assert result.returncode != 0, f"unexpectedly succeeded: {result.stdout}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def poll(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until ``check()`` is truthy; fail with its last value at the deadline."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout}s"
    return value


def inspect(host: Any, *args: str) -> Any:
    return json.loads(ok(host.berth(*args)))


def kernel_snapshot(host: Any, root_run: Path) -> dict[str, Any]:
    """Links, addresses, routes, nft ruleset and netns files of the throwaway host, for before/after checks."""
    links = json.loads(ok(host.run(["ip", "-j", "addr"])))
    compact = sorted(
        (l["ifname"], l.get("master", ""), l.get("operstate", ""),
         tuple(sorted(f'{a["local"]}/{a["prefixlen"]}' for a in l.get("addr_info", []) if a.get("scope") != "link")))
        for l in links
    )
    routes = ok(host.run(["ip", "route"]))
    ruleset = ok(host.run(["nft", "list", "ruleset"]))
    netns_dir = root_run / "netns"
    files = sorted(p.name for p in netns_dir.iterdir()) if netns_dir.is_dir() else []
    return {"links": compact, "routes": routes, "nft": ruleset, "netns": files}
