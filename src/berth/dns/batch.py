"""Many datagrams per system call: ``recvmmsg``/``sendmmsg`` (Linux) through ctypes, replies written in place.

The UDP hot path is bound by per-datagram costs, not by DNS work: a ``recvfrom`` and a ``sendto`` per
query, each converting the peer address to and from a Python tuple, and the objects built on the way.
So one call reads up to ``SIZE`` queued datagrams, and the replies are written over the queries they
answer, in the receive buffers: the sender's raw ``sockaddr`` and the query id are already where
``sendmmsg`` needs them, and the whole batch goes back with one call through the very headers it
arrived with.

Each slot is laid out so that one slice is the datagram's *key*, the sender's address followed by the
message without its id (what a reply depends on, the id and port aside)::

    slot:  | id (2) | sockaddr (28) | message after the id ... |
             iov 0    msg_name        iov 1
    key:              [4:]  ..................................

For IPv4 the key holds the address, then the 8 zero bytes of ``sin_zero`` and 12 bytes the kernel never
writes (a Batch serves one address family, so they stay zero); for IPv6 the flow label (0 unless asked
for), the address and the scope id. A reply already known for a key costs one dict lookup, one slice
assignment and one length: ``receive`` answers those itself and hands back only the others. One Batch
serves every socket of one family in one thread, so its buffers exist once, not per network.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Mapping

SIZE = 128            # datagrams per call
MESSAGE = 4096        # a query never needs more (longer ones are dropped: MSG_TRUNC); longer replies go apart
_ID = 2
_SOCKADDR = 28        # sizeof(struct sockaddr_in6), the larger of the two families
_STRIDE = _ID + _SOCKADDR + MESSAGE - _ID
_BODY = _ID + _SOCKADDR             # where the message after its id starts in a slot
_KEY = _ID + 4                      # where the key starts: the sockaddr after its family and port
_BODY_MAX = MESSAGE - _ID
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


# What receive() reads back from each struct mmsghdr: msg_flags and the datagram's length.
_RECEIVED = struct.Struct(f"={_Msghdr.flags.offset}xi{_Mmsghdr.len.offset - _Msghdr.flags.offset - 4}x"
                          f"I{ctypes.sizeof(_Mmsghdr) - _Mmsghdr.len.offset - 4}x")
assert _RECEIVED.size == ctypes.sizeof(_Mmsghdr)
_HEADER = ctypes.sizeof(_Mmsghdr)
_IOV_LEN = ctypes.sizeof(_Iovec) // ctypes.sizeof(ctypes.c_size_t)  # size_t words per iovec

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


class Batch:
    """Reusable buffers for one thread's ``recvmmsg``/``sendmmsg`` calls on sockets of one family.

    Use: ``receive`` a batch (answering what ``known`` has replies for); ``reply`` into the slots of the
    others to answer, at most once each; then ``send``. Slots are only valid until the next ``receive``.
    """

    def __init__(self, family: int = socket.AF_INET) -> None:
        self.family = family
        self._host = slice(0, 4) if family == socket.AF_INET else slice(4, 20)  # the address within a key
        self._namelen = 16 if family == socket.AF_INET else _SOCKADDR
        self._data = ctypes.create_string_buffer(SIZE * _STRIDE)
        self._recv = (_Mmsghdr * SIZE)()
        self._send = (_Mmsghdr * SIZE)()
        self._iov = (_Iovec * (2 * SIZE))()
        base = ctypes.addressof(self._data)
        for i in range(SIZE):
            at = base + i * _STRIDE
            self._iov[2 * i].base, self._iov[2 * i].len = at, _ID
            self._iov[2 * i + 1].base, self._iov[2 * i + 1].len = at + _BODY, _BODY_MAX
            hdr = self._recv[i].hdr
            hdr.name, hdr.namelen = at + _ID, _SOCKADDR
            hdr.iov, hdr.iovlen = ctypes.cast(ctypes.byref(self._iov, 2 * i * ctypes.sizeof(_Iovec)),
                                              ctypes.POINTER(_Iovec)), 2
        self._data_view = memoryview(self._data).cast("B")
        self._headers = memoryview(self._recv).cast("B")
        self._send_headers = memoryview(self._send).cast("B")
        self._iov_words = memoryview(self._iov).cast("B").cast("Q" if ctypes.sizeof(ctypes.c_size_t) == 8 else "I")
        # What receive() restores in one copy each: the kernel shrinks msg_namelen, reply() shortens iovecs.
        self._fresh_headers = bytes(self._headers)
        self._fresh_iov = bytes(memoryview(self._iov).cast("B"))
        self._iov_bytes = memoryview(self._iov).cast("B")
        self._replies: list[int] = []   # slots answered since the last receive
        self._filled = 0

    def receive(self, fd: int, known: Mapping[bytes, bytes]) -> list[tuple[int, bytes]]:
        """Read up to SIZE queued datagrams; answer those whose key ``known`` maps to a reply (the
        message after its id), and return the others as (slot, key)."""
        self._headers[:] = self._fresh_headers
        if self._replies:
            self._iov_bytes[:] = self._fresh_iov
        replies: list[int] = []
        self._replies = replies
        count = _recvmmsg(fd, self._recv, SIZE, _MSG_DONTWAIT, None)
        self._filled = max(count, 0)
        if count <= 0:
            return []
        data, words, get = self._data_view, self._iov_words, known.get
        others = []
        slot = 0
        at = 0  # slot * _STRIDE
        for flags, length in _RECEIVED.iter_unpack(self._headers[:count * _HEADER]):
            if not flags & _MSG_TRUNC and length >= _ID:
                key = data[at + _KEY:at + _BODY + length - _ID].tobytes()
                hit = get(key)
                if hit is None:
                    others.append((slot, key))
                else:
                    data[at + _BODY:at + _BODY + len(hit)] = hit
                    words[(2 * slot + 1) * _IOV_LEN + 1] = len(hit)
                    replies.append(slot)
            slot += 1
            at += _STRIDE
        return others

    @property
    def received(self) -> int:
        """How many datagrams the last ``receive`` read."""
        return self._filled

    def host(self, key: bytes) -> bytes:
        """The sender's packed address in a key."""
        return key[self._host]

    def message(self, slot: int, key: bytes) -> bytes:
        """The whole datagram in ``slot`` (id included), as received; ``key`` is the slot's key."""
        at = slot * _STRIDE
        return self._data_view[at:at + _ID].tobytes() + key[_BODY - _KEY:]

    def sender(self, slot: int) -> tuple:
        """The Python socket address of the datagram in ``slot``."""
        at = slot * _STRIDE + _ID
        return peer(self._data_view[at:at + self._namelen].tobytes())

    def reply(self, slot: int, body: bytes) -> bool:
        """Put the reply to ``slot`` over its query, after the query's id (``body`` is the rest).

        False when it does not fit a slot; the caller sends it some other way.
        """
        if len(body) > _BODY_MAX:
            return False
        at = slot * _STRIDE + _BODY
        self._data_view[at:at + len(body)] = body
        self._iov_words[(2 * slot + 1) * _IOV_LEN + 1] = len(body)
        self._replies.append(slot)
        return True

    def send(self, fd: int) -> int:
        """Send the replies put since ``receive``, in one call; how many went (a full buffer drops the rest)."""
        replies = self._replies
        if not replies:
            return 0
        if len(replies) == self._filled:  # every datagram answered: the receive headers serve as they are
            headers = self._recv
        else:
            headers = self._send
            out, src = self._send_headers, self._headers
            for i, slot in enumerate(replies):
                out[i * _HEADER:(i + 1) * _HEADER] = src[slot * _HEADER:(slot + 1) * _HEADER]
        return _sendmmsg(fd, headers, len(replies), _MSG_DONTWAIT)
