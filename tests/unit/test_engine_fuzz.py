"""Hostile input through the engine: only clear user errors, never a crash or a partial change."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from berth.config import Paths
from berth.engine import Engine
from berth.errors import BerthError
from berth.kernel.fake import FakeKernel
from berth.store.sqlite import Store
from tests.unit.fakes import FakeImages, FakeRuntime

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
cidrs = st.one_of(texts, st.builds(lambda a, b, c, d, n: f"{a}.{b}.{c}.{d}/{n}", *[st.integers(0, 300)] * 4,
                                   st.integers(0, 40)))
options = st.dictionaries(st.sampled_from(["com.docker.network.bridge.name", "com.docker.network.bridge.enable_icc",
                                           "com.docker.network.driver.mtu", "com.docker.network.bridge.host_binding_ipv4",
                                           "com.docker.network.bridge.enable_ip_masquerade"]), texts, max_size=3)
configs = st.lists(st.fixed_dictionaries({}, optional={"Subnet": cidrs, "Gateway": texts, "IPRange": cidrs,
                                                       "AuxiliaryAddresses": st.dictionaries(texts, texts, max_size=2)}),
                   max_size=3)


def make_engine(tmp: Path) -> Engine:
    resolv = tmp / "resolv.conf"
    resolv.write_text("nameserver 10.255.255.53\n")
    engine = Engine(Paths(tmp / "root", tmp / "run"), FakeKernel([ip_network("192.0.2.0/24")]), FakeRuntime(),
                    FakeImages(), store=Store(":memory:"), resolv_conf=resolv, hosts_file=tmp / "hosts")
    engine.start()
    return engine


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=texts, driver=st.one_of(st.just("bridge"), texts), config=configs, opts=options,
       ipv6=st.booleans(), internal=st.booleans())
def test_network_create_refuses_cleanly_or_succeeds_whole(tmp_path, name, driver, config, opts, ipv6, internal):
    engine = make_engine(tmp_path)
    try:
        before = engine.ctx.kernel.snapshot()
        records = engine.networks.all()
        request = {"Name": name, "Driver": driver, "EnableIPv6": ipv6, "Internal": internal,
                   "IPAM": {"Config": config}, "Options": opts}
        try:
            net = engine.networks.create(request)
        except BerthError as err:
            assert 400 <= err.status < 500, err
            assert "\n" not in str(err)
            assert engine.ctx.kernel.snapshot() == before and engine.networks.all() == records
        else:
            assert net.bridge in engine.ctx.kernel.host
            engine.networks.remove(net.name)
            assert engine.ctx.kernel.snapshot()["host"].keys() == before["host"].keys()
    finally:
        engine.close()
