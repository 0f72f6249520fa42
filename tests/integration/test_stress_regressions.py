"""Regressions found by the stress suite (stress/), each checked the way a client would see it."""

from __future__ import annotations

import socket

import pytest

from tests.helpers import inspect, ok, poll

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


def _crash_at(host, step: str, monkeypatch, *run_args: str) -> None:
    """Restart berthd so that it dies (kill -9 style) at ``step`` of the next ``run``, then start it again."""
    host.stop_berthd()
    monkeypatch.setenv("BERTH_FAULT", f"{step}:crash")
    host.start_berthd()
    monkeypatch.delenv("BERTH_FAULT")
    assert host.berth("run", "-d", "--name", "victim", *run_args, "bb", "sleep", "600").returncode != 0
    host.kill_berthd()  # reaps the dead one
    host.start_berthd()


def test_a_crash_after_spawning_leaves_no_container_process(bb, monkeypatch):
    _crash_at(bb, "start-spawned", monkeypatch)
    assert inspect(bb, "inspect", "victim")[0]["State"]["Running"] is False
    poll(lambda: "berth.runtime.monitor" not in ok(bb.run(["ps", "-eo", "args"])))
    ok(bb.berth("start", "victim"))  # and it can be started for real
    assert inspect(bb, "inspect", "victim")[0]["State"]["Running"]


def test_a_crash_after_publishing_leaves_no_published_port(bb, monkeypatch):
    _crash_at(bb, "start-published", monkeypatch, "-p", "18080:80")
    assert "18080" not in ok(bb.run(["nft", "list", "map", "inet", "berth", "pub_any4"]))
    ok(bb.berth("run", "-d", "--name", "other", "-p", "18080:80", "bb", "sleep", "600"))  # the port is free
