"""Run a command inside a container: the body of ``berth-exec``, a process forked by ``forkserver.py``.

A process of its own because entering a mount namespace requires a single-threaded caller. The command,
its environment and working directory arrive with the fork server's request rather than in argv (argv is
world readable in /proc; env may hold secrets) or in an interpreter's environment (a container's
LD_PRELOAD or PYTHONPATH must not reach this Python). The namespaces are entered in the order that keeps
every later ``/proc`` path valid (mnt last), then a fork makes the command a member of the container's
pid namespace. The exit status is the command's (128+n if killed by signal n).
"""

from __future__ import annotations

import os
import signal
import sys

from berth.kernel import syscalls as sc
from berth.runtime.pathexec import ExecError, execute

NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")


def _enter(pid: int) -> None:
    fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in NAMESPACES]
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for fd in fds:
        sc.setns(fd, 0)
        os.close(fd)
    os.fchdir(root)
    os.chroot(".")
    os.close(root)


def _child(config: dict) -> None:
    sc.set_parent_death_signal(signal.SIGKILL)  # the exec ends if whoever runs it gives up on it
    workdir = config.get("workdir") or "/"
    try:
        os.chdir(workdir)
    except OSError as err:
        raise ExecError(f'chdir to cwd ("{workdir}") set in config.json failed: {os.strerror(err.errno or 0).lower()}',
                        126) from None
    execute(config["cmd"], config["env"])


def run(pid: int, config: dict) -> int:
    """Run ``config``'s command in the container whose init is ``pid``; return its exit status."""
    try:
        _enter(pid)
    except OSError as err:
        print(f"cannot enter container (pid {pid}): {err.strerror or err}", file=sys.stderr)
        return 126
    child = os.fork()
    if child == 0:
        try:
            _child(config)
        except ExecError as err:
            os.write(2, f"{err}\n".encode())
            os._exit(err.code)
        except BaseException as err:  # noqa: BLE001 - never return into the parent's code from a fork
            os.write(2, f"{err}\n".encode())
            os._exit(126)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code
