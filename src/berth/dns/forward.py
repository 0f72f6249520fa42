"""Forwarding UDP queries upstream from the DNS server's UDP thread: pooled sockets, no event loop.

A fresh socket, a task and a future per forwarded query cost far more than the DNS work (about 6,000
queries per CPU second). Here each upstream has a small pool of connected UDP sockets in the UDP
thread's epoll; a query goes out on one of them with an id drawn from the system's CSPRNG, and the
reply is matched in the same thread on socket, id and question.

Spoofing resistance stays that of a socket per query: a forged answer must come from the server's
address and port (the socket is connected, the kernel drops anything else), reach a port the kernel
chose at random (each socket is replaced after ``REOPEN`` queries or ``AGE`` seconds, so ports keep
changing), carry an id that is pending on that very socket, and repeat the question asked. The odds of
a blind guess are the same as with one socket per query: queries in flight over ports times ids.

Timeouts are one deque: every attempt has the same timeout, so deadlines come in order. A query moves
to the next upstream when one times out, refuses the port (ICMP), or answers SERVFAIL/REFUSED; after
the last one the client gets the best answer seen, else SERVFAIL. Truncated answers are handed back to
the caller to be asked again over TCP.
"""

from __future__ import annotations

import collections
import logging
import random
import socket
import time
from typing import Any, Callable

from berth.dns import wire
from berth.dns.upstream import sockaddr

log = logging.getLogger("berth.dns")

POOL = 4        # sockets per upstream in use at a time
REOPEN = 256    # queries a socket carries before it is replaced by one on a fresh random port
AGE = 10.0      # seconds a socket is used at most, so an idle pool gives its ports back too
_ids = random.SystemRandom()


class _Socket:
    """One connected socket to one upstream, and the queries pending on it by id."""

    __slots__ = ("server", "sock", "fd", "sent", "opened", "pending", "retired")

    def __init__(self, server: str, family: int, address: tuple) -> None:
        self.server = server
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect(address)  # binds a random ephemeral port
        except OSError:
            self.sock.close()
            raise
        self.fd = self.sock.fileno()
        self.sent = 0
        self.opened = time.monotonic()
        self.pending: dict[int, _Query] = {}
        self.retired = False


class _Pool:
    __slots__ = ("family", "address", "sockets", "turn")

    def __init__(self, server: str) -> None:
        self.family, self.address = sockaddr(server)
        self.sockets: list[_Socket] = []
        self.turn = 0


class _Query:
    """A client's query on its way through the upstreams."""

    __slots__ = ("query", "q", "servers", "client", "fallback", "socket", "qid", "attempt")

    def __init__(self, query: bytes, q: wire.Question, servers: list[str], client: Any) -> None:
        self.query, self.q, self.servers, self.client = query, q, servers, client
        self.fallback: bytes | None = None
        self.socket: _Socket | None = None  # where it waits for an answer now
        self.qid = 0
        self.attempt = 0


