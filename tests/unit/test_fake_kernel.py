"""The in-memory kernel twin behaves like the real one where the engine can tell: same methods, same
preconditions, same errors, and nothing changed after a refusal."""

from __future__ import annotations

import inspect
from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network
from pathlib import Path
from typing import Any

import pytest

from berth.errors import KernelError
from berth.kernel.fake import FakeKernel
from berth.kernel.host import Kernel

BRIDGE = "berth-0a1b2c3d4"
ALIAS = "berth:net:0a1b2c3d4"
NS = Path("/run/berth/netns/c1")
GW4 = IPv4Address("10.77.0.1")
GW6 = IPv6Address("fd00:77::1")


def public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(cls).items()
            if callable(fn) and not name.startswith("_")}


def test_the_twin_has_the_real_kernels_methods_and_signatures() -> None:
    real, fake = public(Kernel), public(FakeKernel)
    assert set(real) <= set(fake)
    for name, signature in real.items():
        assert str(fake[name]) == str(signature), name


@pytest.fixture
def kernel() -> FakeKernel:
    k = FakeKernel()
    k.bridge_ensure(BRIDGE, alias=ALIAS, mtu=1500,
                    addresses=[ip_interface("10.77.0.1/24"), ip_interface("fd00:77::1/64")])
    k.netns_create(NS)
    return k


def attach(kernel: FakeKernel, netns: Path = NS, n: int = 2, **override: Any) -> None:
    args: dict[str, Any] = dict(
        netns=netns, host_name=f"bveth{n:010d}", alias=f"berth:ep:{n}", bridge=BRIDGE, ifname="eth0",
        mac=f"02:42:0a:4d:00:{n:02x}", mtu=1500, addresses=[ip_interface(f"10.77.0.{n}/24")], gateway4=GW4,
    )
    args.update(override)
    kernel.veth_attach(**args)


def test_netns_create_refuses_an_existing_path_and_delete_is_idempotent(kernel: FakeKernel) -> None:
    with pytest.raises(KernelError, match=f"network namespace {NS} already exists"):
        kernel.netns_create(NS)
    assert [(l.name, l.up) for l in kernel.netns_links(NS)] == [("lo", True)]
    kernel.netns_delete(NS)
    kernel.netns_delete(NS)
    assert not kernel.netns_exists(NS)
    with pytest.raises(KernelError, match="does not exist"):
        kernel.netns_links(NS)


def test_bridge_ensure_is_idempotent_and_refuses_other_owners(kernel: FakeKernel) -> None:
    before = kernel.snapshot()
    kernel.bridge_ensure(BRIDGE, alias=ALIAS, mtu=1500, addresses=[ip_interface("10.77.0.1/24")])
    assert kernel.snapshot() == before
    with pytest.raises(KernelError, match=f"a link named {BRIDGE} already exists"):
        kernel.bridge_ensure(BRIDGE, alias="berth:net:ffffffff", mtu=1500, addresses=[])
    attach(kernel)
    with pytest.raises(KernelError, match="a link named bveth0000000002 already exists"):
        kernel.bridge_ensure("bveth0000000002", alias=ALIAS, mtu=1500, addresses=[])
    with pytest.raises(KernelError, match="Numerical result out of range"):
        kernel.bridge_ensure("berth-name-too-long", alias=ALIAS, mtu=1500, addresses=[])
    info = kernel.link_get(BRIDGE)
    assert info is not None and (info.kind, info.alias, info.up) == ("bridge", ALIAS, True)


def test_attach_is_visible_inside_and_on_the_bridge(kernel: FakeKernel) -> None:
    attach(kernel, addresses=[ip_interface("10.77.0.2/24"), ip_interface("fd00:77::2/64")], gateway6=GW6)
    eth0 = {l.name: l for l in kernel.netns_links(NS)}["eth0"]
    assert (eth0.mac, eth0.up, {str(a) for a in eth0.addresses}) == \
        ("02:42:0a:4d:00:02", True, {"10.77.0.2/24", "fd00:77::2/64"})
    assert {(r["dst"], r["gateway"], r["dev"]) for r in kernel.netns_routes(NS)} == \
        {("default", str(GW4), "eth0"), ("default", str(GW6), "eth0")}
    host = kernel.link_get("bveth0000000002")
    assert host is not None and (host.master, host.alias, host.up) == (BRIDGE, "berth:ep:2", True)
    assert kernel.bridge_port_count(BRIDGE) == 1
    assert sorted(l.name for l in kernel.links()) == [BRIDGE, "bveth0000000002"]


@pytest.mark.parametrize("override, reason", [
    (dict(host_name="bveth9", ifname="eth1", gateway4=IPv4Address("10.99.0.1")), "Network is unreachable"),
    (dict(host_name="bveth9"), "File exists"),
    (dict(host_name="bveth0000000002", ifname="eth1"), "File exists"),
    (dict(host_name="bveth-much-too-long", ifname="eth1"), "Numerical result out of range"),
    (dict(host_name="bveth9", ifname="eth1", bridge="berth-nothere"), "bridge berth-nothere does not exist"),
    (dict(host_name="bveth9", ifname="eth1", netns=Path("/gone")), "network namespace /gone does not exist"),
])
def test_a_refused_attach_changes_nothing(kernel: FakeKernel, override: dict[str, Any], reason: str) -> None:
    attach(kernel)
    before = kernel.snapshot()
    with pytest.raises(KernelError, match=reason):
        attach(kernel, n=3, **override)
    assert kernel.snapshot() == before


