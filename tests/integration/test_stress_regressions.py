"""Regressions found by the stress suite (stress/), each checked the way a client would see it."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.integration


def test_many_clients_connecting_at_once_are_all_accepted(host):
    # docker and docker-py connect non-blocking: a full listen backlog is an error for them, not a wait
    clients = []
    try:
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            clients.append(s)
            s.connect(str(host.socket))
        for s in clients:
            s.setblocking(True)
            s.settimeout(30)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
        for s in clients:
            assert s.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for s in clients:
            s.close()
