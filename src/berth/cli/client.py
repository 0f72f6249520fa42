"""A minimal HTTP/1.1 client for berthd's unix socket.

Why not ``http.client``: it imports ``ssl`` and ``email`` (≈20 ms of start-up on every command) and cannot
hand over the socket after ``101 UPGRADED``, which ``run``/``exec`` need. This client keeps one keep-alive
connection for a command's ordinary requests and opens a dedicated one for each streamed or hijacked
request, as the docker CLI does.
"""

from __future__ import annotations

import json
import socket
from typing import IO, Any, Iterator
from urllib.parse import quote, urlencode

from berth import API_VERSION, __version__
from berth.cli.errors import CLIError, DaemonError

USER_AGENT = f"berth-cli/{__version__}"
PREFIX = f"/v{API_VERSION}"
_BLOCK = 65536


def no_daemon_message(path: str) -> str:
    return (f"Cannot connect to the berth daemon at unix://{path}. Is berthd running? "
            "Start it with: berth daemon start")


def path_quote(ref: str) -> str:
    """Quote a name or id for use as one path segment (names may contain spaces)."""
    return quote(ref, safe=":@")


class Response:
    """Status and headers of an answer; the body is read on demand so that streams can be consumed live."""

    def __init__(self, conn: "Connection", status: int, reason: str, headers: dict[str, str], method: str) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status in (101, 204, 304) or method == "HEAD":
            self._remaining: int | None = 0
        elif chunked:
            self._remaining = None
        else:
            self._remaining = int(headers["content-length"]) if "content-length" in headers else -1
        self._chunk_left = 0
        self._done = self._remaining == 0

    def chunks(self) -> Iterator[bytes]:
        """The body piece by piece, as it arrives (chunked, length-delimited or until close)."""
        rfile = self._conn.rfile
        assert rfile is not None
        while not self._done:
            if self._remaining is None:  # chunked
                if self._chunk_left == 0:
                    line = rfile.readline(65537)
                    if not line:
                        raise CLIError("unexpected EOF from the daemon")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass
                        self._done = True
                        break
                    self._chunk_left = size
                data = rfile.read1(min(self._chunk_left, _BLOCK))  # type: ignore[attr-defined]
                if not data:
                    raise CLIError("unexpected EOF from the daemon")
                self._chunk_left -= len(data)
                if self._chunk_left == 0:
                    rfile.readline(3)
                yield data
            elif self._remaining < 0:  # until the server closes
                data = rfile.read1(_BLOCK)  # type: ignore[attr-defined]
                if not data:
                    self._done = True
                    self._conn.close()
                    break
                yield data
            else:
                data = rfile.read1(min(self._remaining, _BLOCK))  # type: ignore[attr-defined]
                if not data:
                    raise CLIError("unexpected EOF from the daemon")
                self._remaining -= len(data)
                self._done = self._remaining == 0
                yield data
        if self.headers.get("connection", "").lower() == "close":
            self._conn.close()

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def json(self) -> Any:
        raw = self.read()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CLIError(f"invalid JSON answer from the daemon: {raw[:200]!r}") from None

    def lines(self) -> Iterator[bytes]:
        """Newline-delimited pieces of a streamed body (``import``/``load`` progress, ``wait``)."""
        pending = b""
        for piece in self.chunks():
            pending += piece
            *complete, pending = pending.split(b"\n")
            yield from (line for line in complete if line.strip())
        if pending.strip():
            yield pending