def test_a_full_bridge_is_refused_with_dockers_reasoning(kernel: FakeKernel) -> None:
    for n in range(1023):
        attach(kernel, host_name=f"bv{n}", ifname=f"e{n}", addresses=[], gateway4=None)
    before = kernel.snapshot()
    with pytest.raises(KernelError) as caught:
        attach(kernel, host_name="bv-last", ifname="e-last", addresses=[], gateway4=None)
    assert str(caught.value) == f"network {BRIDGE} is full: a Linux bridge takes at most 1023 ports"
    assert kernel.snapshot() == before


def test_a_veth_pair_dies_together(kernel: FakeKernel) -> None:
    attach(kernel)
    kernel.link_delete("bveth0000000002")
    assert [l.name for l in kernel.netns_links(NS)] == ["lo"] and kernel.netns_routes(NS) == []
    attach(kernel)
    kernel.netns_link_delete(NS, "eth0")
    kernel.netns_link_delete(NS, "eth0")
    assert kernel.link_get("bveth0000000002") is None and kernel.netns_routes(NS) == []
    attach(kernel)
    kernel.netns_delete(NS)
    assert kernel.link_get("bveth0000000002") is None and kernel.bridge_port_count(BRIDGE) == 0


def test_default_routes_are_replaced_removed_and_checked(kernel: FakeKernel) -> None:
    attach(kernel, gateway4=None)
    assert kernel.netns_routes(NS) == []
    kernel.netns_set_default_routes(NS, gateway4=GW4, gateway6=None)
    assert kernel.netns_routes(NS) == [{"dst": "default", "gateway": str(GW4), "dev": "eth0"}]
    before = kernel.snapshot()
    with pytest.raises(KernelError, match="Network is unreachable"):
        kernel.netns_set_default_routes(NS, gateway4=GW4, gateway6=GW6)
    kernel.netns_set_default_routes(NS, gateway4=None, gateway6=None)
    assert kernel.netns_routes(NS) == []
    assert before != kernel.snapshot()


def test_host_networks_leave_out_berths_bridges() -> None:
    kernel = FakeKernel(host_networks=[ip_network("192.168.5.0/24")])
    kernel.bridge_ensure(BRIDGE, alias=ALIAS, mtu=1500, addresses=[ip_interface("10.77.0.1/24")])
    assert kernel.host_networks(own_bridges=[BRIDGE]) == [ip_network("192.168.5.0/24")]
    assert ip_network("10.77.0.0/24") in kernel.host_networks()


def test_sysctls_read_back_and_show_in_the_snapshot() -> None:
    kernel = FakeKernel()
    kernel.sysctl_set("net.ipv4.ip_forward", "1")
    assert kernel.sysctl_get("net.ipv4.ip_forward") == "1"
    assert kernel.snapshot()["sysctls"] == {"net.ipv4.ip_forward": "1"}
    with pytest.raises(KernelError, match="No such file or directory"):
        kernel.sysctl_set(f"net.ipv4.conf.{BRIDGE}.route_localnet", "1")
    kernel.bridge_ensure(BRIDGE, alias=ALIAS, mtu=1500, addresses=[])
    kernel.sysctl_set(f"net.ipv4.conf.{BRIDGE}.route_localnet", "1")
    kernel.link_delete(BRIDGE)  # an interface's sysctls go with it
    assert kernel.snapshot()["sysctls"] == {"net.ipv4.ip_forward": "1"}


def test_an_nft_batch_applies_whole_or_not_at_all() -> None:
    kernel = FakeKernel()
    kernel.nft([{"add": {"table": {"family": "inet", "name": "berth"}}},
                {"add": {"set": {"family": "inet", "table": "berth", "name": "ok", "type": "ipv4_addr"}}}])
    before = kernel.snapshot()
    with pytest.raises(KernelError, match="No such file or directory"):
        kernel.nft([
            {"add": {"element": {"family": "inet", "table": "berth", "name": "ok", "elem": ["10.0.0.1"]}}},
            {"add": {"element": {"family": "inet", "table": "berth", "name": "missing", "elem": ["10.0.0.2"]}}},
        ])
    assert kernel.snapshot() == before
    kernel.nft([{"add": {"element": {"family": "inet", "table": "berth", "name": "ok", "elem": ["10.0.0.1"]}}}])
    assert kernel.nft_table("inet", "berth") == {"ok": ["'10.0.0.1'"]}
    assert kernel.nft_table("ip", "berth") is None


def test_injected_failures_fire_once() -> None:
    kernel = FakeKernel()
    kernel.fail["netns_create"] = KernelError("injected")
    with pytest.raises(KernelError, match="injected"):
        kernel.netns_create(NS)
    assert not kernel.netns_exists(NS)
    kernel.netns_create(NS)
    assert kernel.netns_exists(NS)
