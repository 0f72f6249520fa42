"""Anchors: the systems berth is measured against, and berth itself, one module each.

Every anchor returns samples (name -> list of measurements) or raises :class:`Skipped` with the reason
it cannot run here; the report prints that reason instead of a number. Work that must happen inside the
throwaway host (netlink, plugins, iperf3) runs there as ``python -m anchors.<module>``, which prints one
JSON line; that process's own start-up is never inside a timed region.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

BENCH_DIR = Path(__file__).resolve().parents[1]

Samples = dict[str, list[float]]


class Skipped(Exception):
    """This anchor cannot run on this machine; the message says why."""


class Box(Protocol):
    """What the anchors need of ``berth.testing.sandbox.Sandbox`` (kept as a protocol so that anchors
    that never touch berth do not import it)."""

    tmp: Path
    run_root: Path
    socket: Path

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = False, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]: ...

    def env(self) -> dict[str, str]: ...

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]: ...


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` took (perf_counter: monotonic, highest resolution)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def merge(into: Samples, more: Samples) -> None:
    for name, values in more.items():
        into.setdefault(name, []).extend(values)


def in_box(box: Box, module: str, *args: str, timeout: float = 900, own_netns: bool = False) -> dict:
    """Run ``anchors.<module>`` inside the throwaway host and return the JSON it printed last.

    ``own_netns`` gives the worker a network namespace of its own inside the host: its bridges and nft
    tables then never meet berthd's, and vanish with it. A worker that exits with status 3 declares
    itself skipped: its last stderr line is the reason.
    """
    env = {**box.env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))}
    prefix = ["unshare", "--net", "--"] if own_netns else []
    result = box.run([*prefix, sys.executable, "-m", f"anchors.{module}", *args], timeout=timeout, env=env)
    if result.returncode == 3:
        raise Skipped(result.stderr.strip().splitlines()[-1])
    if result.returncode != 0:
        raise RuntimeError(f"anchors.{module} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def skip_worker(reason: str) -> None:
    """Inside a worker: report 'skipped: reason' to :func:`in_box` and stop."""
    print(reason, file=sys.stderr)
    sys.exit(3)


def emit(data: object) -> None:
    """Inside a worker: hand the results to :func:`in_box`."""
    print(json.dumps(data))
