"""Docker's json-file container log and the multiplexed stream framing of attach/logs.

The monitor is the only writer; it appends one JSON object per line of output
(``{"log":"hi\\n","stream":"stdout","time":"<RFC3339Nano>"}``), like Docker's json-file driver, so
``docker logs`` semantics (per-stream filtering, tail, timestamps) can be served from the file alone
after the container and its monitor are gone.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Iterable, Iterator

STDOUT, STDERR = 1, 2
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
STREAM_IDS = {name: sid for sid, name in STREAM_NAMES.items()}
# Docker's json-file splits a line longer than this into several entries.
MAX_ENTRY = 16 * 1024


def frame(stream: int, data: bytes) -> bytes:
    """One multiplexed frame: stream byte, three zero bytes, big-endian payload length, payload."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def rfc3339_nano(ns: int | None = None) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: nanoseconds with trailing zeros trimmed."""
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


def log_path(state_dir: Path, container_id: str) -> Path:
    return state_dir / f"{container_id}-json.log"


class LogWriter:
    """Appends output to the json-file log a whole line at a time, holding back an unfinished line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self._partial: dict[int, bytes] = {STDOUT: b"", STDERR: b""}

    def write(self, stream: int, data: bytes) -> bytes:
        """Record a chunk; returns the log lines it completed (for followers of the log)."""
        buf = self._partial[stream] + data
        pieces: list[bytes] = []
        while True:
            cut = buf.find(b"\n") + 1
            if not cut and len(buf) < MAX_ENTRY:
                break
            cut = min(cut or MAX_ENTRY, MAX_ENTRY)
            pieces.append(buf[:cut])
            buf = buf[cut:]
        self._partial[stream] = buf
        return self._append(stream, pieces)

    def flush(self) -> bytes:
        """Write out unfinished lines (at exit, as Docker does)."""
        out = b""
        for stream, buf in self._partial.items():
            if buf:
                out += self._append(stream, [buf])
                self._partial[stream] = b""
        return out

    def pending(self) -> list[tuple[int, bytes]]:
        """Output not yet in the file (an unfinished line), so attach history misses nothing."""
        return [(stream, buf) for stream, buf in self._partial.items() if buf]

    def _append(self, stream: int, pieces: Iterable[bytes]) -> bytes:
        name = STREAM_NAMES[stream]
        lines = b"".join(
            json.dumps({"log": p.decode("utf-8", "replace"), "stream": name, "time": rfc3339_nano()},
                       separators=(",", ":")).encode() + b"\n"
            for p in pieces
        )
        if lines:
            view = memoryview(lines)
            while view:
                view = view[os.write(self._fd, view):]
        return lines

    def close(self) -> None:
        os.close(self._fd)


def parse_lines(data: bytes) -> Iterator[dict]:
    """Entries of complete log lines; a torn last line (crash mid-write) is skipped."""
    for line in data.splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue


def read_log(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Every complete entry from ``offset`` and the offset just past the last complete line."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return list(parse_lines(data[:end])), offset + end


def render(entry: dict, *, stdout: bool, stderr: bool, timestamps: bool) -> bytes:
    """A log entry as the frame ``docker logs`` receives (empty when its stream was not asked for)."""
    stream = STREAM_IDS.get(entry.get("stream", ""), STDOUT)
    if (stream == STDOUT and not stdout) or (stream == STDERR and not stderr):
        return b""
    payload = entry.get("log", "").encode()
    if timestamps:
        payload = entry.get("time", "").encode() + b" " + payload
    return frame(stream, payload)
