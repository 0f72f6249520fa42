"""Published ports, kernel only: from the host, from 127.0.0.1, from another host, by hairpin."""

from __future__ import annotations

import pytest

import sys

from tests.helpers import fails, inspect, ok, poll

pytestmark = pytest.mark.integration

FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')"
WWW = "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www"


def web(host, *publish: str, name: str = "web", network: str = "mynet") -> None:
    ok(host.berth("run", "-d", "--name", name, "--network", network, *publish, "bb", "sh", "-c", WWW))
    poll(lambda: host.berth("exec", name, "wget", "-qO-", "http://127.0.0.1/").returncode == 0)


def test_published_port_from_host_outside_localhost_and_hairpin(bb):
    bb.outside()
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    web(bb, "-p", "8080:80", "-p", "127.0.0.1:8081:80")
    get = lambda url: bb.run([sys.executable, "-c", FETCH, url])
    assert ok(get("http://203.0.113.1:8080/")) == "published\n"  # the host, through its own address
    assert ok(get("http://127.0.0.1:8080/")) == "published\n"  # the host, on loopback
    assert ok(get("http://127.0.0.1:8081/")) == "published\n"
    from_outside = bb.run_outside([sys.executable, "-c", FETCH, "http://203.0.113.1:8080/"])
    assert ok(from_outside) == "published\n"
    # a port bound to 127.0.0.1 is not reachable from another host
    assert bb.run_outside([sys.executable, "-c", FETCH, "http://203.0.113.1:8081/"]).returncode != 0
    # hairpin: the container reaches its own published port through the host's address
    assert ok(bb.berth("exec", "web", "wget", "-qO-", "http://203.0.113.1:8080/")) == "published\n"
    # another network reaches it through the host too, though direct access stays isolated
    ok(bb.berth("network", "create", "--subnet", "10.40.0.0/24", "other"))
    out = bb.berth("run", "--rm", "--network", "other", "bb", "wget", "-qO-", "http://203.0.113.1:8080/")
    assert ok(out) == "published\n"
    ports = inspect(bb, "inspect", "web")[0]["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "8081"}]}
    assert "0.0.0.0:8080->80/tcp" in ok(bb.berth("ps"))
    assert ok(bb.berth("port", "web")).splitlines() == ["80/tcp -> 0.0.0.0:8080", "80/tcp -> 127.0.0.1:8081"]


def test_port_conflicts_are_refused_and_ports_are_freed_on_stop(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    web(bb, "-p", "8080:80")
    fails(bb.berth("run", "-d", "--name", "second", "--network", "mynet", "-p", "8080:80", "bb", "sleep", "60"),
          "Bind for 0.0.0.0:8080 failed: port is already allocated")
    # nothing half-done: the refused container is not running and holds no address
    assert inspect(bb, "inspect", "second")[0]["State"]["Running"] is False
    net = inspect(bb, "network", "inspect", "mynet")[0]
    assert [c["Name"] for c in net["Containers"].values()] == ["web"]
    # a host process's socket counts too
    listener = bb.popen(["busybox", "nc", "-l", "-p", "9090"])
    try:
        poll(lambda: ":9090" in bb.run(["ss", "-ltn"]).stdout or ":9090" in bb.run(["busybox", "netstat", "-ltn"]).stdout)
        fails(bb.berth("run", "-d", "--network", "mynet", "-p", "9090:80", "bb", "sleep", "60"),
              "Bind for 0.0.0.0:9090 failed: port is already allocated")
    finally:
        listener.kill()
        listener.wait()
    ok(bb.berth("stop", "-t", "1", "web"))
    web(bb, "-p", "8080:80", name="web2")
    assert ok(bb.run([sys.executable, "-c", FETCH, "http://127.0.0.1:8080/"])) == "published\n"


def test_ephemeral_ports_and_publish_all(bb):
    ok(bb.berth("network", "create", "--subnet", "10.20.0.0/24", "mynet"))
    web(bb, "-p", "80", "--expose", "81", "-P")
    ports = inspect(bb, "inspect", "web")[0]["NetworkSettings"]["Ports"]
    low, high = map(int, ok(bb.run(["cat", "/proc/sys/net/ipv4/ip_local_port_range"])).split())
    host_port = int(ports["80/tcp"][0]["HostPort"])
    assert low <= host_port <= high and ports["81/tcp"] is not None
    assert ok(bb.run([sys.executable, "-c", FETCH, f"http://127.0.0.1:{host_port}/"])) == "published\n"


def test_host_mode_discards_ports_with_a_warning(bb):
    result = bb.berth("run", "-d", "--network", "host", "-p", "80:80", "bb", "sleep", "60")
    assert result.returncode == 0
    assert "Published ports are discarded when using host network mode" in result.stderr


HOST6, PEER6 = "2001:db8:113::1", "2001:db8:113::2"  # documentation prefix, only on the sandbox's uplink


def dual_stack_uplink(bb) -> None:
    """The sandbox's uplink and the outside namespace get IPv6 addresses too (no DAD: usable at once)."""
    bb.outside()
    ok(bb.run(["ip", "addr", "add", f"{HOST6}/64", "dev", "uplink0", "nodad"]))
    ok(bb.run_outside(["ip", "addr", "add", f"{PEER6}/64", "dev", "uplink1", "nodad"]))


def test_ipv6_published_ports_from_outside_the_host_and_hairpin(bb):
    dual_stack_uplink(bb)
    ok(bb.berth("network", "create", "--ipv6", "--subnet", "10.20.0.0/24", "--subnet", "fd20::/64", "dual"))
    web(bb, "-p", "8080:80", "-p", f"[{HOST6}]:8081:80", network="dual")
    get = lambda url: bb.run([sys.executable, "-c", FETCH, url])
    outside = lambda url: bb.run_outside([sys.executable, "-c", FETCH, url])
    assert ok(outside(f"http://[{HOST6}]:8080/")) == "published\n"  # [::]
    assert ok(outside("http://203.0.113.1:8080/")) == "published\n"  # and 0.0.0.0, the same port
    assert ok(outside(f"http://[{HOST6}]:8081/")) == "published\n"  # one IPv6 address: that family alone
    assert outside("http://203.0.113.1:8081/").returncode != 0
    assert ok(get(f"http://[{HOST6}]:8080/")) == "published\n"  # the host itself, through its IPv6 address
    assert get("http://[::1]:8080/").returncode != 0  # [::1] is not published (IPv6 has no route_localnet)
    # hairpin over IPv6: the container reaches its own published port through the host's address
    assert ok(bb.berth("exec", "web", "wget", "-qO-", f"http://[{HOST6}]:8080/")) == "published\n"
    ports = inspect(bb, "inspect", "web")[0]["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"},
                                {"HostIp": HOST6, "HostPort": "8081"}]}
    assert ok(bb.berth("port", "web")).splitlines() == [
        "80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080", f"80/tcp -> [{HOST6}]:8081"]
    assert "[::]:8080->80/tcp" in ok(bb.berth("ps"))


