"""berth-cni driven exactly as a CNI runtime drives it (environment + stdin, plugin chains with the
reference plugins of Debian's containernetworking-plugins), in a throwaway host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import inspect, ok, poll

pytestmark = pytest.mark.integration

BERTH_CNI = str(Path(sys.executable).with_name("berth-cni"))
REFERENCE = Path("/usr/lib/cni")
PORTS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')"


class Runtime:
    """What libcni does with a conflist: per plugin, the request config (cniVersion, name, the plugin's
    keys, ``runtimeConfig`` for the capabilities it declares, ``prevResult``) and the ``CNI_*`` env."""

    def __init__(self, host: Any, conflist: dict[str, Any]) -> None:
        self.host = host
        self.conflist = conflist

    def exec(self, plugin: dict[str, Any], command: str, cid: str, netns: str, ifname: str = "eth0",
             prev: dict[str, Any] | None = None, caps: dict[str, Any] | None = None,
             args: str = "", extra: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        config = {"cniVersion": self.conflist["cniVersion"], "name": self.conflist["name"],
                  **{k: v for k, v in plugin.items() if k != "capabilities"}, **(extra or {})}
        wanted = {k: v for k, v in (caps or {}).items() if (plugin.get("capabilities") or {}).get(k)}
        if wanted:
            config["runtimeConfig"] = wanted
        if prev is not None:
            config["prevResult"] = prev
        env = {**self.host.env(), "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
               "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": str(REFERENCE)}
        exe = BERTH_CNI if plugin["type"] == "berth-cni" else str(REFERENCE / plugin["type"])
        return self.host.run([exe], input=json.dumps(config), env=env)

    def add(self, cid: str, netns: str, **kw: Any) -> dict[str, Any]:
        prev = None
        for plugin in self.conflist["plugins"]:
            result = self.exec(plugin, "ADD", cid, netns, prev=prev, **kw)
            assert result.returncode == 0, f"{plugin['type']} ADD: {result.stdout}{result.stderr}"
            prev = json.loads(result.stdout)
        assert prev is not None
        return prev

    def check(self, cid: str, netns: str, result: dict[str, Any], **kw: Any) -> None:
        for plugin in self.conflist["plugins"]:
            out = self.exec(plugin, "CHECK", cid, netns, prev=result, **kw)
            assert out.returncode == 0, f"{plugin['type']} CHECK: {out.stdout}{out.stderr}"

    def delete(self, cid: str, netns: str, result: dict[str, Any] | None, **kw: Any) -> None:
        for plugin in reversed(self.conflist["plugins"]):
            out = self.exec(plugin, "DEL", cid, netns, prev=result, **kw)
            assert out.returncode == 0, f"{plugin['type']} DEL: {out.stdout}{out.stderr}"


def berth_only(version: str = "1.0.0", **keys: Any) -> dict[str, Any]:
    """A conflist with berth-cni alone."""
    return {"cniVersion": version, "name": "cninet", "plugins": [{"type": "berth-cni", **keys}]}


def netns(host: Any, *names: str) -> list[str]:
    for name in names:
        ok(host.run(["ip", "netns", "add", name]))
    return [f"/run/netns/{name}" for name in names]


def in_ns(host: Any, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return host.run(["ip", "netns", "exec", name, *argv])


def error(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode != 0, result.stdout
    return json.loads(result.stdout)


def test_add_reaches_other_namespaces_and_containers_by_address_and_name_check_and_del(bb):
    ns_a, ns_b = netns(bb, "a", "b")
    rt = Runtime(bb, berth_only(subnet="10.30.0.0/24"))
    result_a = rt.add("ctr-a", ns_a)
    assert result_a["cniVersion"] == "1.0.0"
    assert result_a["ips"] == [{"address": "10.30.0.2/24", "gateway": "10.30.0.1", "interface": 2}]
    assert result_a["interfaces"][2] == {"name": "eth0", "mac": "02:42:0a:1e:00:02", "sandbox": ns_a}
    assert result_a["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.30.0.1"}]
    assert result_a["dns"] == {"nameservers": ["10.30.0.1"]}
    result_b = rt.add("ctr-b", ns_b, args="IgnoreUnknown=1;K8S_POD_NAME=pod-b")
    assert result_b["ips"][0]["address"] == "10.30.0.3/24"
    ok(bb.berth("run", "-d", "--name", "web", "--network", "cninet", "bb", "sleep", "600"))
    web_ip = inspect(bb, "inspect", "web")[0]["NetworkSettings"]["Networks"]["cninet"]["IPAddress"]
    # by address: namespace to namespace, namespace to container, container to namespace
    ok(in_ns(bb, "a", "ping", "-c1", "-W2", "10.30.0.3"))
    ok(in_ns(bb, "b", "ping", "-c1", "-W2", web_ip))
    ok(bb.berth("exec", "web", "ping", "-c1", "-W2", "10.30.0.2"))
    # by name: berth's DNS on the gateway answers for CNI endpoints and containers alike
    ok(bb.berth("exec", "web", "ping", "-c1", "-W2", "pod-b"))
    ok(bb.berth("exec", "web", "ping", "-c1", "-W2", "cni-ctr-a"))
    assert web_ip in ok(in_ns(bb, "a", "busybox", "nslookup", "web.", "10.30.0.1"))
    listed = inspect(bb, "network", "inspect", "cninet")[0]["Containers"]
    assert sorted(c["Name"] for c in listed.values()) == ["cni-ctr-a", "pod-b", "web"]
    assert listed["ctr-a"]["IPv4Address"] == "10.30.0.2/24"
    assert "ctr-a" not in ok(bb.berth("ps", "-a", "--no-trunc"))  # not a container of berth's
    assert "has active endpoints" in bb.berth("network", "rm", "cninet").stderr

    rt.check("ctr-a", ns_a, result_a)
    again = rt.exec(rt.conflist["plugins"][0], "ADD", "ctr-a", ns_a)
    assert error(again)["code"] == 101 and "already exists" in error(again)["msg"]

    rt.delete("ctr-a", ns_a, result_a)
    rt.delete("ctr-a", ns_a, result_a)  # DEL is idempotent
    rt.delete("never-added", ns_a, None)
    assert "eth0" not in ok(in_ns(bb, "a", "ip", "-o", "link"))
    ok(bb.run(["ip", "netns", "del", "b"]))
    rt.delete("ctr-b", "/run/netns/b", result_b)  # the namespace is already gone: still success
    failed_check = rt.exec(rt.conflist["plugins"][0], "CHECK", "ctr-a", ns_a, prev=result_a)
    assert error(failed_check)["code"] == 3
    listed = inspect(bb, "network", "inspect", "cninet")[0]["Containers"]
    assert [c["Name"] for c in listed.values()] == ["web"]
    ok(bb.berth("rm", "-f", "web"))
    ok(bb.berth("network", "rm", "cninet"))
    names = [line.split()[0] for line in ok(bb.run(["ip", "netns", "list"])).splitlines()]
    assert names == ["a"]  # berth never removed a namespace (b was deleted by the test)


def test_chain_with_loopback_portmap_tuning_and_bandwidth(bb):
    bb.outside()
    (ns_a,) = netns(bb, "a")
    rt = Runtime(bb, {"cniVersion": "1.0.0", "name": "cninet", "plugins": [
        {"type": "loopback"},
        {"type": "berth-cni", "subnet": "10.30.0.0/24", "capabilities": {"aliases": True, "mac": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}, "mtu": 1400},
        {"type": "bandwidth", "ingressRate": 100_000_000, "ingressBurst": 1_000_000,
         "egressRate": 100_000_000, "egressBurst": 1_000_000},
    ]})
    caps = {"portMappings": PORTS, "aliases": ["shop"], "mac": "02:00:00:00:aa:01"}
    result = rt.add("ctr-a", ns_a, caps=caps)
    assert [i["name"] for i in result["interfaces"]][:1] == ["lo"]
    eth0 = next(i for i in result["interfaces"] if i["name"] == "eth0")
    assert eth0["mac"] == "02:00:00:00:aa:01" and eth0["sandbox"] == ns_a
    link = json.loads(ok(in_ns(bb, "a", "ip", "-j", "link", "show", "eth0")))[0]
    assert link["mtu"] == 1400 and link["address"] == "02:00:00:00:aa:01"  # tuning, and the mac capability
    assert ok(in_ns(bb, "a", "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter")).strip() == "2"
    assert "qdisc tbf" in ok(bb.run(["tc", "qdisc", "show"]))  # bandwidth shaped the host side
    ok(in_ns(bb, "a", "ip", "addr", "show", "lo", "up"))  # loopback
    # portmap: the outside reaches a server in the namespace through the host's address
    ok(bb.run(["mkdir", "-p", "/tmp/cni-www"]))
    ok(bb.run(["sh", "-c", "echo mapped > /tmp/cni-www/index.html"]))
    server = bb.popen(["ip", "netns", "exec", "a", "busybox", "httpd", "-f", "-p", "80", "-h", "/tmp/cni-www"])
    try:
        fetch = lambda: bb.run_outside([sys.executable, "-c", FETCH, "http://203.0.113.1:8080/"])
        assert poll(lambda: fetch().stdout) == "mapped\n"
        # the alias resolves on the berth network
        ok(bb.berth("run", "--rm", "--network", "cninet", "bb", "ping", "-c1", "-W2", "shop"))
        for plugin in rt.conflist["plugins"]:
            out = rt.exec(plugin, "CHECK", "ctr-a", ns_a, prev=result, caps=caps)
            if plugin["type"] == "portmap" and out.returncode:
                # portmap 1.1.1 checks an IPv4 mapping in ip6tables too (fixed upstream by "Only check
                # ipv6 when an IPv6 is configured", containernetworking/plugins fb5d195f, 2023)
                assert error(out)["msg"].startswith("could not check ipv6 dnat: chain CNI-DN-"), out.stdout
                continue
            assert out.returncode == 0, f"{plugin['type']} CHECK: {out.stdout}{out.stderr}"
    finally:
        server.kill()
        server.wait()
    rt.delete("ctr-a", ns_a, result, caps=caps)
    assert "eth0" not in ok(in_ns(bb, "a", "ip", "-o", "link"))
    assert "qdisc tbf" not in ok(bb.run(["tc", "qdisc", "show"]))
    assert "8080" not in ok(bb.run(["iptables-save", "-t", "nat"]))
    assert inspect(bb, "network", "inspect", "cninet")[0]["Containers"] == {}


def test_version_0_4_0_result_and_static_address_from_cni_args(host):
    (ns_a,) = netns(host, "a")
    rt = Runtime(host, berth_only("0.4.0", subnet="10.30.0.0/24", network="berthnet"))
    result = rt.add("ctr-a", ns_a, args="IP=10.30.0.50")
    assert result["cniVersion"] == "0.4.0"
    assert result["ips"] == [{"version": "4", "address": "10.30.0.50/24", "gateway": "10.30.0.1", "interface": 2}]
    assert "ctr-a" in inspect(host, "network", "inspect", "berthnet")[0]["Containers"]
    taken = rt.exec(rt.conflist["plugins"][0], "ADD", "ctr-b", netns(host, "b")[0], args="IP=10.30.0.50")
    assert error(taken) == {"cniVersion": "0.4.0", "code": 100, "msg": "Address already in use"}
    missing = Runtime(host, berth_only(network="nowhere")).exec({"type": "berth-cni", "network": "nowhere"},
                                                                "ADD", "ctr-c", "/run/netns/b")
    assert error(missing)["code"] == 7 and "network nowhere not found" in error(missing)["msg"]
    rt.delete("ctr-a", ns_a, result)


def test_gc_and_status(host):
    ns_a, ns_b = netns(host, "a", "b")
    rt = Runtime(host, berth_only("1.1.0", subnet="10.30.0.0/24"))
    rt.add("ctr-a", ns_a)
    rt.add("ctr-b", ns_b)
    plugin = rt.conflist["plugins"][0]
    valid = {"cni.dev/valid-attachments": [{"containerID": "ctr-a", "ifname": "eth0"}]}
    ok(rt.exec(plugin, "GC", "", "", "", extra=valid))
    assert list(inspect(host, "network", "inspect", "cninet")[0]["Containers"]) == ["ctr-a"]
    assert "eth0" not in ok(in_ns(host, "b", "ip", "-o", "link"))
    assert "eth0" in ok(in_ns(host, "a", "ip", "-o", "link"))
    ok(rt.exec(plugin, "STATUS", "", "", ""))
    host.stop_berthd()
    down = error(rt.exec(plugin, "STATUS", "", "", ""))
    assert down["code"] == 50 and down["msg"].startswith("berthd is not reachable")
    assert error(rt.exec(plugin, "ADD", "ctr-c", ns_b))["code"] == 11


def test_endpoint_survives_a_berthd_restart_and_reconcile_releases_a_vanished_namespace(host):
    ns_a, ns_b = netns(host, "a", "b")
    rt = Runtime(host, berth_only(subnet="10.30.0.0/24"))
    result_a = rt.add("ctr-a", ns_a)
    rt.add("ctr-b", ns_b)
    host.stop_berthd()
    host.start_berthd()
    rt.check("ctr-a", ns_a, result_a)
    ok(in_ns(host, "a", "ping", "-c1", "-W2", "10.30.0.3"))
    assert len(inspect(host, "network", "inspect", "cninet")[0]["Containers"]) == 2
    ok(host.run(["ip", "netns", "del", "b"]))
    assert "released CNI endpoint: cni-ctr-b (cninet/eth0)" in ok(host.berth("system", "reconcile"))
    assert list(inspect(host, "network", "inspect", "cninet")[0]["Containers"]) == ["ctr-a"]
    (ns_c,) = netns(host, "c")
    assert rt.add("ctr-c", ns_c)["ips"][0]["address"] == "10.30.0.3/24"  # the released address is free again
    assert "eth0" in ok(in_ns(host, "a", "ip", "-o", "link"))


def test_a_berthd_crash_during_add_is_repaired_at_the_next_start(host, monkeypatch):
    ns_a, ns_b = netns(host, "a", "b")
    rt = Runtime(host, berth_only(subnet="10.30.0.0/24"))
    rt.add("ctr-a", ns_a)
    host.stop_berthd()
    monkeypatch.setenv("BERTH_FAULT", "external-plugged:crash")  # berthd dies after the kernel work
    host.start_berthd()
    crashed = error(rt.exec(rt.conflist["plugins"][0], "ADD", "ctr-b", ns_b))
    assert crashed["code"] == 11  # the runtime is told to try again
    monkeypatch.delenv("BERTH_FAULT")
    host.stop_berthd()  # reaps the crashed berthd
    host.start_berthd()  # reconciliation at start: the half-made endpoint goes, the namespace stays
    assert "eth0" not in ok(in_ns(host, "b", "ip", "-o", "link"))
    assert list(inspect(host, "network", "inspect", "cninet")[0]["Containers"]) == ["ctr-a"]
    assert rt.add("ctr-b", ns_b)["ips"][0]["address"] == "10.30.0.3/24"
