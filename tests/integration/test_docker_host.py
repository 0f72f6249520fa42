"""berth on a host where Docker runs: FORWARD policy DROP, br_netfilter on, and a DOCKER-USER chain."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import ok

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("iptables") is None, reason="iptables is not installed")]


def dockerize(host):
    """What dockerd does to a host's filter table, inside the throwaway host."""
    for argv in (["iptables", "-N", "DOCKER-USER"], ["iptables", "-A", "DOCKER-USER", "-j", "RETURN"],
                 ["iptables", "-A", "FORWARD", "-j", "DOCKER-USER"], ["iptables", "-P", "FORWARD", "DROP"],
                 ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]):
        ok(host.run(argv))


def test_containers_talk_and_reach_out_past_dockers_forward_drop(bb):
    dockerize(bb)
    bb.outside()
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    ok(bb.berth("run", "-d", "--name", "a", "--network", "mynet", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "b", "--network", "mynet", "bb", "sleep", "600"))
    assert ok(bb.berth("exec", "a", "ping", "-c", "1", "-W", "2", "10.20.0.3"))
    assert ok(bb.berth("exec", "a", "ping", "-c", "1", "-W", "2", "203.0.113.2"))
    rules = ok(bb.run(["iptables", "-S", "DOCKER-USER"]))
    net_id = ok(bb.berth("network", "inspect", "-f", "{{.Id}}", "mynet")).strip()
    bridge = "berth-" + net_id[:9]
    assert f"-i {bridge}" in rules and f"-o {bridge}" in rules
    # without berth's rules Docker's policy would drop the same packets: the rules are what makes it work
    ok(bb.run(["iptables", "-D", "DOCKER-USER", "-i", bridge, "-m", "comment", "--comment", f"berth:{net_id}",
               "-j", "ACCEPT"]))
    assert bb.berth("exec", "a", "ping", "-c", "1", "-W", "1", "203.0.113.2").returncode != 0
    ok(bb.berth("rm", "-f", "a", "b"))
    ok(bb.berth("network", "rm", "mynet"))
    assert bridge not in ok(bb.run(["iptables", "-S", "DOCKER-USER"]))
    assert "-A DOCKER-USER -j RETURN" in ok(bb.run(["iptables", "-S", "DOCKER-USER"]))
