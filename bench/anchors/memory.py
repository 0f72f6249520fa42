"""Memory of berthd and of each container (its monitor process included), read from /proc inside the
throwaway host.

RSS counts shared pages (the interpreter, libraries) in full for every process; PSS divides them among
the processes sharing them, so PSS is the honest per-container cost and RSS the pessimistic one.
``python -m anchors.memory`` prints :func:`snapshot` (KiB).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from anchors import Box, emit, in_box


def take(box: Box) -> dict:
    """One :func:`snapshot` of the throwaway host's processes."""
    return in_box(box, "memory", timeout=120)


def record(box: Box, into: dict[str, list[float]], endpoints: int) -> None:
    """Add berthd's RSS and the per-container PSS/RSS (MiB) at ``endpoints`` attached endpoints."""
    snap = take(box)
    into.setdefault(f"berthd RSS, {endpoints} endpoints", []).append(snap["berthd_rss"] / 1024)
    if snap["containers"]:
        into.setdefault(f"per container PSS, {len(snap['containers'])} containers", []).extend(
            pss / 1024 for pss, _ in snap["containers"])
        into.setdefault(f"per container RSS, {len(snap['containers'])} containers", []).extend(
            rss / 1024 for _, rss in snap["containers"])


def _field(path: Path, key: str) -> int:
    """A ``Key:   N kB`` line of a /proc file, in KiB (0 when the process is gone)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def snapshot() -> dict:
    """berthd's RSS (with its monitor fork server) and each berth container (monitor and its descendants) as [PSS, RSS]; the same for a
    Docker daemon in the host: dockerd + containerd RSS, and each container-shim with its descendants."""
    procs: dict[int, tuple[str, int, int, int]] = {}  # pid -> (cmdline, ppid, pss, rss)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = _field(entry / "status", "PPid")
        pss, rss = _field(entry / "smaps_rollup", "Pss"), _field(entry / "status", "VmRSS")
        procs[int(entry.name)] = (cmdline, ppid, pss, rss)
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)

    def tree(pid: int) -> list[int]:
        out = [pid]
        for child in children.get(pid, []):
            out += tree(child)
        return out

    def program(cmd: str) -> str:
        return os.path.basename(cmd.split(" ", 1)[0])

    def trees(match: Callable[[str], bool]) -> list[list[int]]:
        found = []
        for pid, (cmd, _, _, _) in procs.items():
            if match(cmd):
                members = tree(pid)
                found.append([sum(procs[p][2] for p in members), sum(procs[p][3] for p in members)])
        return found

    return {
        "berthd_rss": sum(rss for cmd, _, _, rss in procs.values()
                          if "berth.api.daemon" in cmd or cmd.startswith("berth-forkserver ")),
        "containers": trees(lambda cmd: cmd.startswith("berth-monitor ")),
        "docker_daemons_rss": sum(rss for cmd, _, _, rss in procs.values()
                                  if program(cmd) in ("dockerd", "containerd")),
        "docker_containers": trees(lambda cmd: program(cmd).startswith("containerd-shim")),
    }


if __name__ == "__main__":
    emit(snapshot())
