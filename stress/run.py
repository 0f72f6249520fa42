#!/usr/bin/env python3
"""Run berth's stress suite in one throwaway host and print its report (exit 1 on any violation).

    stress/run.py --profile quick|long [--seconds N] [--clients N] [--only SCENARIO ...]

``quick`` is what CI runs (tests/integration/test_stress_quick.py); ``long`` prints the figures quoted
in stress/README.md. Needs root (namespaces); never touches this machine's own network namespace.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from berth.testing.images import busybox_rootfs_tar  # noqa: E402
from berth.testing.sandbox import Sandbox  # noqa: E402

from stress import api as stress_api  # noqa: E402
from stress import archives, concurrency, crashes, disk, hostile, limits, swagger  # noqa: E402
from stress.ops import IMAGE  # noqa: E402
from stress.report import Report  # noqa: E402
from stress.stage import PROFILES, Stage  # noqa: E402

SCENARIOS: dict[str, Callable[[Stage], None]] = {  # in this order; disk last: it leaves the state on a tmpfs
    "concurrency": concurrency.run,
    "crashes": crashes.run,
    "hostile": hostile.run,
    "swagger": swagger.run,
    "archives": archives.run,
    "limits": limits.run,
    "disk": disk.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--seconds", type=float, help="length of the concurrency phase")
    parser.add_argument("--clients", type=int, help="parallel clients in the concurrency phase")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("stress: needs root (it builds a throwaway host with namespaces)", file=sys.stderr)
        return 2
    profile = PROFILES[args.profile]
    overrides = {k: v for k, v in (("seconds", args.seconds), ("clients", args.clients)) if v}
    if overrides:
        profile = type(profile)(**{**profile.__dict__, **overrides})
    socket.setdefaulttimeout(stress_api.TIMEOUT)  # a request unanswered this long is a hang, not a wait
    report = Report()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-stress-") as tmp, Sandbox() as host:
        tar = busybox_rootfs_tar(Path(tmp) / "bb.tar")
        host.start_berthd()
        imported = host.berth("import", str(tar), IMAGE)
        if imported.returncode != 0:
            print(f"stress: cannot import the busybox image: {imported.stderr.strip()}", file=sys.stderr)
            return 2
        stage = Stage(host, profile, report, tar)
        for name in args.only or SCENARIOS:
            t0 = time.monotonic()
            try:
                SCENARIOS[name](stage)
            except Exception:  # noqa: BLE001 - a broken scenario is a finding, and the others still run
                report.violation(name, "scenario failed: " + traceback.format_exc().strip().splitlines()[-1])
                traceback.print_exc()
            report.figure("time", name, f"{time.monotonic() - t0:.1f} s")
    report.figure("time", "total", f"{time.monotonic() - started:.1f} s (profile {profile.name})")
    print(report.render())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
