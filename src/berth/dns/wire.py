"""Just enough of the DNS wire format (RFC 1035, EDNS0 of RFC 6891) for berth's answers, built by hand.

Container-name answers are the hot path (every lookup between containers), so they are built directly
from the query bytes (header flags, the question copied, answers pointing back at it) instead of going
through a general-purpose DNS library. Forwarded messages are relayed as raw bytes; only their header
is touched (the id, and the TC bit when a UDP client cannot take the whole answer).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, OPT, ANY = 1, 2, 5, 6, 12, 15, 16, 28, 41, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended rcode: only its high bits travel in the OPT record
CLASS_IN = 1

UDP_PLAIN = 512  # a UDP client without EDNS takes no more than this (RFC 1035 §4.2.1)
UDP_OURS = 1232  # what berth offers in its OPT record: fits any path MTU without fragments (DNS flag day 2020)
TCP_MAX = 65535

_QR, _AA, _TC, _RD, _RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHHIH")


class WireError(ValueError):
    """A message that is not a well-formed single-question query."""


@dataclass(frozen=True, slots=True)
class Question:
    """The parts of a query an answer needs; ``end`` is where the question section stops."""

    id: int
    flags: int
    name: str          # lower case, no trailing dot; a dot inside a label is escaped as "\."
    qtype: int
    qclass: int
    end: int
    edns: bool = False
    edns_version: int = 0
    udp_limit: int = UDP_PLAIN

    @property
    def recursion_desired(self) -> bool:
        return bool(self.flags & _RD)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0x0F


def is_response(data: bytes) -> bool:
    """Responses are never answered: replying to one could start a loop between two servers."""
    return len(data) >= 3 and bool(data[2] & 0x80)


def parse_question(data: bytes) -> Question:
    """The question (and EDNS0 OPT record, if any) of a query; raises WireError on anything else."""
    if len(data) < 12:
        raise WireError("short message")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & _QR or qdcount != 1:
        raise WireError("not a single-question query")
    labels = []
    pos = 12
    size = len(data)
    while True:
        if pos >= size:
            raise WireError("truncated name")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            raise WireError("compressed name in question")
        label = data[pos + 1:pos + 1 + length]
        if len(label) != length:
            raise WireError("truncated name")
        if b"." in label:
            label = label.replace(b".", b"\\.")
        labels.append(label)
        pos += 1 + length
    if pos + 4 > size or pos > 12 + 255:
        raise WireError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    end = pos + 4
    name = b".".join(labels).decode("ascii", "backslashreplace").lower()
    if ancount == nscount == 0 and arcount == 1 and end + 11 <= size and data[end] == 0:
        rtype, payload, ext = struct.unpack_from("!HHI", data, end + 1)
        if rtype == OPT:
            return Question(qid, flags, name, qtype, qclass, end, True, (ext >> 16) & 0xFF, max(UDP_PLAIN, payload))
    return Question(qid, flags, name, qtype, qclass, end)


def _opt(ext_rcode: int = 0) -> bytes:
    """berth's OPT record: root owner, our UDP size, the high bits of the rcode, version 0, no options."""
    return b"\x00" + struct.pack("!HHIH", OPT, UDP_OURS, ext_rcode << 24, 0)


def _message(query: bytes, q: Question, rcode: int, records: list[bytes], authoritative: bool) -> bytes:
    flags = _QR | (q.flags & _RD) | _RA | (rcode & 0x0F)
    if authoritative:
        flags |= _AA
    tail = _opt(rcode >> 4) if q.edns else b""
    return (_HEADER.pack(q.id, flags, 1, len(records), 0, 1 if q.edns else 0)
            + query[12:q.end] + b"".join(records) + tail)


def _encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii", "replace")[:63]
        out += bytes([len(raw)]) + raw
    return bytes(out) + b"\x00"


def answer(query: bytes, q: Question, addresses: list[IPv4Address | IPv6Address], ttl: int = 0) -> bytes:
    """A/AAAA answers for the question's name (NOERROR with no answers when only the other family exists)."""
    records = [_RR.pack(0xC00C, AAAA if a.version == 6 else A, CLASS_IN, ttl, len(a.packed)) + a.packed
               for a in addresses]
    return _message(query, q, NOERROR, records, True)


def answer_ptr(query: bytes, q: Question, target: str, ttl: int = 0) -> bytes:
    rdata = _encode_name(target)
    return _message(query, q, NOERROR, [_RR.pack(0xC00C, PTR, CLASS_IN, ttl, len(rdata)) + rdata], True)


def error(query: bytes, q: Question, rcode: int) -> bytes:
    """An answer without records; rcodes above 15 (BADVERS) need the query to carry EDNS."""
    return _message(query, q, rcode, [], rcode == NXDOMAIN)


def header_error(data: bytes, rcode: int) -> bytes:
    """FORMERR/NOTIMP for a message whose question cannot be used: the header alone, counts zeroed."""
    flags = struct.unpack_from("!H", data, 2)[0]
    return struct.pack("!HHHHHH", struct.unpack_from("!H", data)[0], _QR | (flags & (_RD | 0x7800)) | rcode, 0, 0, 0, 0)


def fit(reply: bytes, q: Question, limit: int) -> bytes:
    """The reply if it fits ``limit`` bytes, else its header with TC set and the question: retry over TCP."""
    if len(reply) <= limit:
        return reply
    flags = struct.unpack_from("!H", reply, 2)[0] | _TC
    return (_HEADER.pack(q.id, flags, 1, 0, 0, 1 if q.edns else 0) + reply[12:q.end]
            + (_opt() if q.edns else b""))


def truncated(response: bytes) -> bool:
    return len(response) >= 4 and bool(response[2] & 0x02)


def rcode(response: bytes) -> int:
    return response[3] & 0x0F if len(response) >= 4 else SERVFAIL


def with_id(message: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid) + message[2:]


def reverse_name(name: str) -> IPv4Address | IPv6Address | None:
    """The address a PTR question asks about, or None when the name is not a reverse name."""
    if name.endswith(".in-addr.arpa"):
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
            try:
                return IPv4Address(".".join(reversed(parts)))
            except ValueError:
                return None
    if name.endswith(".ip6.arpa"):
        nibbles = name[: -len(".ip6.arpa")].split(".")
        if len(nibbles) == 32 and all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            return IPv6Address(int("".join(reversed(nibbles)), 16))
    return None
