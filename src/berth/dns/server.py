"""berthd's DNS server, listening on every user network's gateway: a UDP thread and an asyncio thread.

Containers on user-defined networks use their network's gateway address as nameserver. Names of
containers sharing a network with the querier are answered from the table, by hand-built replies
(``wire``); everything else is forwarded to the upstream resolvers from the host's network namespace
(so a resolver on 127.0.0.53 works too), over UDP with a TCP retry for truncated answers, or over TCP
for TCP queries. At most three upstreams are tried.

Policy choices:
- Internal networks answer container names but never forward: other names get REFUSED. REFUSED,
  not SERVFAIL, because SERVFAIL means "try again" and makes some stub resolvers (musl) retry until
  they time out; REFUSED fails at once. A container that is also on a non-internal network forwards.
- Only containers berth serves get answers: a source address that is not a container endpoint on
  the listener's network gets REFUSED, so a gateway address never becomes an open resolver.
- Container-name answers have TTL 0 (aardvark-dns's choice; Docker uses 600): the table changes the
  moment a container goes, and a cached answer would outlive it.

Why one server in berthd and not a process per network: any number of networks costs nothing extra,
and table updates are plain method calls made by the engine, so the next query sees the new state.

Two threads. UDP, nearly all of the load, is served by a thread of its own that waits with one epoll
on every network's UDP socket and on the sockets to the upstreams: no event loop bookkeeping, no task
or future per query. A readable listener is drained in batches (``recvmmsg``/``sendmmsg``, replies
written in place, see ``batch``); a question already answered for the same querier since the table
last changed is answered inside the batch with one dict lookup, from replies every table change
empties, so answers are never stale. Forwarded UDP queries go out and come back in that same thread
(``forward``: pooled connected sockets, random ids). TCP clients, and retries over TCP of answers
truncated over UDP, run on an asyncio loop in the second thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import select
import socket
import struct
import threading
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Callable

from berth.dns import batch, wire
from berth.dns.forward import Forwarder
from berth.dns.table import NameTable
from berth.dns.upstream import query_tcp

log = logging.getLogger("berth.dns")

PORT = 53
UPSTREAM_TIMEOUT = 1.5  # per upstream: three of them still answer within glibc's 5 s client timeout
MAX_UPSTREAMS = 3       # Docker tries at most three, like a stub resolver's MAXNS
MAX_FORWARDS = 1024     # forwarded queries in flight; beyond that clients get SERVFAIL at once
TCP_IDLE = 10.0         # seconds a TCP client may stay silent before it is dropped
BURST = 256             # datagrams handled per wake-up of one socket, so one busy network cannot starve another
CACHE_MAX = 50_000

_IP_FREEBIND = 15    # bind before the gateway address exists or while IPv6 DAD still holds it tentative
_IPV6_FREEBIND = 78


class _Listener:
    """The UDP socket and TCP server on one address."""

    def __init__(self, udp: socket.socket, tcp: asyncio.AbstractServer) -> None:
        self.udp, self.tcp = udp, tcp


class _Udp:
    """A UDP socket as the UDP thread serves it: its network, its family's batch, and the replies it knows.

    ``known`` maps a datagram's key (sender's address and message without id, see ``batch``) to the
    reply after the id, for one table generation. Only answers with at most one address are kept, so
    several containers behind one alias still rotate.
    """

    __slots__ = ("sock", "fd", "via", "batch", "known")

    def __init__(self, sock: socket.socket, via: str, b: batch.Batch) -> None:
        self.sock, self.fd, self.via, self.batch = sock, sock.fileno(), via, b
        self.known: dict[bytes, bytes] = {}


def _socket(address: str, port: int, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


class DnsServer:
    """Embedded DNS for all user networks. ``listen``/``unlisten`` are called from engine threads."""

    def __init__(self, table: NameTable, upstreams: Callable[[], list[str]] = list,
                 search: Callable[[], list[str]] = list, port: int = PORT, *,
                 timeout: float = UPSTREAM_TIMEOUT) -> None:
        self.table = table
        self.default_upstreams = upstreams  # the host's resolvers, asked at each forward so changes apply at once
        self.search = search                # the host's search domains (see _expanded_local_name)
        self.port = port
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="berth-dns", daemon=True)
        self._udp_thread = threading.Thread(target=self._serve_udp, name="berth-dns-udp", daemon=True)
        self._lock = threading.Lock()  # serialises listen/unlisten from several engine threads
        self._listeners: dict[str, dict[str, _Listener]] = {}  # network id -> address -> listener
        # A copy of the listened addresses, replaced whole under _lock and read without it: the loop
        # thread reads it while an engine thread may hold _lock waiting for the loop.
        self._addresses: frozenset[str] = frozenset()
        self._tcp_forwards = 0  # forwarded TCP queries in flight (loop thread)
        # The UDP thread's own state: its epoll, its listeners by fd, its forwarder, and the
        # requests other threads leave it (add a socket, close some, stop), signalled through an eventfd.
        # Made by start(), so a server that only answers calls to respond() holds no descriptors.
        self._epoll: select.epoll | None = None
        self._wake = -1
        self._udp: dict[int, _Udp] = {}
        self._requests: collections.deque[tuple[str, Any, threading.Event | None]] = collections.deque()
        self._batches: dict[int, batch.Batch] = {}  # address family -> the UDP thread's buffers for it
        self._generation = -1  # the table generation the sockets' known replies belong to
        self._forwarder = Forwarder(timeout, self._watch, self._forwarded, self._truncated)

    # -- lifecycle and listeners (engine threads) -------------------------------------------------

    def start(self) -> None:
        """Start both threads; listeners can be added from then on."""
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._thread.start()
        self._udp_thread.start()

    def stop(self) -> None:
        """Close every listener and stop both threads."""
        with self._lock:
            networks = list(self._listeners)
        for network_id in networks:
            self.unlisten(network_id)
        if self._udp_thread.is_alive():
            self._ask_udp("stop", None, wait=False)
            self._udp_thread.join(timeout=5)
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()
        if self._epoll is not None and not self._udp_thread.is_alive():
            self._forwarder.close()
            self._epoll.close()
            os.close(self._wake)
            self._epoll, self._wake = None, -1

    def _call(self, coro: Any) -> Any:
        if not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the DNS server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def _ask_udp(self, what: str, arg: Any, wait: bool) -> None:
        """Leave the UDP thread a request; with ``wait``, return once it has been carried out."""
        done = threading.Event() if wait else None
        self._requests.append((what, arg, done))
        os.eventfd_write(self._wake, 1)
        if done is not None and not done.wait(timeout=10):
            raise RuntimeError("the DNS server's UDP thread does not answer")

    def listen(self, network_id: str, address: IPv4Address | IPv6Address) -> None:
        """Serve ``address``:53 over UDP and TCP for a network; returns once bound, raises OSError if it cannot.

        Idempotent; call it once per gateway address (IPv4 and IPv6 both work).
        """
        key = str(address)
        with self._lock:
            if key in self._listeners.get(network_id, {}):
                return
            udp = _socket(key, self.port, socket.SOCK_DGRAM)
            try:
                tcp = self._call(self._bind_tcp(network_id, key))
            except BaseException:
                udp.close()
                raise
            self._ask_udp("add", (udp, network_id), wait=False)  # bound: queries queue until it polls
            self._listeners.setdefault(network_id, {})[key] = _Listener(udp, tcp)
            self._addresses = self._addresses | {key}

    def unlisten(self, network_id: str) -> None:
        """Stop serving a network; its ports are free when this returns. A network not served is fine."""
        with self._lock:
            listeners = self._listeners.pop(network_id, {})
            if not listeners:
                return
            self._addresses = self._addresses - set(listeners)
            if self._udp_thread.is_alive():
                self._ask_udp("close", [listener.udp for listener in listeners.values()], wait=True)
            else:
                for listener in listeners.values():
                    listener.udp.close()
            if self._thread.is_alive():
                self._call(self._close_tcp([listener.tcp for listener in listeners.values()]))

    def addresses(self) -> set[str]:
        """Every address berth's DNS listens on (a forward to one of them would loop back)."""
        return set(self._addresses)

    async def _bind_tcp(self, network_id: str, address: str) -> asyncio.AbstractServer:
        sock = _socket(address, self.port, socket.SOCK_STREAM)
        try:
            return await asyncio.start_server(lambda r, w: self._tcp_client(r, w, network_id), sock=sock)
        except OSError:
            sock.close()
            raise

    @staticmethod
    async def _close_tcp(servers: list[asyncio.AbstractServer]) -> None:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()

    # -- UDP (its own thread) ---------------------------------------------------------------------

    def _serve_udp(self) -> None:
        """Wait on every UDP socket at once (listeners and upstreams) until asked to stop."""
        assert self._epoll is not None
        poll, forwarder = self._epoll.poll, self._forwarder
        timeout: float | None = None
        while True:
            for fd, _ in poll(-1 if timeout is None else timeout):
                udp = self._udp.get(fd)
                if udp is not None:
                    self._on_datagrams(udp)
                elif fd == self._wake:
                    if not self._handle_requests():
                        return
                else:
                    forwarder.readable(fd)  # False: closed by a request handled earlier in this round
            timeout = forwarder.expire()

    def _handle_requests(self) -> bool:
        """Carry out what other threads asked for; False once asked to stop."""
        assert self._epoll is not None
        os.eventfd_read(self._wake)
        running = True
        while self._requests:
            what, arg, done = self._requests.popleft()
            if what == "add":
                sock, network_id = arg
                b = self._batches.get(sock.family)
                if b is None:
                    b = self._batches[sock.family] = batch.Batch(sock.family)
                self._udp[sock.fileno()] = _Udp(sock, network_id, b)
                self._epoll.register(sock.fileno(), select.EPOLLIN)
            elif what == "close":
                for sock in arg:
                    if self._udp.pop(sock.fileno(), None) is not None:
                        self._epoll.unregister(sock.fileno())
                    sock.close()
            else:
                running = False
            if done is not None:
                done.set()
        return running

    def _watch(self, fd: int, on: bool) -> None:
        """Add or remove one of the forwarder's upstream sockets (UDP thread only)."""
        assert self._epoll is not None
        if on:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            self._epoll.unregister(fd)

    def _on_datagrams(self, udp: _Udp) -> None:
        """Answer what is queued on a UDP socket, a batch per system call; known questions inside ``batch``."""
        generation = self.table.generation  # read before any answer is made from the table
        if generation != self._generation:
            for other in self._udp.values():
                other.known.clear()
            self._generation = generation
        b, fd, known, via = udp.batch, udp.fd, udp.known, udp.via
        for _ in range(max(1, BURST // batch.SIZE)):
            for slot, key in b.receive(fd, known):
                data = b.message(slot, key)
                querier = ip_address(b.host(key))
                reply, cacheable = self._answer(data, querier, via)
                if isinstance(reply, wire.Question):
                    self._forwarder.submit(data, reply, self._upstreams(querier, via), (udp.sock, b.sender(slot)))
                elif reply:
                    if cacheable:
                        if len(known) >= CACHE_MAX:
                            known.clear()
                        known[key] = reply[2:]
                    if not b.reply(slot, reply[2:]):
                        self._send_one(udp.sock, reply, b.sender(slot))
            b.send(fd)  # a full send buffer drops replies: clients retry
            if b.received < batch.SIZE:
                return

    def _forwarded(self, client: tuple[socket.socket, tuple], q: wire.Question, reply: bytes) -> None:
        """The forwarder's last word for a UDP client, cut to what the client takes."""
        self._send_one(client[0], wire.fit(reply, q, q.udp_limit), client[1])

    def _truncated(self, client: tuple[socket.socket, tuple], data: bytes, q: wire.Question,
                   servers: list[str]) -> None:
        """An upstream's answer did not fit UDP: ask again over TCP, on the loop thread."""
        self.loop.call_soon_threadsafe(self._start_retry, client, data, q, servers)

    @staticmethod
    def _send_one(sock: socket.socket, reply: bytes, peer: tuple) -> None:
        try:
            sock.sendto(reply, peer)
        except OSError as err:  # closed meanwhile, or a full buffer: the client retries
            log.debug("dns: send to %s: %s", peer, err)

    # -- TCP and TCP retries (loop thread) --------------------------------------------------------

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, via: str) -> None:
        source = writer.get_extra_info("peername")[0]
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    data = await reader.readexactly(size)
                reply = self.respond(data, source, via, tcp=True)
                if isinstance(reply, wire.Question):
                    reply = await self._forward_tcp(data, reply, self._upstreams(ip_address(source), via))
                if not reply:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    def _start_retry(self, client: tuple[socket.socket, tuple], data: bytes, q: wire.Question,
                     servers: list[str]) -> None:
        self.loop.create_task(self._retry_tcp(client, data, q, servers)).add_done_callback(self._retry_done)

    async def _retry_tcp(self, client: tuple[socket.socket, tuple], data: bytes, q: wire.Question,
                         servers: list[str]) -> None:
        reply = await self._forward_tcp(data, q, servers)
        self._send_one(client[0], wire.fit(reply, q, q.udp_limit), client[1])

    @staticmethod
    def _retry_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("dns: forwarding failed", exc_info=task.exception())

    async def _forward_tcp(self, data: bytes, q: wire.Question, servers: list[str]) -> bytes:
        """The first useful TCP answer of ``servers``, in the client's id; SERVFAIL when none answers.

        SERVFAIL or REFUSED from one upstream moves on to the next, as a stub resolver would.
        """
        self._tcp_forwards += 1
        try:
            fallback = None
            for server in servers:
                try:
                    reply = await query_tcp(server, data, self.timeout)
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
                    log.debug("dns: upstream %s: %s", server, err or type(err).__name__)
                    continue
                reply = wire.with_id(reply, q.id)
                if wire.rcode(reply) not in (wire.SERVFAIL, wire.REFUSED):
                    return reply
                fallback = reply
            return fallback or wire.error(data, q, wire.SERVFAIL)
        finally:
            self._tcp_forwards -= 1

    # -- answering -------------------------------------------------------------------------------

    def respond(self, data: bytes, source: str, via: str | None, tcp: bool = False) -> bytes | wire.Question:
        """The reply to a message from ``source`` on network ``via``: bytes (empty: stay silent), or
        the parsed question when it must be forwarded."""
        try:
            querier = ip_address(source)
        except ValueError:
            return b""
        return self._answer(data, querier, via, tcp)[0]

    def _answer(self, data: bytes, querier: IPv4Address | IPv6Address, via: str | None,
                tcp: bool = False) -> tuple[bytes | wire.Question, bool]:
        """``respond``'s answer, and whether the same message from the same querier may get it again
        until the table changes."""
        if len(data) < 12 or wire.is_response(data):
            return b"", False
        try:
            q = wire.parse_question(data)
        except wire.WireError:
            return wire.header_error(data, wire.FORMERR), False
        if q.opcode != 0:
            return wire.header_error(data, wire.NOTIMP), False
        if q.edns and q.edns_version != 0:
            return wire.error(data, q, wire.BADVERS), False
        reply, cacheable = self._local(data, q, querier, via)
        if reply is not None:
            return wire.fit(reply, q, wire.TCP_MAX if tcp else q.udp_limit), cacheable
        policy = self.table.policy(querier, via=via)
        if policy is None or not policy.forward:
            return wire.error(data, q, wire.REFUSED), False
        if q.qtype in (wire.A, wire.AAAA, wire.ANY) and self._expanded_local_name(querier, q.name, via):
            return wire.error(data, q, wire.NXDOMAIN), False
        if self._forwarder.in_flight + self._tcp_forwards >= MAX_FORWARDS:
            return wire.error(data, q, wire.SERVFAIL), False
        return q, False

    def _local(self, data: bytes, q: wire.Question, querier: IPv4Address | IPv6Address,
               via: str | None) -> tuple[bytes | None, bool]:
        """berth's own answer and whether it may be cached, or (None, False) when the name is not berth's."""
        if q.qclass != wire.CLASS_IN:
            return None, False
        found = self.table.lookup(querier, q.name, q.qtype, via=via)
        if found is not None:
            return wire.answer(data, q, found), len(found) <= 1
        if q.qtype == wire.PTR:
            target = wire.reverse_name(q.name)
            name = self.table.ptr(querier, target, via=via) if target is not None else None
            if name is not None:
                return wire.answer_ptr(data, q, name), True
        return None, False

    def _expanded_local_name(self, querier: IPv4Address | IPv6Address, name: str, via: str | None) -> bool:
        """``web.<search domain>`` while ``web`` is a container the querier sees.

        Answered NXDOMAIN at once, so the stub resolver goes on to the bare name whether or not an
        upstream is reachable: container names win over search-domain expansion.
        """
        for domain in self.search():
            suffix = "." + domain.lower().strip(".")
            if name.endswith(suffix) and self.table.owns(querier, name[: -len(suffix)], via=via):
                return True
        return False

    def _upstreams(self, querier: IPv4Address | IPv6Address, via: str | None) -> list[str]:
        """Where the querier's other questions go: its own ``--dns`` servers, else the host's, never
        berth's own listeners (that would loop), at most three."""
        policy = self.table.policy(querier, via=via)
        own = self._addresses
        candidates = policy.upstreams if policy and policy.upstreams else self.default_upstreams()
        return [u for u in candidates if u not in own][:MAX_UPSTREAMS]
