"""berthd's DNS server: one asyncio loop in one thread, listening on every user network's gateway.

Containers on user-defined networks use their network's gateway address as nameserver. Names of
containers sharing a network with the querier are answered from the table (fast path, no parsing
library); everything else is forwarded to the upstream resolvers, from the host's network namespace
(so a resolver on 127.0.0.53 works too), over UDP with a TCP retry for truncated answers, or over TCP
for TCP queries. Internal networks answer container names but never forward.

Why in berthd and not a process per network: one loop serves any number of networks at no per-network
cost, and table updates are plain method calls made by the engine when it changes an endpoint, so the
next query sees the new state. A berthd restart re-binds in milliseconds; clients retry meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Callable

from berth.dns import wire
from berth.dns.table import NameTable

log = logging.getLogger("berth.dns")

PORT = 53
UPSTREAM_TIMEOUT = 2.0
MAX_UPSTREAMS = 3


class DnsServer:
    def __init__(self, table: NameTable, upstreams: Callable[[], list[str]],
                 search: Callable[[], list[str]] = list, port: int = PORT) -> None:
        self.table = table
        self.default_upstreams = upstreams
        self.search = search
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="dns", daemon=True)
        self._listeners: dict[str, list[Any]] = {}  # per network: its UDP socket and TCP server
        # Replies to repeated questions, minus the 2-byte id, valid for one table generation. Only
        # single-address answers are kept, so several containers behind one alias still rotate.
        self._cache: dict[tuple[str, bytes], bytes] = {}  # shared by the listener threads (GIL-atomic ops)
        self._cache_generation = -1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        for network_id in list(self._listeners):
            self.unlisten(network_id)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    # -- listeners (called from engine threads) ----------------------------------------------------

    def listen(self, network_id: str, address: IPv4Address | IPv6Address) -> None:
        """Serve ``address``:53 over UDP and TCP; returns once bound, raises OSError if it cannot bind."""
        if network_id in self._listeners:
            return
        future = asyncio.run_coroutine_threadsafe(self._bind(str(address)), self.loop)
        self._listeners[network_id] = future.result(timeout=10)

    async def _bind(self, address: str) -> list[Any]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: the bridge address may still be tentative
        udp.bind((address, self.port))
        udp.settimeout(0.5)  # lets the thread notice unlisten(); a blocked recvfrom ignores close()
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.setsockopt(socket.SOL_IP, 15, 1)
        tcp.bind((address, self.port))
        server = await asyncio.start_server(self._tcp_client, sock=tcp)
        threading.Thread(target=self._udp_loop, args=(udp,), name=f"dns-{address}", daemon=True).start()
        return [udp, server]

    def _udp_loop(self, sock: socket.socket) -> None:
        """The hot path, on its own thread: blocking receive, answer from the table, send.

        Names berth owns never touch the event loop (its per-datagram overhead halved the rate);
        only forwarded queries go there.
        """
        while sock.fileno() != -1:
            try:
                data, addr = sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self.answer_locally(data, addr[0])
            if reply is not None:
                try:
                    sock.sendto(reply, addr)
                except OSError:
                    pass
            else:
                asyncio.run_coroutine_threadsafe(self._forward_udp(sock, data, addr), self.loop)

    async def _forward_udp(self, sock: socket.socket, data: bytes, addr: tuple) -> None:
        reply = await self.forward(data, addr[0], tcp=False)
        if reply is not None:
            try:
                sock.sendto(reply, addr)
            except OSError:
                pass

    def unlisten(self, network_id: str) -> None:
        listeners = self._listeners.pop(network_id, [])

        def close() -> None:
            for item in listeners:
                item.close()

        if listeners:
            self.loop.call_soon_threadsafe(close)

    # -- answering -------------------------------------------------------------------------------

    def answer_locally(self, data: bytes, source: str) -> bytes | None:
        """The reply for names berth owns (or a refusal); None means: forward it."""
        if self._cache_generation != self.table.generation or len(self._cache) > 50_000:
            self._cache.clear()
            self._cache_generation = self.table.generation
        key = (source, data[2:])
        cached = self._cache.get(key)
        if cached is not None:
            return data[:2] + cached
        reply = self._answer(data, source)
        if reply is not None and struct.unpack_from("!H", reply, 6)[0] <= 1:
            self._cache[key] = reply[2:]
        return reply

    def _answer(self, data: bytes, source: str) -> bytes | None:
        try:
            q = wire.parse_question(data)
        except wire.WireError:
            return None if len(data) < 12 else data[:2] + b"\x81\x01" + data[4:12]  # FORMERR
        querier = ip_address(source)
        if q.qtype in (wire.A, wire.AAAA, wire.ANY):
            found = self.table.lookup(querier, q.name, 6 if q.qtype == wire.AAAA else 4)
            if found is not None:
                return wire.answer(data, q, found)
        elif q.qtype == wire.PTR:
            target = wire.reverse_name(q.name)
            if target is not None:
                name = self.table.ptr(querier, target)
                if name is not None:
                    return wire.answer_ptr(data, q, name)
        if q.qtype in (wire.A, wire.AAAA, wire.ANY) and self._expanded_local_name(querier, q.name):
            # "web.<search domain>" while "web" is a container the querier can reach: answer at once so the
            # resolver goes on to the bare name, whether or not an upstream is reachable (container names
            # win over search-domain expansion)
            return wire.error(data, q, wire.NXDOMAIN)
        if not self.table.policy(querier)[0]:
            return wire.error(data, q, wire.SERVFAIL)  # internal network: no way out
        return None

    def _expanded_local_name(self, querier: IPv4Address | IPv6Address, name: str) -> bool:
        for domain in self.search():
            suffix = "." + domain.lower().strip(".")
            if name.endswith(suffix) and self.table.lookup(querier, name[: -len(suffix)], 4) is not None:
                return True
        return False

    async def forward(self, data: bytes, source: str, tcp: bool) -> bytes | None:
        _, own = self.table.policy(ip_address(source))
        upstreams = list(own or self.default_upstreams())[:MAX_UPSTREAMS]
        for upstream in upstreams:
            try:
                if not tcp:
                    reply = await self._udp_query(upstream, data)
                    if not wire.truncated(reply):
                        return reply
                return await self._tcp_query(upstream, data)
            except (OSError, asyncio.TimeoutError) as err:
                log.debug("upstream %s failed: %s", upstream, err)
        try:
            return wire.error(data, wire.parse_question(data), wire.SERVFAIL)
        except wire.WireError:
            return None

    async def _udp_query(self, upstream: str, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()

        class Once(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, addr: tuple) -> None:
                if reply[:2] == data[:2] and not done.done():
                    done.set_result(reply)

        transport, _ = await loop.create_datagram_endpoint(Once, remote_addr=(upstream, 53))
        try:
            transport.sendto(data)
            return await asyncio.wait_for(done, UPSTREAM_TIMEOUT)
        finally:
            transport.close()

    async def _tcp_query(self, upstream: str, data: bytes) -> bytes:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(upstream, 53), UPSTREAM_TIMEOUT)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), UPSTREAM_TIMEOUT))[0]
            return await asyncio.wait_for(reader.readexactly(size), UPSTREAM_TIMEOUT)
        finally:
            writer.close()

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[0]
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
                reply = self.answer_locally(data, source) or await self.forward(data, source, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
