"""The engine over the in-memory kernel, runtime and store: behaviour, failures and crash recovery."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from berth.config import Paths
from berth.engine import Engine
from berth.engine.txn import InjectedFault
from berth.errors import AddressInUse, Conflict, Forbidden, InvalidParameter, KernelError, NotFound
from berth.kernel.fake import FakeKernel
from berth.store.sqlite import Store
from tests.unit.fakes import FakeImages, FakeRuntime


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.255.255.53\n")
    eng = Engine(Paths(tmp_path / "root", tmp_path / "run"), FakeKernel([ip_network("192.0.2.0/24")]),
                 FakeRuntime(), FakeImages(), store=Store(":memory:"), resolv_conf=resolv,
                 hosts_file=tmp_path / "hosts")
    eng.start()
    yield eng
    eng.close()


def net_req(name: str, subnet: str | None = None, **extra) -> dict:
    config = [{"Subnet": subnet}] if subnet else []
    return {"Name": name, "IPAM": {"Driver": "default", "Config": config}, **extra}


def run(engine: Engine, name: str, network: str = "default", **endpoint) -> str:
    body = {"Image": "bb", "Cmd": ["sleep", "1"], "HostConfig": {"NetworkMode": network}}
    if endpoint:
        body["NetworkingConfig"] = {"EndpointsConfig": {network: endpoint}}
    c = engine.containers.create(name, body)
    engine.containers.start(c.id)
    return c.id


def test_builtins_and_default_bridge(engine):
    names = {n.name: n for n in engine.networks.all()}
    assert set(names) == {"bridge", "host", "none"}
    assert names["bridge"].ipam["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert engine.ctx.kernel.host["berth0"].up


def test_create_and_remove_network_leaves_kernel_as_before(engine):
    before = engine.ctx.kernel.snapshot()
    net = engine.networks.create(net_req("a", "10.1.0.0/24"))
    assert net.bridge == "berth-" + net.id[:9]
    assert "'berth-" + net.id[:9] + "'" in engine.ctx.kernel.sets[("inet berth", "bridges")]
    engine.networks.remove("a")
    assert engine.ctx.kernel.snapshot() == before


def test_automatic_subnets_avoid_host_networks_and_nameservers(engine):
    engine.ctx.kernel._host_networks.append(ip_network("172.18.0.0/24"))
    a = engine.networks.create(net_req("a"))
    assert a.ipam["Config"][0]["Subnet"] == "172.19.0.0/16"


@pytest.mark.parametrize("step", ["network-create-reserved", "network-create-applied"])
def test_failed_create_changes_nothing(engine, monkeypatch, step):
    before, records = engine.ctx.kernel.snapshot(), engine.networks.all()
    monkeypatch.setenv("BERTH_FAULT", step)
    with pytest.raises(InjectedFault):
        engine.networks.create(net_req("a", "10.1.0.0/24"))
    assert engine.ctx.kernel.snapshot() == before and engine.networks.all() == records


def test_kernel_failure_mid_start_rolls_back_everything(engine):
    engine.networks.create(net_req("n", "10.1.0.0/24"))
    c = engine.containers.create("c", {"Image": "bb", "Cmd": ["true"], "HostConfig": {"NetworkMode": "n"}})
    before = engine.ctx.kernel.snapshot()
    engine.ctx.kernel.fail["veth_attach"] = KernelError("boom")
    with pytest.raises(KernelError):
        engine.containers.start(c.id)
    assert engine.ctx.kernel.snapshot() == before
    assert not engine.containers.get(c.id).state.running
    engine.containers.start(c.id)  # the address was released: the retry gets the first one
    [a] = engine.ctx.store.attachments(container_id=c.id)
    assert str(a.ipv4) == "10.1.0.2/24"


def test_addresses_lowest_free_static_and_reuse(engine):
    engine.networks.create(net_req("n", "10.1.0.0/24"))
    a = run(engine, "a", "n")
    b = run(engine, "b", "n", IPAMConfig={"IPv4Address": "10.1.0.50"})
    with pytest.raises(AddressInUse):
        run(engine, "c", "n", IPAMConfig={"IPv4Address": "10.1.0.50"})
    ips = {x.container_id: str(x.ipv4) for x in engine.ctx.store.attachments()}
    assert ips[a] == "10.1.0.2/24" and ips[b] == "10.1.0.50/24"
    engine.ctx.runtime.exit(a, 0)
    engine.containers.on_exit(a)
    d = run(engine, "d", "n")
    assert str(engine.ctx.store.attachments(container_id=d)[0].ipv4) == "10.1.0.2/24"


def test_default_route_follows_docker_priority(engine):
    engine.networks.create(net_req("zeta", "10.1.0.0/24"))
    engine.networks.create(net_req("alpha", "10.2.0.0/24"))
    engine.networks.create(net_req("inner", "10.3.0.0/24", Internal=True))
    cid = run(engine, "c", "zeta")
    netns = str(engine.containers.netns_path(engine.containers.get(cid)))
    assert engine.ctx.kernel.routes[netns][4][0].exploded == "10.1.0.1"
    engine.containers.connect("inner", cid, {})
    assert engine.ctx.kernel.routes[netns][4][0].exploded == "10.1.0.1"
    engine.containers.connect("alpha", cid, {})
    assert engine.ctx.kernel.routes[netns][4][0].exploded == "10.2.0.1"
    engine.containers.disconnect("alpha", cid)
    assert engine.ctx.kernel.routes[netns][4][0].exploded == "10.1.0.1"


def test_disconnect_hands_the_default_routes_on_and_drops_an_ipv6_one_nobody_else_has(engine):
    engine.networks.create(net_req("zeta", "10.1.0.0/24"))
    engine.networks.create({"Name": "alpha", "EnableIPv6": True,
                            "IPAM": {"Config": [{"Subnet": "10.2.0.0/24"}, {"Subnet": "fd00:2::/64"}]}})
    cid = run(engine, "c", "zeta")
    routes = engine.ctx.kernel.routes[str(engine.containers.netns_path(engine.containers.get(cid)))]
    engine.containers.connect("alpha", cid, {})  # dual-stack: it takes both default routes
    assert {f: (str(gw), dev) for f, (gw, dev) in routes.items()} == {4: ("10.2.0.1", "eth1"), 6: ("fd00:2::1", "eth1")}
    engine.containers.disconnect("alpha", cid)
    assert {f: (str(gw), dev) for f, (gw, dev) in routes.items()} == {4: ("10.1.0.1", "eth0")}


def test_docker_rules_for_modes_and_connect(engine):
    engine.networks.create(net_req("n", "10.1.0.0/24"))
    cid = run(engine, "c", "n")
    with pytest.raises(Forbidden, match="endpoint with name c already exists in network n"):
        engine.containers.connect("n", cid, {})
    with pytest.raises(InvalidParameter, match="connected to host network"):
        engine.containers.connect("host", cid, {})
    with pytest.raises(InvalidParameter, match="private \\(none\\) mode"):
        engine.containers.connect("none", cid, {})
    with pytest.raises(Forbidden, match="has active endpoints"):
        engine.networks.remove("n")
    with pytest.raises(Forbidden, match="pre-defined network"):
        engine.networks.remove("bridge")
    with pytest.raises(NotFound, match="No such container: nope"):
        engine.containers.connect("n", "nope", {})
    with pytest.raises(InvalidParameter, match="supported on user defined networks only"):
        engine.containers.create("x", {"Image": "bb", "Cmd": ["true"], "NetworkingConfig": {
            "EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}}}})
    with pytest.raises(Conflict, match="cannot join network of a non running container"):
        stopped = engine.containers.create("s", {"Image": "bb", "Cmd": ["true"]})
        joiner = engine.containers.create("j", {"Image": "bb", "Cmd": ["true"],
                                                "HostConfig": {"NetworkMode": f"container:{stopped.id}"}})
        engine.containers.start(joiner.id)


def test_crash_between_reserve_and_commit_is_repaired_on_restart(engine, monkeypatch):
    engine.networks.create(net_req("n", "10.1.0.0/24"))
    monkeypatch.setenv("BERTH_FAULT", "network-create-reserved")
    # simulate the crash: the record stays pending because the undo stack never runs
    monkeypatch.setattr("berth.engine.networks.Undo.rollback", lambda self: None)
    with pytest.raises(InjectedFault):
        engine.networks.create(net_req("half", "10.2.0.0/24"))
    monkeypatch.delenv("BERTH_FAULT")
    assert engine.ctx.store.network_states()
    report = engine.reconcile()
    assert report.removed_networks == ["half"]
    assert [n.name for n in engine.networks.all() if not n.builtin] == ["n"]


@pytest.mark.parametrize("step", ["connect-recorded", "endpoint-reserved", "endpoint-plugged"])
def test_failed_connect_of_a_running_container_changes_nothing(engine, monkeypatch, step):
    engine.networks.create(net_req("n", "10.1.0.0/24"))
    cid = run(engine, "c", "bridge")
    hosts = engine.ctx.paths.container_dir(cid) / "hosts"
    before = (engine.ctx.kernel.snapshot(), engine.ctx.store.attachments(container_id=cid), hosts.read_text())
    monkeypatch.setenv("BERTH_FAULT", step)
    with pytest.raises(InjectedFault):
        engine.containers.connect("n", cid, {})
    assert (engine.ctx.kernel.snapshot(), engine.ctx.store.attachments(container_id=cid), hosts.read_text()) == before
    monkeypatch.delenv("BERTH_FAULT")
    engine.containers.connect("n", cid, {})  # the address the failed attempt took is free again
    assert [str(a.ipv4) for a in engine.ctx.store.attachments(network_id=engine.networks.resolve("n").id)] == ["10.1.0.2/24"]


@pytest.mark.parametrize("step", ["connect-recorded", "endpoint-plugged"])
def test_crash_in_connect_is_repaired_by_reconcile(engine, monkeypatch, step):
    net = engine.networks.create(net_req("n", "10.1.0.0/24"))
    cid = run(engine, "c", "bridge")
    monkeypatch.setenv("BERTH_FAULT", step)
    monkeypatch.setattr("berth.engine.containers.Undo.rollback", lambda self: None)  # a crash: no undo runs
    with pytest.raises(InjectedFault):
        engine.containers.connect("n", cid, {})
    monkeypatch.undo()
    engine.reconcile()
    [record] = engine.ctx.store.attachments(network_id=net.id)
    assert not record.active  # kept as a request without an endpoint, as after a stop
    assert engine.ctx.kernel.bridge_port_count(net.bridge) == 0
    engine.containers.disconnect("n", cid)
    engine.containers.connect("n", cid, {})
    assert engine.ctx.kernel.bridge_port_count(net.bridge) == 1


def test_stale_marked_links_are_removed_and_foreign_ones_kept(engine):
    kernel = engine.ctx.kernel
    kernel.bridge_ensure("berth-stale", alias="berth:" + "0" * 64, mtu=1500, addresses=[])
    kernel.bridge_ensure("docker0", alias="someone-else", mtu=1500, addresses=[])
    report = engine.reconcile()
    assert "berth-stale" in report.removed_links
    assert "docker0" in kernel.host and "berth-stale" not in kernel.host


def test_an_attach_is_registered_before_the_api_opens_the_stream(engine):
    """``docker run`` starts the container as soon as the attach answers 101: a client registered only
    after that could miss the output of a container that prints and exits at once."""
    from berth.api import routes
    from berth.api.http import Request

    c = engine.containers.create("c", {"Image": "bb", "Cmd": ["echo", "hi"]})
    req = Request("POST", f"/containers/{c.id}/attach", "HTTP/1.1", {"stream": ["1"], "stdout": ["1"]}, {}, None,
                  params={"id": c.id})
    response = routes.container_attach(engine, req)
    assert response.hijack is not None and len(engine.containers.pending[c.id]) == 1  # before any 101 is sent
    engine.containers.start(c.id)
    assert engine.ctx.runtime.released == [c.id] and engine.containers.pending == {}