class Forwarder:
    """UDP forwarding for one thread, which calls ``submit``, ``readable`` and ``expire`` and nothing else.

    ``watch(fd, on)`` adds or removes a socket from that thread's poller; ``answer(client, q, reply)``
    delivers the reply to a client's question ``q`` (in its id); ``truncated(client, query, q, servers)`` gets a query
    whose answer did not fit UDP, with the upstreams still to try, the one that truncated first.
    """

    def __init__(self, timeout: float, watch: Callable[[int, bool], None], answer: Callable[[Any, wire.Question, bytes], None],
                 truncated: Callable[[Any, bytes, wire.Question, list[str]], None]) -> None:
        self.timeout = timeout
        self._watch, self._answer, self._truncated = watch, answer, truncated
        self._pools: dict[str, _Pool] = {}
        self._sockets: dict[int, _Socket] = {}  # fd -> socket, retired ones included until they close
        self._deadlines: collections.deque[tuple[float, _Query, int]] = collections.deque()
        self._sweep_at = 0.0
        self.in_flight = 0

    def submit(self, query: bytes, q: wire.Question, servers: list[str], client: Any) -> None:
        """Forward ``query`` to the first of ``servers`` that answers usefully; the answer goes to ``client``."""
        self.in_flight += 1
        self._next(_Query(query, q, list(servers), client))

    def readable(self, fd: int) -> bool:
        """Take the answers queued on ``fd``; False when ``fd`` is not one of the forwarder's sockets."""
        s = self._sockets.get(fd)
        if s is None:
            return False
        while True:
            try:
                reply = s.sock.recv(wire.TCP_MAX)
            except BlockingIOError:
                return True
            except OSError as err:  # ICMP port unreachable and the like: the server is not serving
                log.debug("dns: upstream %s: %s", s.server, err)
                for p in list(s.pending.values()):
                    self._release(p)
                    self._next(p)
                if s.sock.fileno() < 0:
                    return True
                continue
            p = s.pending.get(int.from_bytes(reply[:2], "big")) if len(reply) >= 12 else None
            if p is None or not wire.is_response(reply) or not _same_question(reply, p.query, p.q.end):
                continue
            self._release(p)
            if wire.truncated(reply):
                self.in_flight -= 1
                self._truncated(p.client, p.query, p.q, [s.server, *p.servers])
            elif wire.rcode(reply) in (wire.SERVFAIL, wire.REFUSED):
                p.fallback = reply
                self._next(p)
            else:
                self._finish(p, reply)

    def expire(self) -> float | None:
        """Move on every query whose upstream did not answer in time; seconds until the next deadline."""
        now = time.monotonic()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, p, attempt = deadlines.popleft()
            if p.attempt == attempt and p.socket is not None:
                self._release(p)
                self._next(p)
        if self._sockets and now >= self._sweep_at:
            self._sweep(now)
        if deadlines:
            return max(deadlines[0][0] - now, 0.0)
        return max(self._sweep_at - now, 0.0) if self._sockets else None

    def close(self) -> None:
        for s in list(self._sockets.values()):
            self._close(s)
        self._pools.clear()

    # -- internals ---------------------------------------------------------------------------------

    def _next(self, p: _Query) -> None:
        """Send ``p`` to its next upstream, or give the client the last word when none is left."""
        while p.servers:
            server = p.servers.pop(0)
            try:
                pool, s = self._socket(server)
                qid = _ids.getrandbits(16)
                while qid in s.pending:
                    qid = _ids.getrandbits(16)
                s.sock.send(wire.with_id(p.query, qid))
            except OSError as err:
                log.debug("dns: upstream %s: %s", server, err)
                continue
            s.pending[qid] = p
            p.socket, p.qid = s, qid
            s.sent += 1
            if s.sent >= REOPEN:
                self._retire(pool, s)
            p.attempt += 1
            self._deadlines.append((time.monotonic() + self.timeout, p, p.attempt))
            return
        self._finish(p, p.fallback or wire.error(p.query, p.q, wire.SERVFAIL))

    def _finish(self, p: _Query, reply: bytes) -> None:
        self.in_flight -= 1
        self._answer(p.client, p.q, wire.with_id(reply, p.q.id))

    def _release(self, p: _Query) -> None:
        """``p`` no longer waits on its socket; a retired socket closes with its last query."""
        s = p.socket
        assert s is not None
        del s.pending[p.qid]
        p.socket = None
        if s.retired and not s.pending:
            self._close(s)

    def _socket(self, server: str) -> tuple[_Pool, _Socket]:
        """``server``'s pool and its next socket, opened as needed."""
        pool = self._pools.get(server)
        if pool is None:
            pool = self._pools[server] = _Pool(server)
        if len(pool.sockets) < POOL:
            s = _Socket(server, pool.family, pool.address)
            self._sockets[s.fd] = s
            self._watch(s.fd, True)
            pool.sockets.append(s)
        else:
            pool.turn = (pool.turn + 1) % POOL
            s = pool.sockets[pool.turn]
        return pool, s

    def _retire(self, pool: _Pool, s: _Socket) -> None:
        """No new queries on ``s``; it closes once nothing waits on it."""
        pool.sockets.remove(s)
        s.retired = True
        if not s.pending:
            self._close(s)

    def _sweep(self, now: float) -> None:
        """Retire sockets older than AGE, and forget pools left empty."""
        for server, pool in list(self._pools.items()):
            for s in [s for s in pool.sockets if now - s.opened >= AGE]:
                self._retire(pool, s)
            if not pool.sockets:
                del self._pools[server]
        self._sweep_at = now + 1.0

    def _close(self, s: _Socket) -> None:
        if self._sockets.pop(s.fd, None) is not None:
            self._watch(s.fd, False)
        s.sock.close()


def _same_question(reply: bytes, query: bytes, end: int) -> bool:
    """Whether ``reply`` repeats the query's question (the name in any case: some servers mix it)."""
    return (reply[4:6] == b"\x00\x01" and reply[12:end - 4].lower() == query[12:end - 4].lower()
            and reply[end - 4:end] == query[end - 4:end])
