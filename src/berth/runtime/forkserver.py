"""Container monitors and exec helpers forked from one preloaded process, so they share its memory.

Every running container has a monitor (see ``monitor.py``). Exec'd one by one, each would load its own
interpreter and modules: about 6 MiB of private memory per container, more than Docker's Go shim. Forked
from a single process that has already imported everything a monitor runs (and frozen its objects out of
the garbage collector's reach, so collections do not copy the pages), a monitor starts in a couple of
milliseconds and owns only the pages it writes: about 1 MiB.

``berth exec`` helpers (``nsexec.py``) come from it too: forked, one starts in a millisecond where an
exec'd interpreter took tens.

berthd starts the fork server on first use and talks to it over a socket pair: one datagram per process
(a monitor: container id and spec path; an exec: the container's init pid and the command), with the
process's pipes attached as file descriptors; the answer is the new process's pid. The server is single-threaded
(forking is only safe from a single-threaded process, which berthd is not), reaps its monitors, and exits
when berthd's end closes. Monitors live on without it, as they live on without berthd: after a restart
they are children of init, found again from their run directories.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path

from berth.errors import KernelError

MONITOR_TITLE = "berth-monitor"  # argv[0] of every monitor: ``berth-monitor <container-id>`` in ps
EXEC_TITLE = "berth-exec"        # ``berth-exec <container-init-pid>``
SERVER_TITLE = "berth-forkserver"
# Room in the server's own argument area for a monitor's title (its children's command line is written
# over it): "berth-monitor", a 64-hex id, separators, plus a margin.
_TITLE_ROOM = " " * 96
_MAX_REQUEST = 128 * 1024  # an exec's command and environment travel in the request; fits a socket buffer
_MAX_FDS = 4
ANSWER_TIMEOUT = 10.0  # a fork takes milliseconds; a server that does not answer is stuck, and replaced


class ForkServer:
    """berthd's end: starts the server when first needed (again if it died) and asks it for processes."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self._command = command
        self._env = env
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None

    def monitor(self, container_id: str, spec_path: Path, status_fd: int, stderr_fd: int) -> int:
        """Fork a monitor for ``container_id``; it reports on ``status_fd`` as an exec'd one would."""
        return self._fork({"op": "monitor", "id": container_id, "spec": str(spec_path)}, [status_fd, stderr_fd])

    def exec(self, pid: int, config: dict, stdio: tuple[int, int, int], status_fd: int) -> int:
        """Fork a helper that runs ``config``'s command in the container whose init is ``pid``, on ``stdio``;
        it writes the command's exit status on ``status_fd`` before it exits."""
        return self._fork({"op": "exec", "pid": pid, "config": config}, [*stdio, status_fd])

    def _fork(self, message: dict, fds: list[int]) -> int:
        what = "a container monitor" if message["op"] == "monitor" else "an exec"
        request = json.dumps(message).encode()
        if len(request) > _MAX_REQUEST:
            raise KernelError(f"cannot start {what}: its request of {len(request)} bytes is over {_MAX_REQUEST}")
        with self._lock:
            for attempt in (1, 2):
                sock = self._connected()
                try:
                    socket.send_fds(sock, [request], fds)
                except (BrokenPipeError, ConnectionResetError):
                    self._forget()  # died since the last request; this one was not delivered: start anew
                    if attempt == 2:
                        raise KernelError("the fork server exits as soon as it starts") from None
                    continue
                try:
                    sock.settimeout(ANSWER_TIMEOUT)
                    answer = sock.recv(_MAX_REQUEST)
                except TimeoutError:
                    answer = b""
                    self._kill()
                if not answer:
                    self._forget()
                    raise KernelError(f"the fork server stopped answering while starting {what}")
                break
        reply = json.loads(answer)
        if "error" in reply:
            raise KernelError(f"the fork server cannot start {what}: {reply['error']}")
        return int(reply["pid"])

    def _connected(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._forget()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [*self._command, str(theirs.fileno()), _TITLE_ROOM], pass_fds=(theirs.fileno(),),
                start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/",
                env=self._env,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        return ours

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def _forget(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            self._proc.wait()  # its end is closed: it exits, if it has not already
            self._proc = None

    def close(self) -> None:
        with self._lock:
            self._forget()


# -- the server process ----------------------------------------------------------------------------

def _preload() -> None:
    """Import everything a forked process runs, then keep the collector off these objects for good."""
    import berth.runtime.monitor  # noqa: F401 - loaded here so forked processes share it
    import berth.runtime.nsexec  # noqa: F401

    gc.collect()
    gc.freeze()


def _child(sock: socket.socket, wakeup_r: int, request: dict, fds: list[int]) -> None:
    """The forked child: leave the server's loop behind, become the process asked for, never return."""
    code = 126
    try:
        sock.close()
        os.close(wakeup_r)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        from berth.kernel import syscalls

        if request["op"] == "monitor":
            status_fd, stderr_fd = fds
            null = os.open("/dev/null", os.O_RDWR)
            _stdio(null, null, stderr_fd)
            os.setsid()  # detached: it outlives berthd and this server
            syscalls.set_process_title([MONITOR_TITLE, request["id"]], MONITOR_TITLE)
            from berth.runtime import monitor

            code = monitor.run(Path(request["spec"]), status_fd)
        else:
            *stdio, status_fd = fds
            _stdio(*stdio)
            syscalls.set_process_title([EXEC_TITLE, str(request["pid"])], EXEC_TITLE)
            from berth.runtime import nsexec

            code = nsexec.run(int(request["pid"]), request["config"])
            os.write(status_fd, str(code).encode())
    except BaseException:  # noqa: BLE001 - whatever happened, the child must not return into the server
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _stdio(stdin: int, stdout: int, stderr: int) -> None:
    """Make the three descriptors this process's 0, 1 and 2 (and only those)."""
    for target, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, target)
    for fd in {stdin, stdout, stderr} - {0, 1, 2}:
        os.close(fd)


def _serve(sock: socket.socket) -> None:
    wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wakeup_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fd == wakeup_r:
                while True:
                    try:
                        if not os.read(wakeup_r, 4096):
                            break
                    except BlockingIOError:
                        break
                reap_children()
                continue
            message, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, _MAX_FDS, socket.MSG_CMSG_CLOEXEC)
            if not message:
                return
            try:
                request = json.loads(message)
                if len(fds) != {"monitor": 2, "exec": 4}[request["op"]]:
                    raise ValueError(f"{request['op']} needs other descriptors than the {len(fds)} sent")
                pid = os.fork()
                if pid == 0:
                    _child(sock, wakeup_r, request, fds)
                reply = {"pid": pid}
            except (ValueError, KeyError, TypeError, OSError) as err:
                reply = {"error": str(err)}
            for fd in fds:
                os.close(fd)
            try:
                sock.send(json.dumps(reply).encode())
            except OSError:  # berthd is gone; its monitors are not ours to stop
                return


def reap_children() -> None:
    """Reap every child that has exited, without waiting for the others (after a SIGCHLD: several exits
    may have been folded into one signal)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    """``python -m berth.runtime.forkserver <socket-fd> <title room>``, started by ``ForkServer``."""
    sock = socket.socket(fileno=int(argv[0]))
    from berth.kernel import syscalls

    syscalls.set_process_title([SERVER_TITLE], SERVER_TITLE)
    # Orphans of its children (a command whose exec helper was killed) come here to be reaped; left to
    # an init that does not reap, one zombie would keep its container's pid namespace from ever ending.
    syscalls.set_child_subreaper()
    _preload()
    _serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
