"""Upstream resolvers: the host's, re-read when /etc/resolv.conf changes, and queries sent to them.

berthd forwards from the host's network namespace, so the host's own resolvers work as they are
(systemd-resolved on 127.0.0.53 included, and link-local servers with a zone such as ``fe80::1%eth0``).
UDP queries are forwarded by ``forward``; TCP ones (and retries of answers truncated over UDP) here,
a fresh connection per query with a random id.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from pathlib import Path

from berth.dns import wire
from berth.ipam.pools import nameservers

DNS_PORT = 53


class HostResolvConf:
    """The host's nameservers and search list, re-read only when the file changes (mtime and inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._servers: list[str] = []
        self._search: list[str] = []

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino)
            if stamp == self._stamp:
                return
            text = self.path.read_text()
        except OSError:
            self._stamp, self._servers, self._search = None, [], []
            return
        self._stamp = stamp
        self._servers = [str(ns) for ns in nameservers(text)]
        search: list[str] = []
        for line in text.splitlines():
            words = line.split()
            if words[:1] in (["search"], ["domain"]):
                search = words[1:]
        self._search = search

    def nameservers(self) -> list[str]:
        """Upstreams for forwarded queries (the host's own, loopback ones included: berthd runs on the host)."""
        self._refresh()
        return list(self._servers)

    def search(self) -> list[str]:
        self._refresh()
        return list(self._search)


def sockaddr(server: str) -> tuple[int, tuple]:
    """(address family, socket address) of a resolver given as a numeric address, zone allowed."""
    family, _, _, _, addr = socket.getaddrinfo(server, DNS_PORT, type=socket.SOCK_DGRAM,
                                               flags=socket.AI_NUMERICHOST)[0]
    return family, addr


def _matches(reply: bytes, qid: int) -> bool:
    return len(reply) >= 12 and struct.unpack_from("!H", reply)[0] == qid and wire.is_response(reply)


async def query_tcp(server: str, query: bytes, timeout: float) -> bytes:
    """One query over TCP (RFC 7766 framing); raises OSError, TimeoutError or IncompleteReadError."""
    family, addr = sockaddr(server)
    qid = random.getrandbits(16)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(addr[0], addr[1], family=family)
        try:
            message = wire.with_id(query, qid)
            writer.write(struct.pack("!H", len(message)) + message)
            await writer.drain()
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = await reader.readexactly(size)
                if _matches(reply, qid):
                    return reply
        finally:
            writer.close()