def test_ipv6_ports_conflicts_refusals_removal_and_restore(bb):
    dual_stack_uplink(bb)
    ok(bb.berth("network", "create", "--ipv6", "--subnet", "10.20.0.0/24", "--subnet", "fd20::/64", "dual"))
    ok(bb.berth("network", "create", "--subnet", "10.30.0.0/24", "v4only"))
    web(bb, "-p", f"[{HOST6}]:8081:80", network="dual")
    fails(bb.berth("run", "-d", "--network", "dual", "-p", "[::]:8081:80", "bb", "sleep", "60"),
          "Bind for :::8081 failed: port is already allocated")
    # the IPv4 side of the same port is free: a binding of one family does not hold the other
    web(bb, "-p", "0.0.0.0:8081:80", name="web4", network="dual")
    fails(bb.berth("run", "-d", "--network", "dual", "-p", "[::1]:9000:80", "bb", "sleep", "60"),
          "cannot publish on [::1]: IPv6 has no route_localnet")
    fails(bb.berth("run", "-d", "--network", "v4only", "-p", f"[{HOST6}]:9000:80", "bb", "sleep", "60"),
          "cannot publish on [2001:db8:113::1]: the container has no IPv6 address on network v4only")
    outside = lambda: bb.run_outside([sys.executable, "-c", FETCH, f"http://[{HOST6}]:8081/"])
    # berth's table lost while the container runs (a flush by hand, a firewall reload): restored at start
    bb.kill_berthd()
    ok(bb.run(["nft", "delete", "table", "inet", "berth"]))
    assert outside().returncode != 0
    bb.start_berthd()
    assert ok(outside()) == "published\n"
    # stopped: withdrawn; after a reboot-like loss, published again when the container starts
    ok(bb.berth("stop", "-t", "1", "web"))
    assert outside().returncode != 0
    bb.kill_berthd()
    bb.simulate_reboot()
    bb.start_berthd()
    dual_stack_uplink(bb)
    ok(bb.berth("start", "web"))
    poll(lambda: outside().returncode == 0)
    assert ok(outside()) == "published\n"
