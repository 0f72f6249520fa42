"""berthd restarts, crashes and reboot-like losses of kernel state."""

from __future__ import annotations

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
