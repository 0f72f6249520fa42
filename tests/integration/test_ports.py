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
