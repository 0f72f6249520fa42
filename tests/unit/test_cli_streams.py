"""Frame demultiplexing of attach/exec/logs output, and where the CLI looks for the daemon."""

from __future__ import annotations

import io
import struct

import pytest

from berth import config
from berth.cli import context
from berth.cli.errors import CLIError
from berth.cli.streams import demux


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class Trickle(io.BytesIO):
    """Hands out at most 3 bytes per read, so frames arrive split across reads."""

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        return super().read(min(n, 3))


def test_demux_splits_streams_even_when_frames_arrive_in_pieces() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    data = frame(1, b"hello\n") + frame(2, b"warn\n") + frame(1, b"") + frame(1, b"x" * 70000)
    demux(Trickle(data).read, out, err)
    assert out.getvalue() == b"hello\n" + b"x" * 70000 and err.getvalue() == b"warn\n"


def test_demux_error_frame_and_truncation() -> None:
    with pytest.raises(CLIError, match="exec failed: boom"):
        demux(io.BytesIO(frame(3, b"exec failed: boom\n")).read, io.BytesIO(), io.BytesIO())
    with pytest.raises(CLIError, match="unexpected EOF"):
        demux(io.BytesIO(frame(1, b"abcdef")[:10]).read, io.BytesIO(), io.BytesIO())


def test_socket_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BERTH_HOST", raising=False)
    monkeypatch.delenv("BERTH_RUN", raising=False)
    assert context.DEFAULT_RUN == config.DEFAULT_RUN
    assert context.socket_path(None, None) == config.default_socket() == "/run/berth/berth.sock"
    monkeypatch.setenv("BERTH_RUN", "/tmp/r")
    assert context.socket_path(None, None) == config.default_socket() == "/tmp/r/berth.sock"
    monkeypatch.setenv("BERTH_HOST", "unix:///x/y.sock")
    assert context.socket_path(None, None) == config.default_socket() == "/x/y.sock"
    assert context.socket_path(None, "/rr") == "/rr/berth.sock"
    assert context.socket_path("unix:///h.sock", "/rr") == "/h.sock"
    with pytest.raises(CLIError, match="unix socket"):
        context.socket_path("tcp://1.2.3.4:2375", None)
