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


def receive_all(b: batch.Batch, fd: int, count: int) -> list[tuple[int, bytes, bytes]]:
    got: list[tuple[int, bytes, bytes]] = []
    for _ in range(1000):  # the datagrams are on loopback: they are queued by the time sendto returns
        got = b.receive(fd)
        if got:
            break
    assert len(got) == count
    return got


def test_every_query_answered_goes_back_to_its_sender_with_its_id(sockets) -> None:
    server, clients = sockets
    b = batch.Batch()
    for i, client in enumerate(clients):
        client.sendto(bytes([0xA0, i]) + b"question-%d" % i, server.getsockname())
    received = receive_all(b, server.fileno(), 3)
    for slot, host, question in received:
        assert host == socket.inet_pton(server.family, server.getsockname()[0])
        assert b.sender(slot)[1] == clients[slot].getsockname()[1]
        assert b.message(slot) == bytes([0xA0, slot]) + question
        b.reply(slot, b"answer-%d" % slot, 2)  # the id stays where the query had it
    assert b.send(server.fileno()) == 3
    for i, client in enumerate(clients):
        assert client.recv(100) == bytes([0xA0, i]) + b"answer-%d" % i


def test_unanswered_queries_are_skipped_and_slots_are_reused(sockets) -> None:
    server, clients = sockets
    b = batch.Batch()
    for round_ in range(2):
        for i, client in enumerate(clients):
            client.sendto(b"q%d%d-long-enough-to-overwrite" % (round_, i), server.getsockname())
        received = receive_all(b, server.fileno(), 3)
        for slot, _, _ in received:
            if slot != 1:
                b.reply(slot, b"r%d%d" % (round_, slot))
        assert b.send(server.fileno()) == 2
        assert clients[0].recv(100) == b"r%d0" % round_
        assert clients[2].recv(100) == b"r%d2" % round_
    clients[1].settimeout(0.05)
    with pytest.raises(TimeoutError):
        clients[1].recv(100)


def test_a_reply_larger_than_a_slot_is_left_to_the_caller(sockets) -> None:
    server, clients = sockets
    b = batch.Batch()
    clients[0].sendto(b"query", server.getsockname())
    [(slot, _, _)] = receive_all(b, server.fileno(), 1)
    assert not b.reply(slot, b"x" * (batch.MESSAGE - 1), 2)
    assert b.send(server.fileno()) == 0
