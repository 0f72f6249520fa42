"""berthd's side of berth-cni over the in-memory kernel: endpoints in namespaces berth does not own."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from berth.api.views import network_json
from berth.config import Paths
from berth.engine import Engine
from berth.engine.external import AddRequest, EndpointBroken, EndpointExists, UnknownAttachment
from berth.engine.txn import InjectedFault
from berth.errors import AddressInUse, Forbidden, InvalidParameter, NotFound
from berth.kernel.fake import FakeKernel
from berth.store.sqlite import Store
from tests.unit.fakes import FakeImages, FakeRuntime

NS_A, NS_B = "/run/netns/a", "/run/netns/b"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng = Engine(Paths(tmp_path / "root", tmp_path / "run"), FakeKernel([ip_network("192.0.2.0/24")]),
                 FakeRuntime(), FakeImages(), store=Store(":memory:"), resolv_conf=tmp_path / "resolv.conf",
                 hosts_file=tmp_path / "hosts")
    eng.start()
    for ns in (NS_A, NS_B):
        eng.ctx.kernel.netns_create(ns)  # the runtime's namespaces
    yield eng
    eng.close()


def req(container: str = "ctr-a", netns: str = NS_A, **extra) -> AddRequest:
    body = {"containerID": container, "ifname": "eth0", "netns": netns, "cniNetwork": "cninet",
            "name": f"cni-{container}", "subnet": "10.30.0.0/24", **extra}
    return AddRequest.from_json(body)


def test_add_creates_the_network_on_first_use_and_plugs_a_real_endpoint(engine):
    result = engine.external.add(req())
    net = engine.networks.resolve("cninet")
    assert net.labels == {"berth.cni.network": "cninet"}
    assert result["interfaces"] == [{"name": net.bridge}, {"name": result["interfaces"][1]["name"]},
                                    {"name": "eth0", "mac": "02:42:0a:1e:00:02", "sandbox": NS_A}]
    assert result["ips"] == [{"address": "10.30.0.2/24", "interface": 2, "gateway": "10.30.0.1"}]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.30.0.1"}]
    kernel = engine.ctx.kernel
    host_veth = kernel.host[result["interfaces"][1]["name"]]
    assert host_veth.master == net.bridge and host_veth.alias.startswith(f"berth:{net.id}:")
    assert [str(a) for a in kernel.namespaces[NS_A]["eth0"].addresses] == ["10.30.0.2/24"]
    assert kernel.netns_routes(NS_A) == [{"dst": "default", "gateway": "10.30.0.1", "dev": "eth0"}]
    listed = network_json(engine, net)["Containers"]
    assert listed == {"ctr-a": {"Name": "cni-ctr-a", "EndpointID": engine.external.all()[0].attachment.endpoint_id,
                                "MacAddress": "02:42:0a:1e:00:02", "IPv4Address": "10.30.0.2/24", "IPv6Address": ""}}
    assert engine.containers.all() == []  # not a container: nothing berth could start, stop or remove
    with pytest.raises(Forbidden, match="has active endpoints"):
        engine.networks.remove("cninet")


def test_existing_network_without_subnet_and_missing_network(engine):
    engine.external.add(req())
    second = engine.external.add(req("ctr-b", NS_B, subnet=""))
    assert second["ips"][0]["address"] == "10.30.0.3/24"
    with pytest.raises(NotFound, match='network nowhere not found'):
        engine.external.add(req("ctr-c", NS_B, network="nowhere", subnet="", ifname="eth1"))
    with pytest.raises(InvalidParameter, match="bridge networks only"):
        engine.external.add(req("ctr-c", NS_B, network="host", ifname="eth1"))
    with pytest.raises(InvalidParameter, match="network cninet exists with subnets 10.30.0.0/24, not 10.99.0.0/24"):
        engine.external.add(req("ctr-c", NS_B, subnet="10.99.0.0/24", ifname="eth1"))


def test_static_address_mac_and_conflicts(engine):
    engine.external.add(req(ips=["10.30.0.9/24"], mac="02:00:00:00:00:09"))
    inside = engine.ctx.kernel.namespaces[NS_A]["eth0"]
    assert inside.mac == "02:00:00:00:00:09" and [str(a) for a in inside.addresses] == ["10.30.0.9/24"]
    with pytest.raises(AddressInUse) as err:
        engine.external.add(req("ctr-b", NS_B, ips=["10.30.0.9"]))
    assert err.value.cni_code == 100
    assert "eth0" not in engine.ctx.kernel.namespaces[NS_B]


def test_second_add_of_an_attachment_or_a_taken_interface_is_refused(engine):
    engine.external.add(req())
    before = engine.ctx.kernel.snapshot()
    with pytest.raises(EndpointExists, match="already exists") as err:
        engine.external.add(req())
    assert err.value.cni_code == 101
    with pytest.raises(EndpointExists, match=f"interface eth0 already exists in network namespace {NS_A}"):
        engine.external.add(req("ctr-other"))
    assert engine.ctx.kernel.snapshot() == before


@pytest.mark.parametrize("step", ["external-reserved", "endpoint-reserved", "external-plugged"])
def test_a_failed_add_leaves_everything_as_before(engine, monkeypatch, step):
    before = engine.ctx.kernel.snapshot()
    monkeypatch.setenv("BERTH_FAULT", step)
    with pytest.raises(InjectedFault):
        engine.external.add(req())
    monkeypatch.delenv("BERTH_FAULT")
    assert engine.ctx.kernel.snapshot() == before
    assert engine.ctx.store.externals() == []
    assert "cninet" not in [n.name for n in engine.networks.all()]  # created for the ADD, removed with it
    engine.external.add(req())  # and the address is free again
    assert engine.external.all()[0].attachment.ipv4.compressed == "10.30.0.2/24"


def test_del_is_idempotent_and_frees_the_address_even_without_the_namespace(engine):
    engine.external.add(req())
    engine.external.add(req("ctr-b", NS_B))
    engine.external.delete("ctr-a", "eth0", "cninet")
    engine.external.delete("ctr-a", "eth0", "cninet")
    engine.external.delete("never-added", "eth0", "cninet")
    assert "eth0" not in engine.ctx.kernel.namespaces[NS_A]
    assert engine.ctx.kernel.netns_exists(NS_A)  # berth never removes the runtime's namespace
    engine.ctx.kernel.netns_delete(NS_B)
    engine.external.delete("ctr-b", "eth0", "cninet")
    assert engine.external.all() == []
    engine.networks.remove("cninet")


def test_del_of_another_cni_network_touches_nothing(engine):
    engine.external.add(req())
    engine.external.delete("ctr-a", "eth0", "othernet")
    assert len(engine.external.all()) == 1


def test_check_reports_missing_interface_and_route(engine):
    engine.external.add(req())
    engine.external.check("ctr-a", "eth0", "cninet")
    with pytest.raises(UnknownAttachment):
        engine.external.check("ctr-x", "eth0", "cninet")
    engine.ctx.kernel.netns_set_default_routes(NS_A, gateway4=None, gateway6=None)
    with pytest.raises(EndpointBroken, match="no default route via 10.30.0.1 on eth0"):
        engine.external.check("ctr-a", "eth0", "cninet")
    engine.ctx.kernel.namespaces[NS_A].pop("eth0")
    with pytest.raises(EndpointBroken, match="container interface eth0 is missing"):
        engine.external.check("ctr-a", "eth0", "cninet")


def test_gc_releases_what_the_runtime_no_longer_lists(engine):
    engine.external.add(req())
    engine.external.add(req("ctr-b", NS_B))
    engine.ctx.kernel.netns_create("/run/netns/c")
    engine.external.add(req("ctr-c", "/run/netns/c", cniNetwork="othernet", network="cninet"))
    released = engine.external.gc("cninet", [("ctr-a", "eth0")])
    assert released == ["ctr-b"]
    assert sorted(ep.container_id for ep in engine.external.all()) == ["ctr-a", "ctr-c"]
    assert "eth0" not in engine.ctx.kernel.namespaces[NS_B]


def test_reconcile_keeps_live_endpoints_and_releases_those_whose_namespace_vanished(engine):
    engine.external.add(req())
    engine.external.add(req("ctr-b", NS_B))
    engine.ctx.kernel.netns_delete(NS_B)
    report = engine.reconcile()
    assert report.released_external == ["cni-ctr-b (cninet/eth0)"]
    assert [ep.container_id for ep in engine.external.all()] == ["ctr-a"]
    assert engine.ctx.kernel.namespaces[NS_A]["eth0"]  # kept, and its address still taken
    engine.ctx.kernel.netns_create(NS_B)
    assert engine.external.add(req("ctr-b", NS_B))["ips"][0]["address"] == "10.30.0.3/24"


def test_reconcile_finishes_an_interrupted_add(engine, monkeypatch):
    monkeypatch.setenv("BERTH_FAULT", "external-plugged")
    # a crash after the kernel work: simulate by keeping the records the fault leaves when undo is skipped
    monkeypatch.setattr("berth.engine.txn.Undo.rollback", lambda self: None)
    with pytest.raises(InjectedFault):
        engine.external.add(req())
    monkeypatch.delenv("BERTH_FAULT")
    assert engine.ctx.store.externals()[0][1] == "pending"
    report = engine.reconcile()
    assert report.released_external == ["cni-ctr-a (cninet/eth0)"]
    assert "eth0" not in engine.ctx.kernel.namespaces[NS_A] and engine.ctx.kernel.netns_exists(NS_A)
    assert not [l for l in engine.ctx.kernel.host.values() if l.kind == "veth"]


def test_dual_stack_network_on_first_use(engine):
    result = engine.external.add(req(ipv6Subnet="fd00:30::/64", gateway="10.30.0.254", ipRange="10.30.0.128/25"))
    assert engine.networks.resolve("cninet").enable_ipv6
    assert [ip["address"] for ip in result["ips"]] == ["10.30.0.128/24", "fd00:30::2/64"]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.30.0.254"}, {"dst": "::/0", "gw": "fd00:30::1"}]
