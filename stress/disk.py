"""A full disk and a read-only state directory: every command fails with one clear line, and nothing
is half-done (the kernel and the store exactly as before); once space is back, everything works again.

berthd's state root is moved onto a small tmpfs mounted inside the throwaway host only, which is then
filled up (and later remounted read-only). Runs last: the state stays on that tmpfs.
"""

from __future__ import annotations

import json
from typing import Any

from stress import invariants, ops
from stress.report import cli_problem
from stress.stage import Stage

SCENARIO = "disk"
NET = ("stress-disk", "10.55.0.0/24")
TMPFS_SIZE = "48m"
ENDS_A_PROCESS = ("stop",)  # irreversible by nature: judged by the invariants once the disk has space


def _sh(stage: Stage, script: str) -> None:
    result = stage.host.run(["sh", "-c", script], timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{script}: {result.stderr.strip()}")


def _move_root_to_tmpfs(stage: Stage) -> None:
    root, tmp = stage.host.root, stage.host.tmp
    stage.host.stop_berthd()
    _sh(stage, f"mkdir -p {tmp}/disk-old && mount --bind {root} {tmp}/disk-old && "
               f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 tmpfs {root} && cp -a {tmp}/disk-old/. {root}/ && "
               f"umount {tmp}/disk-old && rmdir {tmp}/disk-old")
    stage.host.start_berthd()


def _state(stage: Stage) -> dict[str, Any]:
    """What must not change while commands fail: kernel objects and every record."""
    kernel = invariants.probe(stage.host)
    store = json.dumps(kernel["store"], sort_keys=True)
    procs = sorted(" ".join(p["argv"]) for p in kernel["processes"] if "probe.py" not in " ".join(p["argv"]))
    return {"links": sorted((l["name"], l["alias"], l["master"]) for l in kernel["links"]),
            "nft": kernel["nft"], "netns": kernel["netns"], "processes": procs, "store": store}


COMMANDS = (
    ("network", "create", "--subnet", "10.56.0.0/24", "stress-disk2"),
    ("run", "-d", "--name", "stress-disk-c2", "--network", NET[0], "-p", "18090:80", ops.IMAGE, "sleep", "600"),
    ("network", "connect", "bridge", "stress-disk-c1"),
    ("network", "disconnect", NET[0], "stress-disk-c1"),
    ("stop", "-t", "1", "stress-disk-c1"),
    ("rm", "-f", "stress-disk-c1"),
    ("network", "rm", NET[0]),
    ("import", "IMAGE", "stress-disk-image"),
)


def _try_all(stage: Stage, condition: str) -> None:
    """Every command under ``condition``: a clear failure, and the state exactly as before it."""
    report = stage.report
    refused = succeeded = 0
    for argv in COMMANDS:
        argv = tuple(str(stage.image_tar) if a == "IMAGE" else a for a in argv)
        before = _state(stage)
        result = stage.host.berth(*argv)
        after = _state(stage)
        what = f"{condition}: berth {' '.join(argv[:3])}"
        if result.returncode == 0:
            succeeded += 1  # nothing needed writing: fine, if it is whole (the invariants say)
            report.violation(SCENARIO, f"{what} succeeded on a state directory that cannot be written")
            continue
        refused += 1
        problem = cli_problem(result)
        if problem:
            report.violation(SCENARIO, f"{what}: {problem}")
        changed = [k for k in before if before[k] != after[k]]
        if changed and argv[0] in ENDS_A_PROCESS:
            # the process is gone whatever the disk says; its exit is recorded once space is back
            report.figure(SCENARIO, f"{condition}: {argv[0]} ended the container, recorded later", changed)
        elif changed:
            report.violation(SCENARIO, f"{what} failed but changed {', '.join(changed)}")
        report.figure(SCENARIO, f"{condition}: {' '.join(argv[:2])}", result.stderr.strip()[:140])
    report.figure(SCENARIO, f"{condition}: refused", f"{refused} of {len(COMMANDS)}")


def _read_only_start(stage: Stage) -> None:
    """berthd started on a read-only state directory: one clear line, a non-zero exit, the kernel untouched."""
    report, host, root = stage.report, stage.host, stage.host.root
    host.stop_berthd()
    before = _state(stage)
    _sh(stage, f"mount --bind {root} {root} && mount -o remount,bind,ro {root}")
    log_size = host.log.stat().st_size
    try:
        host.start_berthd(timeout=20)
        report.violation(SCENARIO, "berthd started on a read-only state directory")
        host.stop_berthd()
    except RuntimeError:
        lines = [l for l in host.log.read_bytes()[log_size:].decode(errors="replace").splitlines() if l.strip()]
        report.figure(SCENARIO, "read-only state directory: berthd", lines[-1][:160] if lines else "(nothing)")
        if len(lines) != 1 or "Traceback" in lines[0]:
            report.violation(SCENARIO, f"berthd on a read-only state directory said {len(lines)} lines: {lines[-3:]}")
    finally:
        _sh(stage, f"umount {root}")
    changed = [k for k, v in _state(stage).items() if v != before[k]]
    if changed:
        report.violation(SCENARIO, f"berthd on a read-only state directory changed {', '.join(changed)}")
    host.start_berthd()


def run(stage: Stage) -> None:
    report = stage.report
    _move_root_to_tmpfs(stage)
    api = stage.api()
    try:
        ops.create_network(api, *NET)
        started = ops.run_container(api, "stress-disk-c1", NET[0])
    finally:
        api.close()
    if not started.ok:
        report.violation(SCENARIO, f"setup: {started.message}")
        return
    root = stage.host.root
    # full: fill every block, then every inode the filler left
    stage.host.run(["sh", "-c", f"dd if=/dev/zero of={root}/filler bs=1M 2>/dev/null; "
                                f"dd if=/dev/zero of={root}/filler2 bs=4k 2>/dev/null; sync; true"], timeout=120)
    _try_all(stage, "full disk")
    _sh(stage, f"rm -f {root}/filler {root}/filler2")
    report.leaks(f"{SCENARIO} after the disk had space again",
                 invariants.check(stage.host, settle=15).violations)  # exits are retried every few seconds
    _read_only_start(stage)
    # space and writes are back: everything works again
    result = stage.host.berth(*[a for a in COMMANDS[1]])
    if result.returncode != 0:
        report.violation(SCENARIO, f"after the disk recovered, run failed: {result.stderr.strip()}")
    stage.settle(SCENARIO)
