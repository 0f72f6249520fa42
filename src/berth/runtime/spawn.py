"""The runtime API the daemon uses: start, release, attach, logs, exit status, exec, kill, remove.

berthd is multi-threaded, and forking a threaded process into namespaces is unsafe (``unshare(NEWNS)``
even silently applies to one thread only), so every namespace operation happens in a helper process
forked by the single-threaded ``berth.runtime.forkserver``: one monitor per container (detached: it
outlives a daemon restart) and one ``nsexec`` helper per exec. Everything here is synchronous and keeps
no per-container state in memory, so any daemon thread may call it and a restarted daemon finds running
containers again from their run directories.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from berth.config import Paths
from berth.errors import BerthError, Conflict, KernelError
from berth.runtime import logs, unixsock
from berth.runtime.forkserver import EXEC_TITLE, MONITOR_TITLE, ForkServer

FORKSERVER_MODULE = "berth.runtime.forkserver"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class ContainerSpec:
    id: str                      # 64 hex
    rootfs: Path                 # image rootfs dir (overlay lowerdir); never modified
    cmd: list[str]
    env: list[str]
    workdir: str
    hostname: str
    netns: Path | None           # netns file to join; None = the daemon's (host mode)
    share_uts: bool              # host mode: keep the host's hostname
    open_stdin: bool
    state_dir: Path              # persistent: overlay upper/work, hosts, hostname, resolv.conf, logs
    run_dir: Path                # volatile: monitor.sock, exit.json, pid files
    etc_dir: Path | None = None  # where hosts/hostname/resolv.conf live (container:<id> mode); None = state_dir


@dataclass(frozen=True)
class Started:
    pid: int                     # the container's init, as seen from the host pid namespace
    monitor_pid: int


# The fork server needs only the stdlib and berth itself, so it runs with ``-S``: no site-packages scan
# and no .pth hooks.
_BERTH_ROOT = str(Path(__file__).resolve().parents[2])


def _helper_env() -> dict[str, str]:
    """The fork server's environment (so its helpers'): the daemon's own, never a container's."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_BERTH_ROOT, os.environ.get("PYTHONPATH")) if p)
    return env


