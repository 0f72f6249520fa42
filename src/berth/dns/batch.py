"""Many datagrams per system call: ``recvmmsg``/``sendmmsg`` (Linux) through ctypes, replies written in place.

The UDP hot path is bound by per-datagram costs, not by DNS work: a ``recvfrom`` and a ``sendto`` per
query, each converting the peer address to and from a Python tuple, and the bytes objects built on
the way. So one call reads up to ``SIZE`` queued datagrams, and the replies are written over the
queries they answer, in the receive buffers: the sender's raw ``sockaddr`` and the query id are
already where ``sendmmsg`` needs them, so a cached answer costs one ``memmove`` and one length, and
the whole batch goes back with one call through the very headers it arrived with. One ``Batch``
serves every socket of one thread, so its buffers exist once, not per network.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SIZE = 128            # datagrams per call
MESSAGE = 4096        # a query never needs more (longer ones are dropped: MSG_TRUNC); longer replies go apart
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


# What receive() reads back from each struct mmsghdr: namelen, msg_flags and the datagram's length.
_RECEIVED = struct.Struct(f"=8xI{_Msghdr.flags.offset - 12}xi{_Mmsghdr.len.offset - _Msghdr.flags.offset - 4}x"
                          f"I{ctypes.sizeof(_Mmsghdr) - _Mmsghdr.len.offset - 4}x")
assert _RECEIVED.size == ctypes.sizeof(_Mmsghdr)
_NAMELEN = _Msghdr.namelen.offset

_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int]
_memmove = ctypes.memmove


def peer(raw: bytes) -> tuple:
    """The Python socket address (as ``recvfrom`` gives it) of a raw ``sockaddr``."""
    family = int.from_bytes(raw[:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6:
        return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, int.from_bytes(raw[4:8], "big"),
                int.from_bytes(raw[24:28], "little"))
    return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)


class Batch:
    """Reusable buffers for one thread's ``recvmmsg``/``sendmmsg`` calls.

    Use: ``receive`` a batch; ``reply`` into the slots to answer, at most once each and in the order
    received (the others stay unanswered); then ``send``. Slots are only valid until the next ``receive``.
    """

    def __init__(self) -> None:
        self._data = ctypes.create_string_buffer(SIZE * MESSAGE)
        self._names = ctypes.create_string_buffer(SIZE * _SOCKADDR)
        self._recv = (_Mmsghdr * SIZE)()
        self._send = (_Mmsghdr * SIZE)()
        self._iov = (_Iovec * SIZE)()
        self._base = ctypes.addressof(self._data)
        self._data_view = memoryview(self._data).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        self._headers = memoryview(self._recv).cast("B")
        self._replies: list[int] = []   # slots answered since the last receive, in order
        names = ctypes.addressof(self._names)
        for i in range(SIZE):
            self._iov[i].base, self._iov[i].len = self._base + i * MESSAGE, MESSAGE
            hdr = self._recv[i].hdr
            hdr.name, hdr.namelen, hdr.iov, hdr.iovlen = names + i * _SOCKADDR, _SOCKADDR, ctypes.pointer(self._iov[i]), 1
        self._filled = 0

    def receive(self, fd: int) -> list[tuple[int, bytes, bytes]]:
        """Up to SIZE queued datagrams as (slot, sender's address bytes, message without its id)."""
        headers = self._headers
        for i in range(self._filled):  # the kernel shrank these to the sender's address length
            struct.pack_into("=I", headers, i * _RECEIVED.size + _NAMELEN, _SOCKADDR)
        for slot in self._replies:
            self._iov[slot].len = MESSAGE
        self._replies = []
        count = _recvmmsg(fd, self._recv, SIZE, _MSG_DONTWAIT, None)
        self._filled = max(count, 0)
        if count <= 0:
            return []
        data, names = self._data_view, self._names_view
        out = []
        slot = 0
        for namelen, flags, length in _RECEIVED.iter_unpack(headers[:count * _RECEIVED.size]):
            if not flags & _MSG_TRUNC and length >= 2:
                at = slot * _SOCKADDR
                host = names[at + 4:at + 8] if namelen == _SOCKADDR_IN else names[at + 8:at + 24]
                at = slot * MESSAGE
                out.append((slot, host.tobytes(), data[at + 2:at + length].tobytes()))
            slot += 1
        return out

    def message(self, slot: int) -> bytes:
        """The whole datagram in ``slot`` (id included), as received."""
        at = slot * MESSAGE
        return self._data_view[at:at + self._recv[slot].len].tobytes()

    def sender(self, slot: int) -> tuple:
        """The Python socket address of the datagram in ``slot``."""
        at = slot * _SOCKADDR
        return peer(self._names_view[at:at + self._recv[slot].hdr.namelen].tobytes())

    def reply(self, slot: int, body: bytes, offset: int = 0) -> bool:
        """Put the reply to ``slot`` over its query from ``offset`` on (2: keep the query's id in front).

        False when it does not fit a slot; the caller sends it some other way.
        """
        size = offset + len(body)
        if size > MESSAGE:
            return False
        _memmove(self._base + slot * MESSAGE + offset, body, len(body))
        self._iov[slot].len = size
        self._replies.append(slot)
        return True

    def send(self, fd: int) -> int:
        """Send the replies put since ``receive``, in one call; how many went (a full buffer drops the rest)."""
        replies = self._replies
        if not replies:
            return 0
        if replies[-1] == len(replies) - 1:  # every datagram answered: the receive headers serve as they are
            headers = self._recv
        else:
            headers = self._send
            for i, slot in enumerate(replies):
                headers[i] = self._recv[slot]
        return _sendmmsg(fd, headers, len(replies), _MSG_DONTWAIT)