class Connection:
    """One HTTP/1.1 connection to the daemon's unix socket, reconnected lazily when the server closed it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.rfile: IO[bytes] | None = None
        self._reused = False

    def _open(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except PermissionError:
            sock.close()
            raise CLIError(f"permission denied while trying to connect to the berth daemon socket at "
                           f"unix://{self.path}") from None
        except OSError:
            sock.close()
            raise CLIError(no_daemon_message(self.path)) from None
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self._reused = False

    def close(self) -> None:
        if self.rfile is not None:
            self.rfile.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.rfile = None

    def request(self, method: str, path: str, body: bytes | IO[bytes] | None = None,
                headers: dict[str, str] | None = None, upgrade: bool = False) -> Response:
        """Send one request and read the answer's status line and headers."""
        for attempt in (0, 1):
            if self.sock is None:
                self._open()
            reused = self._reused
            try:
                self._send(method, path, body, headers or {}, upgrade)
                status_line = self.rfile.readline(65537)  # type: ignore[union-attr]
            except (BrokenPipeError, ConnectionResetError):
                status_line = b""
            if status_line:
                break
            self.close()
            # A keep-alive connection the server closed meanwhile: retry once on a fresh one.
            if not reused or attempt or not isinstance(body, (bytes, type(None))):
                raise CLIError("the daemon closed the connection unexpectedly")
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self.close()
            raise CLIError(f"malformed answer from the daemon: {status_line[:100]!r}") from None
        resp_headers: dict[str, str] = {}
        while True:
            line = self.rfile.readline(65537)  # type: ignore[union-attr]
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        self._reused = True
        return Response(self, status, parts[2] if len(parts) > 2 else "", resp_headers, method)

    def _send(self, method: str, path: str, body: bytes | IO[bytes] | None, headers: dict[str, str],
              upgrade: bool) -> None:
        assert self.sock is not None
        lines = [f"{method} {path} HTTP/1.1", "Host: berth", f"User-Agent: {USER_AGENT}"]
        if upgrade:
            lines += ["Connection: Upgrade", "Upgrade: tcp"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        streamed = body is not None and not isinstance(body, bytes)
        if streamed:
            lines.append("Transfer-Encoding: chunked")
        elif body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, bytes):
            self.sock.sendall(head + body)
            return
        self.sock.sendall(head)
        if streamed:
            while True:
                block = body.read(_BLOCK)  # type: ignore[union-attr]
                if not block:
                    break
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            self.sock.sendall(b"0\r\n\r\n")


class Client:
    """The Engine API as a command uses it: JSON in, JSON out, daemon errors raised as ``DaemonError``."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._main = Connection(socket_path)

    def close(self) -> None:
        self._main.close()

    @staticmethod
    def url(path: str, query: dict[str, Any] | None = None) -> str:
        items = {k: v for k, v in (query or {}).items() if v is not None}
        return PREFIX + path + ("?" + urlencode(items) if items else "")

    def send(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
             conn: Connection | None = None, upgrade: bool = False,
             headers: dict[str, str] | None = None) -> Response:
        """One request; the answer's body is left unread, ``DaemonError`` raised for a 4xx/5xx answer."""
        extra = dict(headers or {})
        payload: bytes | IO[bytes] | None
        if body is None or isinstance(body, bytes) or hasattr(body, "read"):
            payload = body
        else:
            payload = json.dumps(body).encode()
            extra.setdefault("Content-Type", "application/json")
        resp = (conn or self._main).request(method, self.url(path, query), payload, extra, upgrade)
        if resp.status >= 400:
            raise error_from(resp)
        return resp

    def call(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
        """A plain request on the keep-alive connection, returning the decoded JSON body (or None)."""
        return self.send(method, path, query, body, headers=headers).json()

    def get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return self.call("GET", path, query)

    def post(self, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, query, body)

    def delete(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return self.call("DELETE", path, query)

    def dedicated(self) -> Connection:
        """A separate connection for a long stream (``wait``, ``logs -f``) or a hijacked exchange."""
        return Connection(self.socket_path)


def error_from(resp: Response) -> DaemonError:
    """Docker's error body is ``{"message": …}``; a few answers (old API version) are plain text."""
    raw = resp.read()
    message = raw.decode("utf-8", "replace").strip()
    try:
        decoded = json.loads(raw)
        if isinstance(decoded, dict) and "message" in decoded:
            message = str(decoded["message"])
    except ValueError:
        pass
    return DaemonError(resp.status, message or f"{resp.status} {resp.reason}".strip())