class ExecProcess:
    """A command running in a container, as ``Runtime.exec`` returns it: ``Popen``'s shape for a process
    that is the fork server's child, not berthd's. Its exit status arrives on a pipe (the helper writes the
    command's status there as it exits); a helper gone without writing it was killed: 137, as Docker says."""

    def __init__(self, pid: int, stdin: BinaryIO | None, stdout: BinaryIO, stderr: BinaryIO, status_fd: int) -> None:
        self.pid = pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None
        self._status_fd = status_fd
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None  # done already; its status is in the pipe

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        poller = select.poll()
        poller.register(self._status_fd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        data = b""
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            if not poller.poll(left):
                raise subprocess.TimeoutExpired(EXEC_TITLE, timeout or 0)
            chunk = os.read(self._status_fd, 64)
            if not chunk:
                break
            data += chunk
        os.close(self._status_fd)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self.returncode = int(data) if data.isdigit() else 128 + signal.SIGKILL
        return self.returncode

    def kill(self) -> None:
        if self._pidfd is not None and self.returncode is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Runtime:
    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths.from_env()
        self._forkserver = ForkServer([sys.executable, "-S", "-m", FORKSERVER_MODULE], _helper_env())

    def close(self) -> None:
        """Stop the monitor fork server (running monitors are not its to stop)."""
        self._forkserver.close()

    # -- start and release ----------------------------------------------------------------------

    def start(self, spec: ContainerSpec) -> Started:
        """Spawn the monitor; return once the container's init exists, mounts done, held before exec."""
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        for d in (spec.state_dir, spec.state_dir / "upper", spec.state_dir / "work", spec.state_dir / "merged"):
            d.mkdir(parents=True, exist_ok=True)
        for stale in (spec.run_dir / "exit.json", spec.state_dir / "exit.json"):
            stale.unlink(missing_ok=True)
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()}
        config["etc_dir"] = str(spec.etc_dir or spec.state_dir)
        spec_path = spec.run_dir / "spec.json"
        spec_path.write_text(json.dumps(config))
        status_r, status_w = os.pipe()
        try:
            with open(spec.run_dir / "monitor.log", "ab") as errlog:
                monitor_pid = self._forkserver.monitor(spec.id, spec_path, status_w, errlog.fileno())
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        try:
            status = self._read_status(status_r)
        finally:
            os.close(status_r)
        if "pid" not in status:
            self._stop_silent(spec.id, monitor_pid)
            reason = status.get("error") or self._monitor_failure(spec.run_dir)
            raise KernelError(f"cannot start container {spec.id[:12]}: {reason}")
        return Started(pid=int(status["pid"]), monitor_pid=monitor_pid)

    @staticmethod
    def _read_status(fd: int) -> dict:
        """The monitor's one JSON status, read until it closes the pipe (it does on success and on exit)."""
        data = b""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            poller = select.poll()  # not select(): berthd holds a pidfd per container, fds pass 1024
            poller.register(fd, select.POLLIN)
            if left <= 0 or not poller.poll(left * 1000):
                return {"error": f"the container monitor did not report within {START_TIMEOUT:.0f}s"}
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        try:
            return json.loads(data) if data else {}
        except ValueError:
            return {"error": f"unreadable status from the container monitor: {data[:200]!r}"}

    def _stop_silent(self, container_id: str, monitor_pid: int) -> None:
        """A monitor that gave no status in time is stopped (one that reported an error exits by itself)."""
        if self.monitor_alive(container_id, monitor_pid):
            self.kill(monitor_pid, signal.SIGKILL)

    @staticmethod
    def _monitor_failure(run_dir: Path) -> str:
        try:
            lines = (run_dir / "monitor.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return f"container monitor failed: {lines[-1]}" if lines else "container monitor exited without a status"

    def release(self, spec_or_id: ContainerSpec | str) -> None:
        """Let the held container exec its command (after the daemon connected its attach clients)."""
        container_id = spec_or_id.id if isinstance(spec_or_id, ContainerSpec) else spec_or_id
        sock = self._connect(container_id, {"op": "release"})
        with sock:
            answer = sock.makefile("rb").readline()
        if not answer.startswith(b'{"ok":true}'):
            raise KernelError(f"cannot release container {container_id[:12]}: {answer.decode(errors='replace').strip()}")

    # -- streams ------------------------------------------------------------------------------

    def _connect(self, container_id: str, request: dict) -> socket.socket:
        path = self.paths.container_run_dir(container_id) / "monitor.sock"
        try:
            sock = unixsock.connect(path, timeout=5.0)
        except (FileNotFoundError, ConnectionRefusedError):
            raise Conflict(f"Container {container_id} is not running") from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        return sock

    def attach(self, container_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool,
               stream: bool) -> socket.socket:
        """A connection that yields Docker stream frames; bytes sent go to stdin, SHUT_WR closes it."""
        request = {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr, "logs": logs, "stream": stream}
        try:
            return self._connect(container_id, request)
        except Conflict:
            raise Conflict("You cannot attach to a stopped container, start it first") from None

    def logs(self, container_id: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             tail: int | None = None, timestamps: bool = False) -> Iterator[bytes]:
        """Frames from the json log; with ``follow`` on a running container, ends when it exits."""
        path = logs.log_path(self.paths.container_dir(container_id), container_id)
        entries, offset = logs.read_log(path)
        wanted = [e for e in entries if logs.render(e, stdout=stdout, stderr=stderr, timestamps=False)]
        if tail is not None:
            wanted = wanted[-tail:] if tail > 0 else []
        return self._log_frames(container_id, path, wanted, offset, stdout, stderr, follow, timestamps)

    def _log_frames(self, container_id: str, path: Path, history: list[dict], offset: int, stdout: bool,
                    stderr: bool, follow: bool, timestamps: bool) -> Iterator[bytes]:
        for entry in history:
            yield logs.render(entry, stdout=stdout, stderr=stderr, timestamps=timestamps)
        if not follow:
            return
        try:
            sock = self._connect(container_id, {"op": "logs", "offset": offset})
        except Conflict:  # exited meanwhile: whatever it wrote after our read is in the file
            live = iter([logs.read_log(path, offset)[0]])
        else:
            live = self._follow(sock)
        for batch in live:
            for entry in batch:
                framed = logs.render(entry, stdout=stdout, stderr=stderr, timestamps=timestamps)
                if framed:
                    yield framed

    @staticmethod
    def _follow(sock: socket.socket) -> Iterator[list[dict]]:
        with sock:
            rest = b""
            while chunk := sock.recv(65536):
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                yield list(logs.parse_lines(data[:cut]))

    # -- state --------------------------------------------------------------------------------

    def exit_status(self, container_id: str) -> tuple[int, str] | None:
        """(exit code, FinishedAt) once the container exited; the state dir copy survives a reboot."""
        for d in (self.paths.container_run_dir(container_id), self.paths.container_dir(container_id)):
            try:
                status = json.loads((d / "exit.json").read_text())
            except (OSError, ValueError):
                continue
            return int(status["ExitCode"]), str(status["FinishedAt"])
        return None

    def monitor_alive(self, container_id: str, monitor_pid: int) -> bool:
        """True if ``monitor_pid`` is still this container's monitor (a pid can be reused after a reboot)."""
        try:
            args = Path(f"/proc/{monitor_pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return args[:2] == [MONITOR_TITLE.encode(), container_id.encode()]

    def leftover(self, container_id: str) -> Started | None:
        """A live monitor of ``container_id`` that no record claims, found by the pid files it wrote.

        A berthd killed between spawning a container and recording it running leaves such a monitor
        (with its container held before exec); reconciliation stops it.
        """
        run_dir = self.paths.container_run_dir(container_id)
        try:
            monitor_pid = int((run_dir / "monitor.pid").read_text())
            pid = int((run_dir / "pid").read_text())
        except (OSError, ValueError):
            return None
        return Started(pid=pid, monitor_pid=monitor_pid) if self.monitor_alive(container_id, monitor_pid) else None

    def pidfd(self, monitor_pid: int) -> int:
        return os.pidfd_open(monitor_pid)

    def kill(self, pid: int, sig: int) -> None:
        """Signal the container's init. A process already gone is not an error: its exit is being reported."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def exec(self, pid: int, cmd: list[str], *, env: list[str], workdir: str, stdin: bool) -> ExecProcess:
        """Run ``cmd`` inside the container whose init is ``pid``; the exit code is the command's."""
        ours: list[int] = []
        theirs: list[int] = []
        try:
            for _ in range(4 if stdin else 3):
                r, w = os.pipe()
                ours.append(r)
                theirs.append(w)
            if stdin:  # the first pipe is the command's stdin: it reads, we write
                ours[0], theirs[0] = theirs[0], ours[0]
            else:
                ours.insert(0, -1)
                theirs.insert(0, os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
            config = {"cmd": cmd, "env": env, "workdir": workdir}
            helper = self._forkserver.exec(pid, config, (theirs[0], theirs[1], theirs[2]), theirs[3])
        except BaseException:
            for fd in ours:
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        stdin_w, stdout_r, stderr_r, status_r = ours
        return ExecProcess(helper, os.fdopen(stdin_w, "wb") if stdin_w >= 0 else None, os.fdopen(stdout_r, "rb"),
                           os.fdopen(stderr_r, "rb"), status_r)

    def remove(self, container_id: str) -> None:
        """Delete the container's files (it must not be running); files already gone count as removed."""
        errors: list[str] = []

        def failed(func: object, path: str, exc: tuple) -> None:
            if not isinstance(exc[1], FileNotFoundError):
                errors.append(f"{path}: {exc[1]}")

        for d in (self.paths.container_run_dir(container_id), self.paths.container_dir(container_id)):
            shutil.rmtree(d, onerror=failed)
        if errors:
            raise BerthError(f"cannot remove container {container_id[:12]}: {'; '.join(errors)}")
