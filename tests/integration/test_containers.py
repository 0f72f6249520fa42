"""Containers in every network mode, proven with real packets inside a throwaway host."""

from __future__ import annotations

import json

import pytest

from tests.helpers import fails, inspect, ok, poll

pytestmark = pytest.mark.integration

WWW = "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"


def start_web(host, name="web", network="mynet", extra=()):
    cid = ok(host.berth("run", "-d", "--name", name, "--network", network, *extra, "bb", "sh", "-c", WWW)).strip()
    assert len(cid) == 64
    # the server is up once a request from inside its own namespace is answered
    poll(lambda: host.berth("exec", name, "wget", "-qO-", "http://127.0.0.1/").returncode == 0)
    return cid


def test_run_foreground_streams_output_and_propagates_exit_code(bb):
    result = bb.berth("run", "--rm", "bb", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n" and result.stderr == "err\n"
    assert ok(bb.berth("ps", "-a", "-q")) == ""


def test_run_interactive_passes_stdin(bb):
    result = bb.berth("run", "--rm", "-i", "bb", "tr", "a-z", "A-Z", input="shout\n")
    assert ok(result) == "SHOUT\n"


def test_exec_passes_stdin_streams_and_exit_code(bb):
    ok(bb.berth("run", "-d", "--name", "box", "bb", "sleep", "600"))
    assert ok(bb.berth("exec", "-i", "box", "tr", "a-z", "A-Z", input="whisper\n")) == "WHISPER\n"
    result = bb.berth("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    result = bb.berth("exec", "box", "nosuch")
    assert result.returncode == 127 and "executable file not found" in result.stderr


def test_user_network_connectivity_and_addresses(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    start_web(bb)
    assert ok(bb.berth("run", "--rm", "--network", "mynet", "bb", "wget", "-qO-", "http://10.20.0.2/")) == "hello-from-web\n"
    c = inspect(bb, "inspect", "web")[0]
    ep = c["NetworkSettings"]["Networks"]["mynet"]
    assert ep["IPAddress"] == "10.20.0.2" and ep["Gateway"] == "10.20.0.1" and ep["IPPrefixLen"] == 24
    assert ep["MacAddress"] == "02:42:0a:14:00:02"
    net = inspect(bb, "network", "inspect", "mynet")[0]
    assert net["Containers"][c["Id"]]["IPv4Address"] == "10.20.0.2/24"
    inside = ok(bb.berth("exec", "web", "ip", "-o", "-4", "addr"))
    assert "eth0" in inside and "10.20.0.2/24" in inside
    routes = ok(bb.berth("exec", "web", "ip", "route"))
    assert "default via 10.20.0.1 dev eth0" in routes
    # the container sees its own pid namespace and hostname
    assert ok(bb.berth("exec", "web", "hostname")).strip() == c["Id"][:12]
    hosts = ok(bb.berth("exec", "web", "cat", "/etc/hosts"))
    assert f"10.20.0.2\t{c['Id'][:12]}" in hosts


def test_default_bridge_and_static_ip_rules(bb):
    cid = ok(bb.berth("run", "-d", "bb", "sleep", "600")).strip()
    c = inspect(bb, "inspect", cid)[0]
    assert c["NetworkSettings"]["IPAddress"] == "172.17.0.2"
    assert c["NetworkSettings"]["Networks"]["bridge"]["Gateway"] == "172.17.0.1"
    fails(bb.berth("run", "-d", "--ip", "172.17.0.9", "bb", "true"),
          "user specified IP address is supported on user defined networks only")
    ok(bb.berth("network", "create", "auto"))
    fails(bb.berth("run", "-d", "--network", "auto", "--ip", "172.18.0.9", "bb", "true"),
          "user specified IP address is supported only when connecting to networks with user configured subnets")
    ok(bb.berth("network", "create", "--subnet", "10.30.0.0/24", "fixed"))
    ok(bb.berth("run", "-d", "--name", "s1", "--network", "fixed", "--ip", "10.30.0.50", "bb", "sleep", "600"))
    assert inspect(bb, "inspect", "s1")[0]["NetworkSettings"]["Networks"]["fixed"]["IPAddress"] == "10.30.0.50"
    fails(bb.berth("run", "-d", "--name", "s2", "--network", "fixed", "--ip", "10.30.0.50", "bb", "sleep", "600"),
          "Address already in use")
    fails(bb.berth("run", "-d", "--network", "fixed", "--ip", "10.31.0.5", "bb", "true"),
          "Invalid address 10.31.0.5: It does not belong to any of this network's subnets")


def test_host_none_and_container_modes(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    start_web(bb)
    host_links = ok(bb.berth("run", "--rm", "--network", "host", "bb", "ip", "-o", "link"))
    assert "berth0" in host_links and "eth0" not in host_links.split(": ")[1:2]
    none_addrs = ok(bb.berth("run", "--rm", "--network", "none", "bb", "ip", "-o", "addr"))
    assert [line.split()[1] for line in none_addrs.splitlines()] == ["lo", "lo"] or \
        {line.split()[1] for line in none_addrs.splitlines()} == {"lo"}
    shared = ok(bb.berth("run", "--rm", "--network", "container:web", "bb", "wget", "-qO-", "http://127.0.0.1/"))
    assert shared == "hello-from-web\n"
    fails(bb.berth("run", "--rm", "--network", "container:web", "-p", "80:80", "bb", "true"),
          "conflicting options: port publishing and the container type network mode")
    fails(bb.berth("run", "--rm", "--network", "container:nosuch", "bb", "true"), "No such container: nosuch")


def test_connect_and_disconnect_running_container(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    ok(bb.berth("network", "create", "--subnet", "10.40.0.0/24", "other"))
    start_web(bb)
    ok(bb.berth("run", "-d", "--name", "client", "--network", "other", "bb", "sleep", "600"))
    # different networks are isolated
    assert bb.berth("exec", "client", "ping", "-c", "1", "-W", "1", "10.20.0.2").returncode != 0
    ok(bb.berth("network", "connect", "--alias", "cli", "mynet", "client"))
    links = ok(bb.berth("exec", "client", "ip", "-o", "-4", "addr"))
    assert "eth1" in links and "10.20.0.3/24" in links
    assert ok(bb.berth("exec", "client", "wget", "-qO-", "http://10.20.0.2/")) == "hello-from-web\n"
    fails(bb.berth("network", "connect", "mynet", "client"), "endpoint with name client already exists in network mynet")
    aliases = inspect(bb, "inspect", "client")[0]["NetworkSettings"]["Networks"]["mynet"]["Aliases"]
    assert "cli" in aliases
    ok(bb.berth("network", "disconnect", "mynet", "client"))
    assert "eth1" not in ok(bb.berth("exec", "client", "ip", "-o", "link"))
    fails(bb.berth("network", "disconnect", "mynet", "client"), "is not connected to network mynet")
    fails(bb.berth("network", "connect", "host", "client"),
          "container cannot be disconnected from host network or connected to host network")
    fails(bb.berth("network", "connect", "none", "client"),
          "container cannot be connected to multiple networks with one of the networks in private (none) mode")
    fails(bb.berth("network", "rm", "mynet"), "has active endpoints")


def test_container_exit_tears_down_its_network(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    ok(bb.berth("run", "-d", "--name", "short", "--network", "mynet", "bb", "sleep", "600"))
    veths = lambda: [l for l in ok(bb.run(["ip", "-o", "link"])).splitlines() if "bveth" in l]
    assert len(veths()) == 1
    ok(bb.berth("stop", "-t", "1", "short"))
    assert inspect(bb, "inspect", "short")[0]["State"]["Status"] == "exited"
    poll(lambda: veths() == [])
    assert inspect(bb, "network", "inspect", "mynet")[0]["Containers"] == {}
    # the freed address is handed out again
    ok(bb.berth("run", "-d", "--name", "again", "--network", "mynet", "bb", "sleep", "600"))
    assert inspect(bb, "inspect", "again")[0]["NetworkSettings"]["Networks"]["mynet"]["IPAddress"] == "10.20.0.2"
    ok(bb.berth("rm", "-f", "again", "short"))
    assert ok(bb.berth("ps", "-aq")) == ""


def test_egress_is_masqueraded_and_internal_networks_have_none(bb):
    # The "internet" knows no route back to container subnets: only a masqueraded packet gets an answer.
    bb.outside()
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    ok(bb.berth("network", "create", "--internal", "--subnet", "10.50.0.0/24", "secret"))
    reach = bb.berth("run", "--rm", "--network", "mynet", "bb", "ping", "-c", "1", "-W", "2", "203.0.113.2")
    assert reach.returncode == 0, reach.stdout + reach.stderr
    blocked = bb.berth("run", "--rm", "--network", "secret", "bb", "ping", "-c", "1", "-W", "2", "203.0.113.2")
    assert blocked.returncode != 0
    routes = ok(bb.berth("run", "--rm", "--network", "secret", "bb", "ip", "route"))
    assert "default" not in routes


def test_logs_wait_ps_and_rm(bb):
    ok(bb.berth("run", "-d", "--name", "talker", "bb", "sh", "-c", "echo one; echo two >&2; exit 7"))
    assert ok(bb.berth("wait", "talker")).strip() == "7"
    logs = bb.berth("logs", "talker")
    assert logs.stdout == "one\n" and logs.stderr == "two\n"
    table = ok(bb.berth("ps", "-a")).splitlines()
    assert table[0].split()[:2] == ["CONTAINER", "ID"] and "Exited (7)" in table[1] and "talker" in table[1]
    ok(bb.berth("rm", "talker"))
    fails(bb.berth("rm", "talker"), "No such container: talker")


def test_ipv6_dual_stack_network(bb):
    ok(bb.berth("network", "create", "--ipv6", "--subnet", "10.70.0.0/24", "--subnet", "fd77::/64", "dual"))
    ok(bb.berth("run", "-d", "--name", "a", "--network", "dual", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "b", "--network", "dual", "bb", "sleep", "600"))
    a = inspect(bb, "inspect", "a")[0]["NetworkSettings"]["Networks"]["dual"]
    assert a["GlobalIPv6Address"] == "fd77::2" and a["IPv6Gateway"] == "fd77::1" and a["IPAddress"] == "10.70.0.2"
    assert ok(bb.berth("exec", "a", "ping", "-6", "-c", "1", "-W", "2", "fd77::3"))
    assert "default via fd77::1" in ok(bb.berth("exec", "a", "ip", "-6", "route"))


def test_bad_container_input_is_refused_and_changes_nothing(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    before = ok(bb.berth("ps", "-a", "--no-trunc"))
    fails(bb.berth("run", "-d", "nosuchimage", "true"), "No such image: nosuchimage")
    fails(bb.berth("run", "-d", "--network", "nosuchnet", "bb", "true"), "network nosuchnet not found")
    fails(bb.berth("run", "-d", "--name", "bad name", "bb", "true"), "Invalid container name (bad name)")
    ok(bb.berth("run", "-d", "--name", "dup", "bb", "sleep", "600"))
    fails(bb.berth("run", "-d", "--name", "dup", "bb", "true"), 'The container name "/dup" is already in use')
    fails(bb.berth("run", "--network", "host", "--network-alias", "x", "bb", "true"),
          "network-scoped alias is supported only for containers in user defined networks")
    assert len(ok(bb.berth("ps", "-a", "-q")).split()) == 1 and before.count("\n") == 1


def test_run_with_a_rootfs_directory_leaves_it_untouched(host, busybox_tar, tmp_path):
    import tarfile

    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with tarfile.open(busybox_tar) as tar:
        tar.extractall(rootfs)
    out = ok(host.berth("run", "--rm", "--rootfs", str(rootfs), "sh", "-c", "echo from-rootfs; touch /newfile"))
    assert out == "from-rootfs\n" and not (rootfs / "newfile").exists()
