"""berthd restarts, crashes and reboot-like losses of kernel state."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import inspect, ok, poll

pytestmark = pytest.mark.integration


def test_restart_keeps_networks_and_running_containers(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    ok(bb.berth("run", "-d", "--name", "a", "--network", "mynet", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "b", "--network", "mynet", "bb", "sleep", "600"))
    pid_before = inspect(bb, "inspect", "a")[0]["State"]["Pid"]
    bb.stop_berthd()
    bb.start_berthd()
    a = inspect(bb, "inspect", "a")[0]
    assert a["State"]["Running"] and a["State"]["Pid"] == pid_before
    assert ok(bb.berth("exec", "a", "ping", "-c", "1", "-W", "2", "10.20.0.3"))
    # the adopted container's exit is still noticed and its network torn down
    ok(bb.berth("stop", "-t", "1", "a"))
    assert inspect(bb, "inspect", "a")[0]["State"]["Status"] == "exited"
    net = inspect(bb, "network", "inspect", "mynet")[0]
    assert [c["Name"] for c in net["Containers"].values()] == ["b"]


def test_crash_then_restart_reconciles(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    ok(bb.berth("run", "-d", "--name", "a", "--network", "mynet", "bb", "sleep", "600"))
    bb.kill_berthd()
    bb.start_berthd()
    assert inspect(bb, "inspect", "a")[0]["State"]["Running"]
    ok(bb.berth("run", "-d", "--name", "c", "--network", "mynet", "bb", "sleep", "600"))
    assert inspect(bb, "inspect", "c")[0]["NetworkSettings"]["Networks"]["mynet"]["IPAddress"] == "10.20.0.3"


def test_reboot_like_loss_restores_networks_and_reports_containers_exited(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    ok(bb.berth("run", "-d", "--name", "a", "--network", "mynet", "bb", "sleep", "600"))
    bridge = inspect(bb, "network", "inspect", "mynet")[0]["Id"][:9]
    bb.kill_berthd()
    bb.simulate_reboot()  # kills every process but the sandbox init, deletes links, netns and nft tables
    bb.start_berthd()
    assert inspect(bb, "inspect", "a")[0]["State"]["Status"] == "exited"
    assert ok(bb.run(["ip", "link", "show", f"berth-{bridge}"]))
    assert "table inet berth" in ok(bb.run(["nft", "list", "tables"]))
    ok(bb.berth("start", "a"))
    assert inspect(bb, "inspect", "a")[0]["NetworkSettings"]["Networks"]["mynet"]["IPAddress"] == "10.20.0.2"


def test_system_reconcile_removes_stale_links_it_owns_and_nothing_else(host):
    # a marked bridge without a record (as a crash would leave) and a foreign one
    host.run(["ip", "link", "add", "berth-stale", "type", "bridge"], check=True)
    host.run(["ip", "link", "set", "berth-stale", "alias", "berth:" + "0" * 64], check=True)
    host.run(["ip", "link", "add", "br-user", "type", "bridge"], check=True)
    out = ok(host.berth("system", "reconcile"))
    assert "removed stale link: berth-stale" in out
    assert host.run(["ip", "link", "show", "berth-stale"]).returncode != 0
    assert host.run(["ip", "link", "show", "br-user"]).returncode == 0


def test_daemon_start_status_stop_and_the_no_daemon_message(bare_host):
    cli = [sys.executable, "-m", "berth.cli.main"]
    roots = ["--root", str(bare_host.root), "--run-root", str(bare_host.run_root)]
    missing = bare_host.berth("network", "ls")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (f"Cannot connect to the berth daemon at unix://{bare_host.socket}. "
                                      "Is berthd running? Start it with: berth daemon start")
    started = bare_host.run([*cli, "daemon", "start", *roots])
    assert started.returncode == 0 and "berthd started (pid" in started.stdout, started.stderr
    assert "running" in ok(bare_host.run([*cli, "--run-root", str(bare_host.run_root), "daemon", "status"]))
    assert "bridge" in ok(bare_host.berth("network", "ls"))
    assert ok(bare_host.run([*cli, "--run-root", str(bare_host.run_root), "daemon", "stop"]))
    status = bare_host.run([*cli, "--run-root", str(bare_host.run_root), "daemon", "status"])
    assert status.returncode == 1


def test_load_a_docker_save_archive_and_run_it(host, tmp_path):
    from berth.testing.images import busybox_rootfs_tar, docker_save_archive

    base = busybox_rootfs_tar(tmp_path / "bb.tar").read_bytes()
    archive = docker_save_archive(tmp_path / "saved.tar", [base, {"etc/motd": b"layered\n", "etc/.wh.group": None}],
                                  ["layered:1"], config={"Cmd": ["cat", "/etc/motd"]})
    assert "Loaded image: layered:1" in ok(host.berth("load", "-i", str(archive)))
    assert ok(host.berth("run", "--rm", "layered:1")) == "layered\n"
    assert host.berth("run", "--rm", "layered:1", "cat", "/etc/group").returncode != 0  # whited out
    assert "layered" in ok(host.berth("images"))


def test_the_api_socket_is_root_only_and_invisible_in_containers(bb):
    import stat

    mode = bb.socket.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    listing = bb.berth("run", "--rm", "bb", "sh", "-c", f"ls {bb.run_root} /run 2>&1; true")
    assert "berth.sock" not in listing.stdout
