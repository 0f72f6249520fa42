"""``berth daemon start|stop|status``: run berthd in the background and find it again by its pidfile."""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING, Any

from berth.cli.context import run_root
from berth.cli.errors import CLIError

if TYPE_CHECKING:
    from berth.cli.context import Context

START_TIMEOUT = 10.0
STOP_TIMEOUT = 20.0
POLL = 0.05


def ping(socket_path: str) -> bool:
    """Does a daemon answer ``GET /_ping`` on this socket?"""
    from berth.cli.client import Connection

    conn = Connection(socket_path)
    try:
        resp = conn.request("GET", "/_ping")
        return resp.status == 200 and resp.read().strip() == b"OK"
    except CLIError:
        return False
    finally:
        conn.close()


def pid_of(run: str) -> int | None:
    """The pid in ``<run>/berthd.pid`` if that process is alive and is a berth daemon (not a reused pid)."""
    try:
        with open(os.path.join(run, "berthd.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError):
        return None
    return pid if b"berth" in cmdline else None


def _log_tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, "rb") as f:
            tail = f.read().decode("utf-8", "replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return "".join("\n  " + line for line in tail)


def cmd_start(ctx: "Context", args: argparse.Namespace) -> int:
    import subprocess
    import sys

    run = run_root(ctx.run)
    sock = os.path.join(run, "berth.sock")
    pid = pid_of(run)
    if pid is not None and ping(sock):
        ctx.out(f"berthd is already running (pid {pid})\n")
        return 0
    from berth.config import Paths

    paths = Paths.from_env(ctx.root, run)
    os.makedirs(run, mode=0o700, exist_ok=True)
    command = [sys.executable, "-m", "berth.api.daemon", "--root", str(paths.root), "--run-root", str(paths.run)]
    if args.log_level:
        command += ["--log-level", args.log_level]
    if args.cni_config_dir is not None:
        command += ["--cni-config-dir", args.cni_config_dir]
    logfile = str(paths.logfile)
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not ping(sock):
        code = proc.poll()
        if code is not None:
            raise CLIError(f"berthd exited with status {code}; see {logfile}:{_log_tail(logfile)}")
        if time.monotonic() > deadline:
            raise CLIError(f"berthd (pid {proc.pid}) did not answer on unix://{sock} within {START_TIMEOUT:.0f} s; "
                           f"see {logfile}")
        time.sleep(POLL)
    ctx.out(f"berthd started (pid {proc.pid})\n")
    return 0


def cmd_stop(ctx: "Context", args: argparse.Namespace) -> int:
    import signal

    run = run_root(ctx.run)
    pid = pid_of(run)
    if pid is None:
        ctx.out("berthd is not running\n")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        ctx.out("berthd is not running\n")
        return 0
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid):
        if time.monotonic() > deadline:
            raise CLIError(f"berthd (pid {pid}) is still running {STOP_TIMEOUT:.0f} s after SIGTERM")
        time.sleep(POLL)
    ctx.out(f"berthd stopped (pid {pid})\n")
    return 0


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def cmd_status(ctx: "Context", args: argparse.Namespace) -> int:
    run = run_root(ctx.run)
    sock = ctx.socket_path
    pid = pid_of(run)
    answering = ping(sock)
    if answering:
        ctx.out(f"berthd is running (pid {pid if pid is not None else 'unknown'}, socket unix://{sock})\n")
        return 0
    if pid is not None:
        ctx.out(f"berthd (pid {pid}) is not answering on unix://{sock}\n")
        return 1
    ctx.out(f"berthd is stopped (socket unix://{sock})\n")
    return 1


def register(commands: Any) -> None:
    daemon = commands.add_parser("daemon", help="Start, stop or check berthd")
    sub = daemon.add_subparsers(dest="daemon_command", metavar="COMMAND", required=True)
    p = sub.add_parser("start", help="Start berthd in the background")
    p.add_argument("--root", dest="daemon_root", help="state directory (default /var/lib/berth, env BERTH_ROOT)")
    p.add_argument("--run-root", dest="daemon_run", help="runtime directory (default /run/berth, env BERTH_RUN)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="berthd's log level")
    p.add_argument("--cni-config-dir", help="CNI network configurations offered as cni networks "
                                            "(default /etc/cni/net.d; empty: none)")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", help="Stop berthd (SIGTERM) and wait until it is gone")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("status", help="Tell whether berthd is running")
    p.set_defaults(func=cmd_status)
