"""CNI plugins as berth network drivers, with Debian's reference plugins in a throwaway host.

Every configuration keeps host-local's leases under the test's own directory (``dataDir``): the
throwaway host shares the machine's file system, and the plugins' default would be /var/lib/cni.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import fails, inspect, ok, poll

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(),
                                                           reason="containernetworking-plugins not installed")]

FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')"
WWW = "mkdir -p /www && echo via-cni > /www/index.html && exec httpd -f -p 80 -h /www"


def host_local(tmp: Path, subnet: str, **extra: object) -> dict:
    return {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(tmp / "leases"), **extra}


def bridge_conflist(tmp: Path, name: str = "cnet", subnet: str = "10.77.0.0/24", *more: dict) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [
        {"type": "bridge", "bridge": f"cni-{name}"[:15], "isGateway": True,
         "ipam": host_local(tmp, subnet, routes=[{"dst": "0.0.0.0/0"}])},
        *more,
    ]}


def write(tmp: Path, name: str, conf: dict) -> Path:
    path = tmp / name
    path.write_text(json.dumps(conf))
    return path


def leases(tmp: Path, network: str) -> list[str]:
    directory = tmp / "leases" / network
    return sorted(p.name for p in directory.iterdir() if p.name[0].isdigit()) if directory.is_dir() else []


def links(host) -> list[str]:
    return sorted(link["ifname"] for link in json.loads(ok(host.run(["ip", "-j", "link"]))))


def test_bridge_host_local_chain_ping_inspect_disconnect_and_restart(bb):
    tmp = bb.tmp
    conf = write(tmp, "cnet.conflist", bridge_conflist(tmp))
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "cnet"))
    conf.unlink()  # berth keeps its own copy: later attaches do not need the file
    ok(bb.berth("run", "-d", "--name", "a", "--network", "cnet", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "b", "--network", "cnet", "bb", "sleep", "600"))
    net = inspect(bb, "network", "inspect", "cnet")[0]
    assert net["Driver"] == "cni" and net["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24"}]
    by_name = {c["Name"]: c for c in net["Containers"].values()}
    b_ip = by_name["b"]["IPv4Address"].split("/")[0]
    assert by_name["a"]["IPv4Address"].startswith("10.77.0.") and b_ip.startswith("10.77.0.")
    result = by_name["a"]["CNIResult"]
    names = [i["name"] for i in result["interfaces"]]
    assert names[0] == "cni-cnet" and names[-1] == "eth0" and result["ips"][0]["gateway"] == "10.77.0.1"
    settings = inspect(bb, "inspect", "a")[0]["NetworkSettings"]["Networks"]["cnet"]
    assert settings["Gateway"] == "10.77.0.1" and settings["MacAddress"] == result["interfaces"][-1]["mac"]
    ok(bb.berth("exec", "a", "ping", "-c", "1", "-W", "2", b_ip))  # real packets across the plugin's bridge
    assert ok(bb.berth("exec", "a", "ip", "route")).startswith("default via 10.77.0.1")  # host-local's route kept
    assert len(leases(tmp, "cnet")) == 2
    # berthd restart: the endpoints and their cached results are kept, DEL still works afterwards
    bb.stop_berthd()
    bb.start_berthd()
    ok(bb.berth("exec", "a", "ping", "-c", "1", "-W", "2", b_ip))
    ok(bb.berth("network", "disconnect", "cnet", "b"))  # DEL: the lease is freed, the interface gone
    assert len(leases(tmp, "cnet")) == 1
    assert "eth0" not in ok(bb.berth("exec", "b", "ip", "link"))
    ok(bb.berth("network", "connect", "cnet", "b"))
    ok(bb.berth("exec", "b", "ping", "-c", "1", "-W", "2", by_name["a"]["IPv4Address"].split("/")[0]))
    ok(bb.berth("rm", "-f", "a", "b"))
    poll(lambda: leases(tmp, "cnet") == [])
    assert not [name for name in links(bb) if name.startswith("veth")]
    ok(bb.berth("network", "rm", "cnet"))


def test_failing_second_plugin_reaches_user_and_leaves_nothing(bb):
    tmp = bb.tmp
    # tuning refuses an unknown sysctl: the bridge plugin's ADD already ran and must be undone
    bad = {"type": "tuning", "sysctl": {"net.ipv4.no_such_knob": "1"}}
    conf = write(tmp, "fail.conflist", bridge_conflist(tmp, "failnet", "10.78.0.0/24", bad))
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "failnet"))
    before = [name for name in links(bb) if name.startswith("veth")]
    result = bb.berth("run", "-d", "--name", "x", "--network", "failnet", "bb", "sleep", "60")
    fails(result, 'plugin type="tuning" failed (add)')
    assert "no_such_knob" in result.stderr
    assert leases(tmp, "failnet") == []
    assert [name for name in links(bb) if name.startswith("veth")] == before
    assert inspect(bb, "network", "inspect", "failnet")[0]["Containers"] == {}
    assert inspect(bb, "inspect", "x")[0]["State"]["Running"] is False


def test_ptp_and_tuning_sysctl_visible_inside(bb):
    tmp = bb.tmp
    conf = write(tmp, "ptp.conflist", {"cniVersion": "1.0.0", "name": "ptpnet", "plugins": [
        {"type": "ptp", "ipam": host_local(tmp, "10.79.0.0/24")},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
    ]})
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "ptpnet"))
    ok(bb.berth("run", "-d", "--name", "p1", "--network", "ptpnet", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "p2", "--network", "ptpnet", "bb", "sleep", "600"))
    ip2 = inspect(bb, "inspect", "p2")[0]["NetworkSettings"]["Networks"]["ptpnet"]["IPAddress"]
    assert ip2.startswith("10.79.0.")
    ok(bb.berth("exec", "p1", "ping", "-c", "1", "-W", "2", ip2))  # routed through the host by ptp
    assert ok(bb.berth("exec", "p1", "cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify")).strip() == "1"
    ok(bb.berth("rm", "-f", "p1", "p2"))
    assert leases(tmp, "ptpnet") == []


def test_macvlan_on_a_veth_parent(bb):
    tmp = bb.tmp
    ok(bb.run(["ip", "link", "add", "mvparent", "type", "veth", "peer", "name", "mvpeer"]))
    ok(bb.run(["ip", "link", "set", "mvparent", "up"]))
    ok(bb.run(["ip", "link", "set", "mvpeer", "up"]))
    conf = write(tmp, "mv.conf", {"cniVersion": "1.0.0", "name": "mvnet", "type": "macvlan", "master": "mvparent",
                                  "mode": "bridge", "ipam": host_local(tmp, "10.80.0.0/24")})
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "mvnet"))
    ok(bb.berth("run", "-d", "--name", "m1", "--network", "mvnet", "bb", "sleep", "600"))
    ok(bb.berth("run", "-d", "--name", "m2", "--network", "mvnet", "bb", "sleep", "600"))
    ip2 = inspect(bb, "inspect", "m2")[0]["NetworkSettings"]["Networks"]["mvnet"]["IPAddress"]
    ok(bb.berth("exec", "m1", "ping", "-c", "1", "-W", "2", ip2))
    result = inspect(bb, "network", "inspect", "mvnet")[0]["Containers"].popitem()[1]["CNIResult"]
    assert [i["name"] for i in result["interfaces"]] == ["eth0"]  # no host side: a macvlan on the parent
    ok(bb.berth("rm", "-f", "m1", "m2"))
    assert leases(tmp, "mvnet") == []


def test_portmap_by_capability_reachable_from_outside(bb):
    tmp = bb.tmp
    bb.outside()
    conf = write(tmp, "pm.conflist", bridge_conflist(
        tmp, "pmnet", "10.81.0.0/24", {"type": "portmap", "capabilities": {"portMappings": True}}))
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "pmnet"))
    ok(bb.berth("run", "-d", "--name", "web", "--network", "pmnet", "-p", "8080:80", "bb", "sh", "-c", WWW))
    poll(lambda: bb.berth("exec", "web", "wget", "-qO-", "http://127.0.0.1/").returncode == 0)
    assert ok(bb.run_outside([sys.executable, "-c", FETCH, "http://203.0.113.1:8080/"])) == "via-cni\n"
    assert "CNI-DN-" in ok(bb.run(["iptables-save", "-t", "nat"]))
    ok(bb.berth("rm", "-f", "web"))  # DEL removes the DNAT chain
    assert "CNI-DN-" not in ok(bb.run(["iptables-save", "-t", "nat"]))
    # without the capability, a static runtimeConfig in the file is handed to the plugin as written
    static = {"type": "portmap", "runtimeConfig": {"portMappings": [
        {"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]}}
    conf = write(tmp, "pm2.conflist", bridge_conflist(tmp, "pmstatic", "10.87.0.0/24", static))
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "pmstatic"))
    ok(bb.berth("run", "-d", "--name", "web2", "--network", "pmstatic", "bb", "sh", "-c", WWW))
    poll(lambda: bb.berth("exec", "web2", "wget", "-qO-", "http://127.0.0.1/").returncode == 0)
    assert ok(bb.run_outside([sys.executable, "-c", FETCH, "http://203.0.113.1:8081/"])) == "via-cni\n"


def test_firewall_plugin_iptables_backend(bb):
    tmp = bb.tmp
    conf = write(tmp, "fw.conflist", bridge_conflist(
        tmp, "fwnet", "10.82.0.0/24", {"type": "firewall", "backend": "iptables"}))
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "fwnet"))
    ok(bb.berth("run", "-d", "--name", "f1", "--network", "fwnet", "bb", "sleep", "600"))
    ip = inspect(bb, "inspect", "f1")[0]["NetworkSettings"]["Networks"]["fwnet"]["IPAddress"]
    rules = ok(bb.run(["iptables-save", "-t", "filter"]))
    assert "CNI-FORWARD" in rules and f"{ip}/32" in rules
    ok(bb.run(["ping", "-c", "1", "-W", "2", ip]))
    ok(bb.berth("rm", "-f", "f1"))
    assert f"{ip}/32" not in ok(bb.run(["iptables-save", "-t", "filter"]))


def test_bandwidth_shapes_or_fails_verbatim_leaving_nothing(bb):
    tmp = bb.tmp
    conf = write(tmp, "bw.conflist", bridge_conflist(
        tmp, "bwnet", "10.83.0.0/24",
        {"type": "bandwidth", "ingressRate": 8000000, "ingressBurst": 1000000,
         "egressRate": 8000000, "egressBurst": 1000000}))
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "bwnet"))
    result = bb.berth("run", "-d", "--name", "s", "--network", "bwnet", "bb", "sleep", "600")
    if result.returncode == 0:
        veth = next(i["name"] for i in inspect(bb, "network", "inspect", "bwnet")[0]["Containers"].popitem()[1]
                    ["CNIResult"]["interfaces"] if i["name"].startswith("veth"))
        assert "tbf" in ok(bb.run(["tc", "qdisc", "show", "dev", veth]))
        ok(bb.berth("rm", "-f", "s"))
    else:  # a kernel without ifb or tbf: the plugin's own words, and the chain undone
        fails(result, 'plugin type="bandwidth" failed (add)')
        assert [name for name in links(bb) if name.startswith(("veth", "bwp"))] == []
    assert leases(tmp, "bwnet") == []


def test_discovered_networks_follow_the_directory(bare_host, busybox_tar, monkeypatch):
    host, tmp = bare_host, bare_host.tmp
    confdir = tmp / "net.d"
    confdir.mkdir()
    write(confdir, "10-disc.conflist", bridge_conflist(tmp, "disc", "10.84.0.0/24"))
    (confdir / "99-broken.conf").write_text("{not json")
    monkeypatch.setenv("BERTH_CNI_CONFIG_DIR", str(confdir))
    host.start_berthd()
    ok(host.berth("import", str(busybox_tar), "bb"))
    ls = ok(host.berth("network", "ls", "--format", "{{.Name}} {{.Driver}}")).splitlines()
    assert "disc cni" in ls
    ok(host.berth("run", "-d", "--name", "d1", "--network", "disc", "bb", "sleep", "600"))
    write(confdir, "20-later.conf", {"cniVersion": "0.4.0", "name": "later", "type": "bridge", "bridge": "cni-br9",
                                     "ipam": host_local(tmp, "10.85.0.0/24")})
    assert "later cni" in ok(host.berth("network", "ls", "--format", "{{.Name}} {{.Driver}}")).splitlines()
    fails(host.berth("network", "rm", "later"), f"network later is defined by {confdir / '20-later.conf'}")
    (confdir / "10-disc.conflist").unlink()
    names = lambda: ok(host.berth("network", "ls", "--format", "{{.Name}}")).split()
    assert "disc" in names()  # still used by d1
    ok(host.berth("rm", "-f", "d1"))
    assert "disc" not in names()
    assert leases(tmp, "disc") == []


@pytest.mark.parametrize("step", ["endpoint-plugged", "start-spawned"])
def test_crash_during_attach_is_repaired_at_restart(bb, monkeypatch, step):
    tmp = bb.tmp
    conf = write(tmp, "crash.conflist", bridge_conflist(tmp, "crashnet", "10.86.0.0/24"))
    ok(bb.berth("network", "create", "--driver", "cni", "-o", f"cni.config={conf}", "crashnet"))
    bb.stop_berthd()
    monkeypatch.setenv("BERTH_FAULT", f"{step}:crash")
    bb.start_berthd()
    monkeypatch.delenv("BERTH_FAULT")
    assert bb.berth("run", "-d", "--name", "z", "--network", "crashnet", "bb", "sleep", "600").returncode != 0
    assert len(leases(tmp, "crashnet")) == 1  # the plugins' ADD had run when berthd died
    bb.kill_berthd()  # reaps the dead one
    bb.start_berthd()  # reconcile: DEL with the cached chain
    assert leases(tmp, "crashnet") == []
    poll(lambda: not [name for name in links(bb) if name.startswith("veth")])
    ok(bb.berth("start", "z"))
    assert len(leases(tmp, "crashnet")) == 1
