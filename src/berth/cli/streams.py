"""Docker's multiplexed output streams and the hijacked attach/exec connection.

Without a TTY the daemon frames a container's output: an 8-byte header (stream id: 0 stdin, 1 stdout,
2 stderr, 3 error from the daemon; three zero bytes; big-endian payload length) and the payload.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from typing import IO, Callable

from berth.cli.errors import CLIError

HEADER = struct.Struct(">BxxxL")


def _read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    out = b""
    while len(out) < n:
        piece = read(n - len(out))
        if not piece:
            break
        out += piece
    return out


def demux(read: Callable[[int], bytes], stdout: IO[bytes], stderr: IO[bytes]) -> None:
    """Copy framed output to ``stdout``/``stderr`` until the stream ends.

    ``read(n)`` returns up to n bytes (b"" at the end). A frame on stream 3 carries an error from the
    daemon and ends the command with that message, as docker's stdcopy does.
    """
    while True:
        header = _read_exact(read, HEADER.size)
        if not header:
            return
        if len(header) < HEADER.size:
            raise CLIError("unexpected EOF in the middle of a stream frame header")
        stream, size = HEADER.unpack(header)
        payload = _read_exact(read, size)
        if len(payload) < size:
            raise CLIError("unexpected EOF in the middle of a stream frame")
        if stream in (0, 1):
            stdout.write(payload)
            stdout.flush()
        elif stream == 2:
            stderr.write(payload)
            stderr.flush()
        elif stream == 3:
            raise CLIError(payload.decode("utf-8", "replace").rstrip("\n"))
        else:
            raise CLIError(f"Unrecognized input header: {stream}")


def pump_stdin(sock: socket.socket, fd: int = 0) -> threading.Thread:
    """Copy our stdin to the hijacked socket and half-close it at EOF (the container then sees EOF).

    A daemon thread: when the container's output ends the command exits even if stdin is still open.
    """
    def copy() -> None:
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    thread = threading.Thread(target=copy, name="stdin", daemon=True)
    thread.start()
    return thread
