"""Networks end to end through the berth CLI and berthd, in a throwaway host."""

from __future__ import annotations

import json

import pytest

from tests.helpers import fails, inspect, kernel_snapshot, ok

pytestmark = pytest.mark.integration


def test_builtin_networks_exist_and_are_protected(host):
    out = ok(host.berth("network", "ls"))
    lines = out.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = {line.split()[1]: line.split()[2] for line in lines[1:]}
    assert rows == {"bridge": "bridge", "host": "host", "none": "null"}
    for name in ("bridge", "host", "none"):
        fails(host.berth("network", "rm", name), f"{name} is a pre-defined network and cannot be removed")
    fails(host.berth("network", "create", "bridge"), "operation is not permitted on predefined bridge network")
    fails(host.berth("network", "create", "-d", "host", "h2"), 'only one instance of "host" network is allowed')
    bridge = inspect(host, "network", "inspect", "bridge")[0]
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.name"] == "berth0"
    link = json.loads(ok(host.run(["ip", "-j", "addr", "show", "berth0"])))[0]
    assert {"local": "172.17.0.1", "prefixlen": 16}.items() <= link["addr_info"][0].items()


def test_create_inspect_ls_rm(host):
    net_id = ok(host.berth(
        "network", "create", "--subnet", "10.77.0.0/16", "--gateway", "10.77.0.254", "--ip-range", "10.77.5.0/24",
        "--aux-address", "host1=10.77.0.5", "--label", "team=net", "-o", "com.docker.network.bridge.name=br77",
        "-o", "com.docker.network.driver.mtu=1400", "full",
    )).strip()
    assert len(net_id) == 64
    net = inspect(host, "network", "inspect", "full")[0]
    assert list(net) == ["Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal", "Attachable",
                         "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels"]
    assert net["Id"] == net_id and net["Driver"] == "bridge" and net["Scope"] == "local"
    assert net["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/16", "IPRange": "10.77.5.0/24", "Gateway": "10.77.0.254",
                                      "AuxiliaryAddresses": {"host1": "10.77.0.5"}}]
    assert net["Labels"] == {"team": "net"} and net["Containers"] == {}
    link = json.loads(ok(host.run(["ip", "-j", "addr", "show", "br77"])))[0]
    assert link["mtu"] == 1400 and link["addr_info"][0]["local"] == "10.77.0.254"
    assert "full" in ok(host.berth("network", "ls", "-f", "label=team=net", "--format", "{{.Name}}")).split()
    assert ok(host.berth("network", "ls", "-q", "-f", "name=full")).strip() == net_id[:12]
    assert ok(host.berth("network", "rm", "full")).strip() == "full"
    assert host.run(["ip", "link", "show", "br77"]).returncode != 0
    fails(host.berth("network", "inspect", "full"), "network full not found")


def test_automatic_subnets_are_lowest_free_and_skip_host_routes(host):
    # Occupy 172.18.0.0/16 with a host route the way a VPN or LAN would: berth must skip it.
    ok(host.run(["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"]))
    ok(host.run(["ip", "addr", "add", "172.18.3.1/24", "dev", "lan0"]))
    ok(host.run(["ip", "link", "set", "lan0", "up"]))
    ok(host.berth("network", "create", "a"))
    ok(host.berth("network", "create", "b"))
    subnet = lambda name: inspect(host, "network", "inspect", name)[0]["IPAM"]["Config"][0]["Subnet"]
    assert subnet("a") == "172.19.0.0/16"
    assert subnet("b") == "172.20.0.0/16"
    ok(host.berth("network", "rm", "a"))
    ok(host.berth("network", "create", "c"))
    assert subnet("c") == "172.19.0.0/16"


@pytest.mark.parametrize("args, message", [
    (["network", "create", "bad name!"], "Invalid network name (bad name!)"),
    (["network", "create", "--subnet", "10.1.0.0/33", "x"], "Invalid subnet 10.1.0.0/33"),
    (["network", "create", "--subnet", "10.1.0.0/16", "--gateway", "10.2.0.1", "x"], "no matching subnet for gateway 10.2.0.1"),
    (["network", "create", "--subnet", "10.1.0.0/16", "--ip-range", "10.2.0.0/24", "x"], "no matching subnet for range 10.2.0.0/24"),
    (["network", "create", "--subnet", "10.1.0.0/16", "--subnet", "10.1.2.0/24", "x"], "multiple overlapping subnet configuration is not supported"),
    (["network", "create", "--subnet", "10.99.0.0/24", "dup"], "network with name dup already exists"),
    (["network", "create", "--subnet", "10.99.0.128/25", "over"], "Pool overlaps with other one on this address space"),
    (["network", "create", "-o", "com.docker.network.bridge.enable_icc=bogus", "x"], "failed to parse com.docker.network.bridge.enable_icc value: bogus"),
    (["network", "create", "-o", "com.docker.network.bridge.name=berth0", "x"], "networks have same bridge name"),
    (["network", "create", "-d", "nosuch", "x"], 'plugin "nosuch" not found'),
    (["network", "rm", "nosuch"], "network nosuch not found"),
    (["network", "connect", "host", "nosuch"], "No such container: nosuch"),
])
def test_bad_input_is_refused_and_changes_nothing(host, args, message):
    ok(host.berth("network", "create", "--subnet", "10.99.0.0/24", "dup"))
    before_ls = ok(host.berth("network", "ls", "--no-trunc"))
    before = kernel_snapshot(host, host.run_root)
    fails(host.berth(*args), message)
    assert ok(host.berth("network", "ls", "--no-trunc")) == before_ls
    assert kernel_snapshot(host, host.run_root) == before


def test_network_prune_removes_only_unused_custom_networks(bb):
    ok(bb.berth("network", "create", "used"))
    ok(bb.berth("network", "create", "unused"))
    ok(bb.berth("run", "-d", "--name", "c1", "--network", "used", "bb", "sleep", "600"))
    out = ok(bb.berth("network", "prune", "-f"))
    assert "unused" in out and "used\n" not in out.replace("unused", "")
    names = ok(bb.berth("network", "ls", "--format", "{{.Name}}")).split()
    assert sorted(names) == ["bridge", "host", "none", "used"]
    dangling = ok(bb.berth("network", "ls", "-f", "dangling=true", "--format", "{{.Name}}")).split()
    assert dangling == []
