"""Many datagrams per system call: ``recvmmsg``/``sendmmsg`` (Linux) through ctypes.

The UDP hot path is bound by per-datagram costs, not by DNS work: one ``recvfrom`` and one ``sendto``
per query, each converting the peer address to and from a Python tuple. Under load many queries are
queued at once, so reading up to 64 with one call and answering them with one call roughly halves
the system calls and skips the address conversions (the peer's raw ``sockaddr`` is kept as bytes
and handed back to ``sendmmsg`` as is). Measured on the benchmark box: about a fifth more queries
per second than a ``recvfrom``/``sendto`` loop. One ``Batch`` serves every socket of the server's
single loop thread, so its buffers exist once, not per network.
"""

from __future__ import annotations

import ctypes
import socket

SIZE = 64             # datagrams per call
MESSAGE = 4096        # a query never needs more; longer datagrams are dropped (MSG_TRUNC)
_SOCKADDR = 28        # sizeof(struct sockaddr_in6), the larger of the two families
_SOCKADDR_IN = 16
_MSG_DONTWAIT = 0x40
_MSG_TRUNC = 0x20

_libc = ctypes.CDLL(None, use_errno=True)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int]


def peer(raw: bytes) -> tuple:
    """The Python socket address (as ``recvfrom`` gives it) of a raw ``sockaddr``."""
    family = int.from_bytes(raw[:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6:
        return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, int.from_bytes(raw[4:8], "big"),
                int.from_bytes(raw[24:28], "little"))
    return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)


def host(raw: bytes) -> bytes:
    """The address part of a raw ``sockaddr`` (port left out): who sent it, whatever port it used."""
    return raw[4:8] if len(raw) == _SOCKADDR_IN else raw[8:24]


def _address(data: bytes) -> int:
    """Where the bytes object's own memory starts (the kernel reads it in place)."""
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


class Batch:
    """Reusable buffers for one thread's ``recvmmsg``/``sendmmsg`` calls."""

    def __init__(self) -> None:
        self._data = ctypes.create_string_buffer(SIZE * MESSAGE)
        self._names = ctypes.create_string_buffer(SIZE * _SOCKADDR)
        self._recv = (_Mmsghdr * SIZE)()
        self._send = (_Mmsghdr * SIZE)()
        self._recv_iov = (_Iovec * SIZE)()
        self._send_iov = (_Iovec * SIZE)()
        self._filled = SIZE
        data, names = ctypes.addressof(self._data), ctypes.addressof(self._names)
        for i in range(SIZE):
            self._recv_iov[i].base, self._recv_iov[i].len = data + i * MESSAGE, MESSAGE
            hdr = self._recv[i].hdr
            hdr.name, hdr.iov, hdr.iovlen = names + i * _SOCKADDR, ctypes.pointer(self._recv_iov[i]), 1
            self._send[i].hdr.iov, self._send[i].hdr.iovlen = ctypes.pointer(self._send_iov[i]), 1

    def receive(self, fd: int) -> list[tuple[bytes, bytes]]:
        """Up to SIZE queued datagrams as (data, raw sender address); empty when none is queued."""
        for i in range(self._filled):  # the kernel shrank these to the sender's address length
            self._recv[i].hdr.namelen = _SOCKADDR
        count = _recvmmsg(fd, self._recv, SIZE, _MSG_DONTWAIT, None)
        self._filled = max(count, 0)
        if count <= 0:
            return []
        data, names = ctypes.addressof(self._data), ctypes.addressof(self._names)
        out = []
        for i in range(count):
            msg = self._recv[i]
            if not msg.hdr.flags & _MSG_TRUNC:
                out.append((ctypes.string_at(data + i * MESSAGE, msg.len),
                            ctypes.string_at(names + i * _SOCKADDR, msg.hdr.namelen)))
        return out

    def send(self, fd: int, replies: list[tuple[bytes, bytes]]) -> int:
        """Send (data, raw address) pairs, at most SIZE; returns how many went (a full buffer drops the rest)."""
        for i, (data, raw) in enumerate(replies[:SIZE]):  # ``replies`` keeps the bytes alive meanwhile
            self._send_iov[i].base, self._send_iov[i].len = _address(data), len(data)
            self._send[i].hdr.name, self._send[i].hdr.namelen = _address(raw), len(raw)
        return _sendmmsg(fd, self._send, min(len(replies), SIZE), _MSG_DONTWAIT) if replies else 0
