"""Just enough of the DNS wire format for the fast path: read the question, build answers by hand.

Container-name answers are the hot path (every lookup between containers), so they are built directly
from the query bytes (header flags, the question copied, answers pointing back at it) instead of going
through a general-purpose DNS library. Anything else is forwarded as raw bytes and never parsed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, ANY = 1, 2, 5, 6, 12, 15, 16, 28, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
CLASS_IN = 1


class WireError(ValueError):
    """A message that is not a well-formed single-question query."""


@dataclass(frozen=True)
class Question:
    id: int
    flags: int
    name: str          # lower case, no trailing dot
    qtype: int
    qclass: int
    end: int           # offset just after the question section

    @property
    def recursion_desired(self) -> bool:
        return bool(self.flags & 0x0100)


def parse_question(data: bytes) -> Question:
    if len(data) < 12:
        raise WireError("short message")
    qid, flags, qdcount = struct.unpack_from("!HHH", data)
    if flags & 0x8000 or qdcount != 1:
        raise WireError("not a single-question query")
    labels = []
    pos = 12
    while True:
        if pos >= len(data):
            raise WireError("truncated name")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            raise WireError("compressed name in question")
        labels.append(data[pos + 1:pos + 1 + length].decode("ascii", "replace").lower())
        pos += 1 + length
    if pos + 4 > len(data):
        raise WireError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Question(qid, flags, ".".join(labels), qtype, qclass, pos + 4)


def _header(q: Question, rcode: int, ancount: int, authoritative: bool = True) -> bytes:
    flags = 0x8000 | (q.flags & 0x0100) | 0x0080 | rcode  # QR, copy RD, RA
    if authoritative:
        flags |= 0x0400
    return struct.pack("!HHHHHH", q.id, flags, 1, ancount, 0, 0)


def _encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii", "replace")[:63]
        out += bytes([len(raw)]) + raw
    return bytes(out) + b"\x00"


def answer(query: bytes, q: Question, addresses: list[IPv4Address | IPv6Address], ttl: int = 0) -> bytes:
    """A/AAAA answers for the question's name (NOERROR with no answers when only the other family exists)."""
    question = query[12:q.end]
    records = b"".join(
        struct.pack("!HHHIH", 0xC00C, AAAA if a.version == 6 else A, CLASS_IN, ttl, len(a.packed)) + a.packed
        for a in addresses
    )
    return _header(q, NOERROR, len(addresses)) + question + records


def answer_ptr(query: bytes, q: Question, target: str, ttl: int = 0) -> bytes:
    question = query[12:q.end]
    rdata = _encode_name(target)
    return _header(q, NOERROR, 1) + question + struct.pack("!HHHIH", 0xC00C, PTR, CLASS_IN, ttl, len(rdata)) + rdata


def error(query: bytes, q: Question, rcode: int) -> bytes:
    return _header(q, rcode, 0, authoritative=False) + query[12:q.end]


def truncated(response: bytes) -> bool:
    return len(response) >= 4 and bool(response[2] & 0x02)


def reverse_name(name: str) -> IPv4Address | IPv6Address | None:
    """The address a PTR question asks about, or None when the name is not a reverse name."""
    if name.endswith(".in-addr.arpa"):
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            try:
                return IPv4Address(".".join(reversed(parts)))
            except ValueError:
                return None
    if name.endswith(".ip6.arpa"):
        nibbles = name[: -len(".ip6.arpa")].split(".")
        if len(nibbles) == 32:
            try:
                return IPv6Address(int("".join(reversed(nibbles)), 16))
            except ValueError:
                return None
    return None
