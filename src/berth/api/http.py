"""A small HTTP/1.1 server on a unix socket with what the Docker API needs beyond plain requests:
chunked request bodies (``docker import`` streams the tarball), streamed responses (``wait``, ``logs``)
and connection hijacking (``attach``, ``exec start``: ``101 UPGRADED`` then a raw byte stream).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import stat
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, BinaryIO, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from berth import API_VERSION, MIN_API_VERSION, __version__

log = logging.getLogger("berth.api")

COMMON_HEADERS = {
    "Api-Version": API_VERSION,
    "Docker-Experimental": "false",
    "Ostype": "linux",
}


class ChunkedReader:
    """A read-only file object over a chunked (or length-delimited) request body."""

    def __init__(self, raw: BinaryIO, length: int | None, chunked: bool) -> None:
        self._raw = raw
        self._left = length if not chunked else 0
        self._chunked = chunked
        self._done = not chunked and not length

    def _next_chunk(self) -> None:
        line = self._raw.readline(65537)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while self._raw.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            self._done = True
        self._left = size

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while not self._done and (n < 0 or len(out) < n):
            if self._left == 0:
                if not self._chunked:
                    self._done = True
                    break
                self._next_chunk()
                continue
            want = self._left if n < 0 else min(self._left, n - len(out))
            data = self._raw.read(want)
            if not data:
                self._done = True
                break
            out += data
            self._left -= len(data)
            if self._chunked and self._left == 0:
                self._raw.readline(3)  # CRLF after the chunk
        return bytes(out)

    def readable(self) -> bool:
        return True


@dataclass
class Request:
    method: str
    path: str
    version: str
    query: dict[str, list[str]]
    headers: Any
    body: ChunkedReader
    params: dict[str, str] = field(default_factory=dict)
    handler: Any = None

    def q(self, key: str, default: str = "") -> str:
        values = self.query.get(key)
        return values[-1] if values else default

    def integer(self, key: str) -> int | None:
        """An integer query parameter (None when absent); anything else is Docker's 400."""
        value = self.q(key)
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            from berth.errors import InvalidParameter

            raise InvalidParameter(f'strconv.Atoi: parsing "{value}": invalid syntax') from None

    def flag(self, key: str, default: bool = False) -> bool:
        if key not in self.query:
            return default
        return self.q(key).lower() in ("1", "true", "yes")

    def json(self) -> Any:
        raw = self.body.read()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as err:
            from berth.errors import InvalidParameter

            raise InvalidParameter(f"invalid JSON body: {err}") from None

    @property
    def wants_upgrade(self) -> bool:
        return "upgrade" in (self.headers.get("Connection") or "").lower()


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-able, bytes, or None
    content_type: str = "application/json"
    stream: Iterable[bytes] | None = None  # chunked body
    hijack: Callable[[socket.socket, BinaryIO], None] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def parse_version(path: str) -> tuple[str | None, str]:
    """Split ``/v1.41/networks`` into ``("1.41", "/networks")``."""
    if path.startswith("/v"):
        head, sep, rest = path[2:].partition("/")
        if head.replace(".", "").isdigit() and "." in head:
            return head, "/" + rest
    return None, path


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "UnixHTTPServer"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s", fmt % args)

    def address_string(self) -> str:
        return "unix"

    def version_string(self) -> str:
        return f"berth/{__version__} (linux)"

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        version, path = parse_version(url.path)
        if version is not None:
            if _vtuple(version) > _vtuple(API_VERSION):
                return self._send(Response(400, {"message": f"client version {version} is too new. Maximum supported API version is {API_VERSION}"}))
            if _vtuple(version) < _vtuple(MIN_API_VERSION):
                return self._send(Response(400, (f"client version {version} is too old. Minimum supported API version is "
                                                 f"{MIN_API_VERSION}, please upgrade your client to a newer version").encode(),
                                           content_type="text/plain; charset=utf-8"))
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        req = Request(self.command, path, version or API_VERSION, parse_qs(url.query, keep_blank_values=True),
                      self.headers, ChunkedReader(self.rfile, length, chunked), handler=self)
        resp = self.server.router(req)
        if not req.body._done and not resp.hijack:
            req.body.read()  # keep the connection usable: drain what the handler did not read
        self._send(resp)

    def _send(self, resp: Response) -> None:
        if resp.hijack is not None:
            return self._hijack(resp)
        self.send_response(resp.status)
        for k, v in {**COMMON_HEADERS, **resp.headers}.items():
            self.send_header(k, v)
        if resp.stream is not None:
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                for piece in resp.stream:
                    if piece:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                close = getattr(resp.stream, "close", None)
                if close:
                    close()
            return
        if resp.body is None or resp.status in (204, 304):
            payload = b""
        elif isinstance(resp.body, bytes):
            payload = resp.body
        else:
            payload = (json.dumps(resp.body) + "\n").encode()
        if payload or resp.status not in (204, 304):
            self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _hijack(self, resp: Response) -> None:
        self.close_connection = True
        upgrade = "upgrade" in (self.headers.get("Connection") or "").lower()
        if upgrade:
            self.send_response(101, "UPGRADED")
            self.send_header("Content-Type", "application/vnd.docker.raw-stream")
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "tcp")
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.raw-stream")
        for k, v in COMMON_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        assert resp.hijack is not None
        try:
            resp.hijack(self.connection, self.rfile)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _dispatch


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 refuses the sixth of many clients connecting at once (EAGAIN on
    # a unix socket, which docker and docker-py report as a failure); the kernel caps this at somaxconn.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, path: str, router: Callable[[Request], Response],
                 thread_done: Callable[[], None] = lambda: None) -> None:
        self.router = router
        self.thread_done = thread_done  # run at the end of each connection's thread, in that thread
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
        old = os.umask(0o177)  # the socket is root-only: whoever can write to it controls the host's network
        try:
            super().__init__(path, Handler)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.thread_done()
