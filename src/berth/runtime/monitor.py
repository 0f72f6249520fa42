"""The per-container monitor, shown as ``berth-monitor <container-id>`` (forked by ``forkserver.py``).

One small process per container, detached from berthd (own session), so containers outlive a daemon
restart and a threaded daemon never forks into namespaces itself. It spawns the container (see
``container.py``), reports ``{"pid": N}`` or ``{"error": "..."}`` on the status fd, then, in a single
thread driven by a selector:

- copies the container's stdout/stderr into the json-file log and to attached clients;
- serves ``<run_dir>/monitor.sock``: each connection sends one JSON request line
  (``attach``, ``release`` or ``logs``), then is served as described in ``_request``;
- when the container's init exits and its output is drained, writes ``exit.json`` (run dir, and a
  copy in the state dir that survives a reboot), delivers what clients still have pending, and exits.

Being per container, it stays lean: stdlib plus ctypes, no threads, no pyroute2.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import time
from pathlib import Path
from typing import Callable

from berth.kernel import syscalls as sc
from berth.runtime import container, logs, unixsock

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
# Output pipes normally close with the pid namespace; if something holds them open, stop waiting.
DRAIN_TIMEOUT = 5.0
# How long a slow client may take to receive its last bytes after the container exited.
FLUSH_TIMEOUT = 10.0


class SpawnError(Exception):
    """The container could not be set up; the message says what the kernel refused."""


class Client:
    """One connection to the monitor socket and what it asked for."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.out = bytearray()
        self.op = ""
        self.streams: set[int] = set()
        self.stdin = False
        self.live = False
        self.reading = True
        self.closing = False
        self.registered = False


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Monitor:
    def __init__(self, spec: dict, status_fd: int) -> None:
        self.spec = spec
        self.status_fd = status_fd
        self.run_dir = Path(spec["run_dir"])
        self.state_dir = Path(spec["state_dir"])
        self.sel = selectors.DefaultSelector()
        self.clients: list[Client] = []
        self.pid = 0
        self.exit_code: int | None = None
        self.exec_error = ""
        self.report_buf = b""
        self.stdin_fd: int | None = None
        self.stdin_buf = bytearray()
        self.stdin_eof = False
        self.open_outputs = 0

    # -- spawn --------------------------------------------------------------------------------

    def spawn(self) -> int:
        """Fork the container as pid 1 of a new pid namespace and wait until it is held before exec.

        Unsharing the pid namespace here (the monitor is single-threaded) makes the next child its pid 1,
        so one fork suffices and the monitor is the init's real parent: it can wait for it directly.
        """
        sc.set_child_subreaper()
        sc.unshare(sc.CLONE_NEWPID)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if self.spec["open_stdin"]:
            in_r, self.stdin_fd = os.pipe()
        else:
            in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        report_r, report_w = os.pipe()
        self.release_r, self.release_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(self.status_fd)  # the daemon waits for EOF on it: only the monitor may hold it
            container.run(self.spec, (in_r, out_w, err_w), report_w, self.release_r)
        for fd in (in_r, out_w, err_w, report_w, self.release_r):
            os.close(fd)
        self.pid = pid
        line = self._read_line(report_r)
        if line != "ready":
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            reason = line.split(":", 1)[1] if ":" in line else "container setup exited without saying why"
            raise SpawnError(reason)
        self.log = logs.LogWriter(logs.log_path(self.state_dir, self.spec["id"]))
        self.listener = unixsock.listen(self.run_dir / "monitor.sock")
        self.listener.setblocking(False)
        (self.run_dir / "pid").write_text(f"{pid}\n")
        (self.run_dir / "monitor.pid").write_text(f"{os.getpid()}\n")
        self.sel.register(self.listener, READ, self._accept)
        for fd, stream in ((out_r, logs.STDOUT), (err_r, logs.STDERR)):
            self.sel.register(fd, READ, lambda mask, fd=fd, stream=stream: self._output(fd, stream))
        self.open_outputs = 2
        self.sel.register(report_r, READ, lambda mask: self._report(report_r))
        self.pidfd = os.pidfd_open(pid)
        self.sel.register(self.pidfd, READ, self._exited)
        if self.stdin_fd is not None:
            os.set_blocking(self.stdin_fd, False)
        return pid

    @staticmethod
    def _read_line(fd: int) -> str:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()

    # -- the loop -----------------------------------------------------------------------------

    def serve(self) -> None:
        drain_deadline: float | None = None
        while True:
            timeout = None
            if self.exit_code is not None:
                if not self.open_outputs:
                    break
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + DRAIN_TIMEOUT
                timeout = drain_deadline - time.monotonic()
                if timeout <= 0:
                    break
            for key, mask in self.sel.select(timeout):
                key.data(mask)
        self._finish()

    def _finish(self) -> None:
        """Record the exit, then give every client its remaining output and EOF."""
        self._to_followers(self.log.flush())
        self.log.close()
        status = {"ExitCode": self.exit_code, "FinishedAt": logs.rfc3339_nano()}
        if self.exec_error:
            status["Error"] = self.exec_error
        data = json.dumps(status).encode()
        atomic_write(self.run_dir / "exit.json", data)
        atomic_write(self.state_dir / "exit.json", data)
        try:
            (self.run_dir / "monitor.sock").unlink()
        except FileNotFoundError:
            pass
        self.sel.unregister(self.listener)
        self.listener.close()
        for client in list(self.clients):
            client.reading, client.closing = False, True
            self._update(client)
        deadline = time.monotonic() + FLUSH_TIMEOUT
        while self.clients and time.monotonic() < deadline:
            for key, mask in self.sel.select(max(0.0, deadline - time.monotonic())):
                key.data(mask)

    # -- container events ---------------------------------------------------------------------

    def _output(self, fd: int, stream: int) -> None:
        data = os.read(fd, 65536)
        if not data:
            self.sel.unregister(fd)
            os.close(fd)
            self.open_outputs -= 1
            return
        self._emit(stream, data)

    def _emit(self, stream: int, data: bytes) -> None:
        self._to_followers(self.log.write(stream, data))
        framed = logs.frame(stream, data)
        for client in self.clients:
            if client.live and stream in client.streams:
                self._send(client, framed)

    def _to_followers(self, lines: bytes) -> None:
        if lines:
            for client in self.clients:
                if client.op == "logs":
                    self._send(client, lines)

    def _report(self, fd: int) -> None:
        """After release the report pipe closes on a successful exec, or carries Docker's exec error."""
        chunk = os.read(fd, 4096)
        if chunk:
            self.report_buf += chunk
            return
        self.sel.unregister(fd)
        os.close(fd)
        line = self.report_buf.decode(errors="replace").strip()
        if line.startswith("exec:"):
            self.exec_error = line.split(":", 2)[2]
            self._emit(logs.STDERR, self.exec_error.encode() + b"\n")

    def _exited(self, mask: int) -> None:
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self.exit_code = code if code >= 0 else 128 - code
        self.sel.unregister(self.pidfd)
        os.close(self.pidfd)
        self._close_stdin()

    # -- clients ------------------------------------------------------------------------------

    def _accept(self, mask: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        client = Client(sock)
        self.clients.append(client)
        self._update(client)

    def _update(self, client: Client) -> None:
        """(Re)register a client for what it currently needs; close it once it is done."""
        if client.closing and not client.out:
            self._drop(client)
            return
        events = (READ if client.reading else 0) | (WRITE if client.out else 0)
        handler: Callable[[int], None] = lambda mask, c=client: self._client_event(c, mask)
        if events and client.registered:
            self.sel.modify(client.sock, events, handler)
        elif events:
            self.sel.register(client.sock, events, handler)
        elif client.registered:
            self.sel.unregister(client.sock)
        client.registered = bool(events)

    def _drop(self, client: Client) -> None:
        if client.registered:
            self.sel.unregister(client.sock)
            client.registered = False
        if client.stdin:
            self._stdin_eof()
        client.sock.close()
        if client in self.clients:
            self.clients.remove(client)

    def _send(self, client: Client, data: bytes) -> None:
        client.out += data
        self._update(client)

    def _client_event(self, client: Client, mask: int) -> None:
        try:
            if mask & WRITE and client.out:
                sent = client.sock.send(client.out)
                del client.out[:sent]
            if mask & READ:
                data = client.sock.recv(65536)
                if not data:
                    client.reading = False
                    if client.stdin:
                        client.stdin = False
                        self._stdin_eof()
                    if not client.op:
                        client.closing = True
                elif not client.op:
                    client.inbuf += data
                    if b"\n" in client.inbuf:
                        line, rest = client.inbuf.split(b"\n", 1)
                        client.inbuf = b""
                        self._request(client, line, rest)
                elif client.stdin:
                    self._stdin(data)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            client.out.clear()
            client.closing = True
        self._update(client)

    def _request(self, client: Client, line: bytes, rest: bytes) -> None:
        """``release``: let the container exec. ``attach``: Docker's multiplexed stream (history if ``logs``,
        live output if ``stream``; bytes sent are the container's stdin, SHUT_WR closes it). ``logs``:
        raw json-file lines from ``offset``, then each new line until the container exits."""
        try:
            req = json.loads(line)
            op = req["op"]
        except (ValueError, KeyError, TypeError):
            self._reply_error(client, "bad request")
            return
        client.op = op
        if op == "release":
            self._release()
            client.reading, client.closing = False, True
            self._send(client, b'{"ok":true}\n')
        elif op == "attach":
            client.streams = {s for s, flag in ((logs.STDOUT, req.get("stdout")), (logs.STDERR, req.get("stderr"))) if flag}
            client.stdin = bool(req.get("stdin")) and self.stdin_fd is not None
            client.reading = client.stdin
            if req.get("logs"):
                self._history(client)
            client.live = bool(req.get("stream")) and self.exit_code is None
            client.closing = not client.live
            if rest and client.stdin:
                self._stdin(rest)
        elif op == "logs":
            client.reading = False
            with open(self.log.path, "rb") as f:
                f.seek(int(req.get("offset", 0)))
                data = f.read()
            self._send(client, data[: data.rfind(b"\n") + 1])
        else:
            self._reply_error(client, f"unknown op {op!r}")

    def _reply_error(self, client: Client, message: str) -> None:
        client.op, client.reading, client.closing = "error", False, True
        self._send(client, json.dumps({"error": message}).encode() + b"\n")

    def _history(self, client: Client) -> None:
        entries, _ = logs.read_log(self.log.path)
        for entry in entries:
            framed = logs.render(entry, stdout=logs.STDOUT in client.streams,
                                 stderr=logs.STDERR in client.streams, timestamps=False)
            client.out += framed
        for stream, data in self.log.pending():
            if stream in client.streams:
                client.out += logs.frame(stream, data)

    def _release(self) -> None:
        if self.release_w >= 0:
            os.write(self.release_w, b"x")
            os.close(self.release_w)
            self.release_w = -1

    # -- stdin --------------------------------------------------------------------------------

    def _stdin(self, data: bytes) -> None:
        if self.stdin_fd is None:
            return
        self.stdin_buf += data
        self._flush_stdin(0)

    def _flush_stdin(self, mask: int) -> None:
        assert self.stdin_fd is not None
        try:
            while self.stdin_buf:
                del self.stdin_buf[: os.write(self.stdin_fd, self.stdin_buf)]
        except BlockingIOError:
            pass
        except OSError:  # the container closed its stdin: what it did not read is lost, as with a pipe
            self.stdin_buf.clear()
        waiting = bool(self.stdin_buf)
        registered = self.stdin_fd in self.sel.get_map()
        if waiting and not registered:
            self.sel.register(self.stdin_fd, WRITE, self._flush_stdin)
        elif not waiting and registered:
            self.sel.unregister(self.stdin_fd)
        if not waiting and self.stdin_eof:
            self._close_stdin()

    def _stdin_eof(self) -> None:
        self.stdin_eof = True
        if not self.stdin_buf:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd is None:
            return
        if self.stdin_fd in self.sel.get_map():
            self.sel.unregister(self.stdin_fd)
        os.close(self.stdin_fd)
        self.stdin_fd = None
        self.stdin_buf.clear()


def run(spec_path: Path, status_fd: int) -> int:
    """Spawn the container described at ``spec_path``, report on ``status_fd``, serve until it exited."""
    monitor = Monitor(json.loads(spec_path.read_text()), status_fd)
    try:
        pid = monitor.spawn()
    except (SpawnError, OSError) as err:
        os.write(status_fd, json.dumps({"error": str(err)}).encode())
        return 1
    os.write(status_fd, json.dumps({"pid": pid}).encode())
    os.close(status_fd)
    monitor.serve()
    return 0
