"""The batched UDP path: replies written over their queries go back to each sender, whatever was skipped.

Loopback sockets only (127.0.0.1 and ::1), no root needed.
"""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

from berth.dns import batch


def pair(family: int, host: str) -> tuple[socket.socket, list[socket.socket]]:
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    clients = []
    for _ in range(3):
        client = socket.socket(family, socket.SOCK_DGRAM)
        client.bind((host, 0))
        client.settimeout(5)
        clients.append(client)
    return server, clients


@pytest.fixture(params=[(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")], ids=["ipv4", "ipv6"])
def sockets(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    try:
        server, clients = pair(*request.param)
    except OSError as err:
        pytest.skip(f"no {request.param[1]} here: {err}")
    yield server, clients
    for s in (server, *clients):
        s.close()


def receive_all(b: batch.Batch, fd: int, count: int, known: dict[bytes, bytes] | None = None
                ) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    for _ in range(1000):  # the datagrams are on loopback: they are queued by the time sendto returns
        got = b.receive(fd, known or {})
        if b.received:
            break
    assert b.received == count
    return got


def test_every_query_answered_goes_back_to_its_sender_with_its_id(sockets) -> None:
    server, clients = sockets
    b = batch.Batch(server.family)
    for i, client in enumerate(clients):
        client.sendto(bytes([0xA0, i]) + b"question-%d" % i, server.getsockname())
    received = receive_all(b, server.fileno(), 3)
    for slot, key in received:
        assert b.host(key) == socket.inet_pton(server.family, server.getsockname()[0])
        assert b.sender(slot)[1] == clients[slot].getsockname()[1]
        assert b.message(slot, key) == bytes([0xA0, slot]) + b"question-%d" % slot
        b.reply(slot, b"answer-%d" % slot)  # the id stays where the query had it
    assert b.send(server.fileno()) == 3
    for i, client in enumerate(clients):
        assert client.recv(100) == bytes([0xA0, i]) + b"answer-%d" % i


def test_known_replies_are_sent_for_the_same_message_from_the_same_address_whatever_the_id(sockets) -> None:
    server, clients = sockets
    b = batch.Batch(server.family)
    clients[0].sendto(b"\x00\x01same question", server.getsockname())
    [(slot, key)] = receive_all(b, server.fileno(), 1)
    known = {key: b"known answer"}
    b.reply(slot, b"first answer")
    b.send(server.fileno())
    assert clients[0].recv(100) == b"\x00\x01first answer"
    for i, client in enumerate(clients):  # every client shares the address: the port is not in the key
        client.sendto(bytes([0xB0, i]) + b"same question", server.getsockname())
    clients[1].sendto(b"\xC0\x00other question", server.getsockname())
    others = receive_all(b, server.fileno(), 4, known)
    assert [b.message(slot, key) for slot, key in others] == [b"\xC0\x00other question"]
    assert b.send(server.fileno()) == 3
    for i, client in enumerate(clients):
        assert client.recv(100) == bytes([0xB0, i]) + b"known answer"


def test_unanswered_queries_are_skipped_and_slots_are_reused(sockets) -> None:
    server, clients = sockets
    b = batch.Batch(server.family)
    for round_ in range(2):
        for i, client in enumerate(clients):
            client.sendto(b"q%d%d-long-enough-to-overwrite" % (round_, i), server.getsockname())
        received = receive_all(b, server.fileno(), 3)
        for slot, _ in reversed(received):  # in any order
            if slot != 1:
                b.reply(slot, b"r%d%d" % (round_, slot))
        assert b.send(server.fileno()) == 2
        assert clients[0].recv(100) == b"q%dr%d0" % (round_, round_)  # the id is the first two bytes
        assert clients[2].recv(100) == b"q%dr%d2" % (round_, round_)
    clients[1].settimeout(0.05)
    with pytest.raises(TimeoutError):
        clients[1].recv(100)


def test_a_reply_larger_than_a_slot_is_left_to_the_caller(sockets) -> None:
    server, clients = sockets
    b = batch.Batch(server.family)
    clients[0].sendto(b"query", server.getsockname())
    [(slot, _)] = receive_all(b, server.fileno(), 1)
    assert not b.reply(slot, b"x" * (batch.MESSAGE - 1))
    assert b.send(server.fileno()) == 0
