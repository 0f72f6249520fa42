"""Regressions found by the stress suite (stress/), each checked the way a client would see it."""

from __future__ import annotations

import socket

import pytest

from tests.helpers import fails, inspect, ok, poll

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
    poll(lambda: "berth-monitor" not in ok(bb.run(["ps", "-eo", "args"])))
    ok(bb.berth("start", "victim"))  # and it can be started for real
    assert inspect(bb, "inspect", "victim")[0]["State"]["Running"]


def test_a_crash_after_publishing_leaves_no_published_port(bb, monkeypatch):
    _crash_at(bb, "start-published", monkeypatch, "-p", "18080:80")
    assert "18080" not in ok(bb.run(["nft", "list", "map", "inet", "berth", "pub_any4"]))
    ok(bb.berth("run", "-d", "--name", "other", "-p", "18080:80", "bb", "sleep", "600"))  # the port is free


def test_a_full_disk_fails_commands_clearly_and_an_exit_is_recorded_once_space_is_back(bb, busybox_tar):
    from stress import disk
    from stress.report import Report
    from stress.stage import PROFILES, Stage

    disk._move_root_to_tmpfs(Stage(bb, PROFILES["quick"], Report(), busybox_tar))
    ok(bb.berth("run", "-d", "--name", "a", "bb", "sleep", "600"))
    bb.run(["sh", "-c", f"dd if=/dev/zero of={bb.root}/filler bs=1M; dd if=/dev/zero of={bb.root}/f2 bs=4k; true"])
    fails(bb.berth("import", str(busybox_tar), "other"), "cannot write the image store")
    assert bb.berth("stop", "-t", "1", "a").returncode != 0  # the exit cannot be recorded yet
    ok(bb.run(["rm", f"{bb.root}/filler", f"{bb.root}/f2"]))
    poll(lambda: inspect(bb, "inspect", "a")[0]["State"]["Status"] == "exited", timeout=15)


def test_berthd_on_a_read_only_state_directory_refuses_in_one_line(bare_host):
    bare_host.root.mkdir()
    ok(bare_host.run(["sh", "-c", f"mount --bind {bare_host.root} {bare_host.root} && "
                                  f"mount -o remount,bind,ro {bare_host.root}"]))
    with pytest.raises(RuntimeError) as err:
        bare_host.start_berthd()
    assert "Traceback" not in str(err.value)
    assert bare_host.log.read_text().strip() == f"berthd: cannot use {bare_host.root}: Read-only file system"


def test_bodies_of_the_wrong_shape_are_a_400_not_an_internal_error(host):
    from stress.api import Api

    api = Api(str(host.socket))
    try:
        for path, body in (("/networks/bridge/connect", []), ("/networks/bridge/disconnect", "x"),
                           ("/containers/create", {"Image": "bb", "NetworkingConfig": [0]})):
            reply = api.call("POST", path, body)
            assert reply.status == 400 and reply.message.startswith("json: cannot unmarshal "), (path, reply)
    finally:
        api.close()


def _berthd_descriptors(host) -> int:
    pid = ok(host.run(["sh", "-c", "pgrep -f berth.api.daemon"])).split()[0]
    return len(ok(host.run(["ls", f"/proc/{pid}/fd"])).split())


def test_berthd_does_not_keep_a_descriptor_per_request(host):
    for i in range(5):
        ok(host.berth("network", "create", f"warm{i}"))
        ok(host.berth("network", "rm", f"warm{i}"))
    before = _berthd_descriptors(host)
    for i in range(30):  # each CLI command is a new connection, served on a new thread
        ok(host.berth("network", "create", f"n{i}"))
        ok(host.berth("network", "rm", f"n{i}"))
    assert _berthd_descriptors(host) < before + 10


def test_berthd_short_of_descriptors_refuses_new_work_in_one_line_and_still_removes(host):
    pid = ok(host.run(["sh", "-c", "pgrep -f berth.api.daemon"])).split()[0]
    ok(host.berth("network", "create", "kept"))
    ok(host.run(["prlimit", "--pid", pid, f"--nofile={_berthd_descriptors(host) + 40}"]))
    fails(host.berth("network", "create", "more"), "too many open files: berthd uses ")
    assert "more" not in ok(host.berth("network", "ls"))
    ok(host.berth("network", "rm", "kept"))


def test_integer_query_parameters_that_are_not_integers_are_a_400(host):
    from stress.api import Api

    api = Api(str(host.socket))
    try:
        for path, query in (("/containers/json", {"limit": "null"}), ("/containers/x/stop", {"t": "[]"})):
            reply = api.call("GET" if path.endswith("json") else "POST", path, query=query)
            assert reply.status == 400 and reply.message.startswith("strconv.Atoi: parsing "), (path, reply)
    finally:
        api.close()
