"""The real kernel layer against the real kernel, each test inside its own throwaway network and mount
namespace (a forked child), so the machine's own network is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network
from pathlib import Path
from typing import Callable, Iterator

import pytest

from berth.errors import KernelError
from berth.kernel import syscalls as sc
from berth.kernel.host import Kernel
from tests.helpers import in_throwaway_namespaces

pytestmark = pytest.mark.integration

Body = Callable[[Kernel, Path], None]

BRIDGE = "berth-0a1b2c3d4"
ALIAS = "berth:net:0a1b2c3d4"
GW4 = IPv4Address("10.77.0.1")
GW6 = IPv6Address("fd00:77::1")


def _isolated(body: Body, scratch: Path) -> None:
    """Run ``body`` in throwaway network and mount namespaces with a tmpfs on ``scratch`` and a kernel
    layer of its own."""

    def setup_then_body() -> None:
        sc.mount("tmpfs", str(scratch), "tmpfs", 0, "mode=0755")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        kernel = Kernel()
        try:
            body(kernel, scratch)
        finally:
            kernel.close()

    in_throwaway_namespaces(setup_then_body)


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[Callable[[Body], None]]:
    yield lambda body: _isolated(body, tmp_path)


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def ping(netns: Path, address: str, tries: int = 1) -> bool:
    """One ICMP echo per try; a positive check may allow a few (neighbour discovery on a loaded machine)."""
    cmd = ["ping"] if shutil.which("ping") else ["busybox", "ping"]
    return any(sh("nsenter", f"--net={netns}", *cmd, "-c1", "-W1", address).returncode == 0 for _ in range(tries))


def bridge(kernel: Kernel, v6: bool = False) -> None:
    addresses = [ip_interface("10.77.0.1/24")] + ([ip_interface("fd00:77::1/64")] if v6 else [])
    kernel.bridge_ensure(BRIDGE, alias=ALIAS, mtu=1500, addresses=addresses)


def attach(kernel: Kernel, netns: Path, n: int, *, v6: bool = False, **kw: object) -> None:
    addresses = [ip_interface(f"10.77.0.{n}/24")] + ([ip_interface(f"fd00:77::{n:x}/64")] if v6 else [])
    args: dict[str, object] = dict(
        netns=netns, host_name=f"bveth{n:010d}", alias=f"berth:ep:{n}", bridge=BRIDGE, ifname="eth0",
        mac=f"02:42:0a:4d:00:{n % 256:02x}", mtu=1500, addresses=addresses, gateway4=GW4,
        gateway6=GW6 if v6 else None,
    )
    args.update(kw)
    kernel.veth_attach(**args)  # type: ignore[arg-type]


def test_netns_create_and_delete_are_idempotent(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        path = scratch / "netns" / "c1"
        kernel.netns_create(path)
        assert kernel.netns_exists(path)
        assert [(l.name, l.up) for l in kernel.netns_links(path)] == [("lo", True)]
        assert kernel.snapshot()["netns"] == [str(path)]
        with pytest.raises(KernelError, match="already exists"):
            kernel.netns_create(path)
        assert kernel.netns_exists(path)
        kernel.netns_delete(path)
        assert not kernel.netns_exists(path) and not path.exists()
        kernel.netns_delete(path)
        assert kernel.snapshot()["netns"] == []
        kernel.netns_create(path)  # the name is free again
        assert kernel.netns_exists(path)
        assert not kernel.netns_exists(scratch / "netns")  # a directory is not a namespace

    isolated(body)


def test_bridge_ensure_is_idempotent_and_repairs(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel, v6=True)
        first = kernel.snapshot()
        info = kernel.link_get(BRIDGE)
        assert info is not None
        assert (info.kind, info.alias, info.mtu, info.up) == ("bridge", ALIAS, 1500, True)
        assert {str(a) for a in info.addresses} >= {"10.77.0.1/24", "fd00:77::1/64"}
        bridge(kernel, v6=True)
        assert kernel.snapshot() == first
        sh("ip", "addr", "flush", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "down")
        bridge(kernel, v6=True)  # as after a loss of state: the same call restores it
        assert kernel.snapshot() == first
        assert [l.name for l in kernel.links()] == [BRIDGE]
        kernel.link_delete(BRIDGE)
        kernel.link_delete(BRIDGE)
        assert kernel.link_get(BRIDGE) is None

    isolated(body)


def test_bridge_ensure_never_touches_someone_elses_link(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        assert sh("ip", "link", "add", BRIDGE, "type", "bridge").returncode == 0
        assert sh("ip", "link", "add", "berth-x", "type", "veth", "peer", "name", "berth-y").returncode == 0
        for name in (BRIDGE, "berth-x"):
            with pytest.raises(KernelError, match=f"a link named {name} already exists"):
                kernel.bridge_ensure(name, alias=ALIAS, mtu=1400, addresses=[ip_interface("10.77.0.1/24")])
            info = kernel.link_get(name)
            assert info is not None and info.alias is None and info.mtu == 1500 and not info.up
            assert info.addresses == ()
        assert kernel.links() == []

    isolated(body)


def test_veth_attach_as_seen_from_inside_the_namespace(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel, v6=True)
        path = scratch / "c2"
        kernel.netns_create(path)
        attach(kernel, path, 2, v6=True, mtu=1400)
        inside = {l.name: l for l in kernel.netns_links(path)}
        assert set(inside) == {"lo", "eth0"}
        eth0 = inside["eth0"]
        assert (eth0.kind, eth0.mac, eth0.mtu, eth0.up) == ("veth", "02:42:0a:4d:00:02", 1400, True)
        assert {"10.77.0.2/24", "fd00:77::2/64"} <= {str(a) for a in eth0.addresses}
        defaults = {(r["gateway"], r["dev"]) for r in kernel.netns_routes(path) if r["dst"] == "default"}
        assert defaults == {(str(GW4), "eth0"), (str(GW6), "eth0")}
        host = kernel.link_get("bveth0000000002")
        assert host is not None
        assert (host.kind, host.alias, host.master, host.up, host.mtu) == ("veth", "berth:ep:2", BRIDGE, True, 1400)
        assert kernel.bridge_port_count(BRIDGE) == 1
        assert sorted(l.name for l in kernel.links()) == ["berth-0a1b2c3d4", "bveth0000000002"]

        kernel.netns_link_delete(path, "eth0")
        kernel.netns_link_delete(path, "eth0")
        assert kernel.link_get("bveth0000000002") is None  # the pair died together
        assert [l.name for l in kernel.netns_links(path)] == ["lo"]
        assert kernel.bridge_port_count(BRIDGE) == 0
        kernel.netns_delete(path)
        kernel.netns_link_delete(path, "eth0")  # a gone namespace has no links to delete

    isolated(body)


def test_containers_on_one_bridge_reach_each_other(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel, v6=True)
        a, b = scratch / "a", scratch / "b"
        for n, path in ((2, a), (3, b)):
            kernel.netns_create(path)
            attach(kernel, path, n, v6=True)
        assert ping(a, "10.77.0.3", tries=3)
        assert ping(b, "10.77.0.2", tries=3)
        assert ping(a, "fd00:77::3", tries=3)
        assert ping(a, str(GW4), tries=3)  # the bridge's own address: the gateway
        kernel.netns_delete(b)  # the kernel removes the namespace's links asynchronously
        deadline = time.monotonic() + 10
        while kernel.link_get("bveth0000000003") is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert kernel.link_get("bveth0000000003") is None
        assert not ping(a, "10.77.0.3")

    isolated(body)


def test_failed_attach_leaves_the_kernel_as_it_was(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel)
        path = scratch / "c"
        kernel.netns_create(path)
        attach(kernel, path, 2)
        assert sh("ip", "link", "add", "taken", "type", "veth", "peer", "name", "taken-peer").returncode == 0
        before, inside = kernel.snapshot(), kernel.netns_links(path)

        gone = scratch / "gone"
        failures = {
            "unreachable gateway": (path, dict(gateway4=IPv4Address("10.99.0.1"), ifname="eth1", host_name="bveth9")),
            "ifname taken inside": (path, dict(host_name="bveth9")),
            "host name taken": (path, dict(host_name="taken", ifname="eth1")),
            "name too long": (path, dict(host_name="bveth-much-too-long", ifname="eth1")),
            "no such bridge": (path, dict(bridge="berth-nothere", ifname="eth1", host_name="bveth9")),
            "no such netns": (gone, dict(ifname="eth1", host_name="bveth9")),
        }
        for what, (netns, override) in failures.items():
            with pytest.raises(KernelError) as caught:
                attach(kernel, netns, 3, **override)
            assert "\n" not in str(caught.value), what
            assert kernel.snapshot() == before, what
            assert kernel.netns_links(path) == inside, what
        assert kernel.link_get("taken") is not None  # someone else's link survived the name clash
        assert "File exists" in _error(lambda: attach(kernel, path, 3, host_name="taken", ifname="eth1"))
        assert "Network is unreachable" in _error(
            lambda: attach(kernel, path, 3, gateway4=IPv4Address("10.99.0.1"), ifname="eth1", host_name="bveth9"))

    isolated(body)


def _error(call: Callable[[], None]) -> str:
    try:
        call()
    except KernelError as err:
        return str(err)
    raise AssertionError("no KernelError")


def test_a_full_bridge_is_refused_with_a_clear_message(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel)
        path = scratch / "many"
        kernel.netns_create(path)
        attach(kernel, path, 2)
        # the other 1022 ports in one quick iproute2 batch: only the refusal is under test here
        batch = "".join(f"link add bv{n} master {BRIDGE} type veth peer name p{n}\n" for n in range(1022))
        assert subprocess.run(["ip", "-batch", "-"], input=batch, text=True).returncode == 0
        assert kernel.bridge_port_count(BRIDGE) == 1023
        before = kernel.snapshot()
        with pytest.raises(KernelError) as caught:
            kernel.veth_attach(netns=path, host_name="bv-last", alias="berth:ep:last", bridge=BRIDGE,
                               ifname="e-last", mac="02:42:00:00:ff:ff", mtu=1500, addresses=[])
        assert str(caught.value) == f"network {BRIDGE} is full: a Linux bridge takes at most 1023 ports"
        assert kernel.snapshot() == before
        assert "e-last" not in {l.name for l in kernel.netns_links(path)}

    isolated(body)


def test_default_routes_are_replaced_and_removed(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel, v6=True)
        path = scratch / "c"
        kernel.netns_create(path)
        attach(kernel, path, 2, v6=True, gateway4=None)

        def defaults() -> set[str | None]:
            return {r["gateway"] for r in kernel.netns_routes(path) if r["dst"] == "default"}

        assert defaults() == {str(GW6)}
        kernel.netns_set_default_routes(path, gateway4=IPv4Address("10.77.0.254"), gateway6=GW6)
        assert defaults() == {"10.77.0.254", str(GW6)}
        kernel.netns_set_default_routes(path, gateway4=GW4, gateway6=None)
        assert defaults() == {str(GW4)}
        kernel.netns_set_default_routes(path, gateway4=None, gateway6=None)
        kernel.netns_set_default_routes(path, gateway4=None, gateway6=None)
        assert defaults() == set()
        with pytest.raises(KernelError, match="Network is unreachable"):
            kernel.netns_set_default_routes(path, gateway4=IPv4Address("10.99.0.1"), gateway6=None)

    isolated(body)


def test_a_link_deletion_hands_the_default_routes_to_the_next_endpoint(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel, v6=True)
        path = scratch / "c"
        kernel.netns_create(path)
        attach(kernel, path, 2, v6=True)  # eth0 holds both default routes
        attach(kernel, path, 3, v6=True, ifname="eth1", gateway4=None, gateway6=None)

        def defaults() -> set[tuple[str | None, str | None]]:
            return {(r["gateway"], r["dev"]) for r in kernel.netns_routes(path) if r["dst"] == "default"}

        assert defaults() == {(str(GW4), "eth0"), (str(GW6), "eth0")}
        kernel.netns_link_delete(path, "eth0", gateway4=GW4, gateway6=GW6)
        assert defaults() == {(str(GW4), "eth1"), (str(GW6), "eth1")}
        assert ping(path, str(GW4), tries=3)
        kernel.netns_link_delete(path, "eth1")  # no successor: its routes simply die with it
        assert defaults() == set()
        with pytest.raises(KernelError, match="cannot set default route via 10.99.0.1 .*Network is unreachable"):
            kernel.netns_link_delete(path, "eth1", gateway4=IPv4Address("10.99.0.1"))

    isolated(body)


def test_host_networks_exclude_berths_bridges(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel)
        sh("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer")
        sh("ip", "addr", "add", "192.168.5.7/24", "dev", "uplink")
        sh("ip", "link", "set", "uplink", "up")
        sh("ip", "route", "add", "10.200.0.0/16", "dev", "uplink", "scope", "link")
        nets = kernel.host_networks(own_bridges=[BRIDGE])
        assert ip_network("192.168.5.0/24") in nets and ip_network("10.200.0.0/16") in nets
        assert ip_network("10.77.0.0/24") not in nets
        assert ip_network("10.77.0.0/24") in kernel.host_networks()  # a bridge not berth's own: avoided
        assert all(n.version == 6 for n in kernel.host_networks(6, own_bridges=[BRIDGE]))

    isolated(body)


def test_sysctls_are_set_read_and_remembered(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel)
        kernel.sysctl_set("net.ipv4.ip_forward", "1")
        kernel.sysctl_set(f"net.ipv4.conf.{BRIDGE}.route_localnet", "1")
        assert kernel.sysctl_get("net.ipv4.ip_forward") == "1"
        assert Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").read_text().strip() == "1"
        assert kernel.snapshot()["sysctls"] == {"net.ipv4.ip_forward": "1",
                                                f"net.ipv4.conf.{BRIDGE}.route_localnet": "1"}
        with pytest.raises(KernelError, match="net.ipv4.no_such_knob"):
            kernel.sysctl_get("net.ipv4.no_such_knob")
        kernel.link_delete(BRIDGE)  # an interface's sysctls go with it
        assert kernel.snapshot()["sysctls"] == {"net.ipv4.ip_forward": "1"}
        with pytest.raises(KernelError, match="No such file or directory"):
            kernel.sysctl_set(f"net.ipv4.conf.{BRIDGE}.route_localnet", "1")

    isolated(body)


def test_nft_batches_apply_whole_or_not_at_all(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        assert kernel.nft_table("inet", "berth") is None
        kernel.nft([
            {"add": {"table": {"family": "inet", "name": "berth"}}},
            {"add": {"set": {"family": "inet", "table": "berth", "name": "ok", "type": "ipv4_addr"}}},
        ])
        before = kernel.snapshot()
        with pytest.raises(KernelError) as caught:
            kernel.nft([
                {"add": {"element": {"family": "inet", "table": "berth", "name": "ok", "elem": ["10.0.0.1"]}}},
                {"add": {"set": {"family": "inet", "table": "berth", "name": "new", "type": "ipv4_addr"}}},
                {"add": {"element": {"family": "inet", "table": "berth", "name": "missing", "elem": ["10.0.0.2"]}}},
            ])
        assert "\n" not in str(caught.value)
        assert kernel.snapshot() == before
        kernel.nft([{"add": {"element": {"family": "inet", "table": "berth", "name": "ok", "elem": ["10.0.0.1"]}}}])
        table = kernel.nft_table("inet", "berth")
        assert table is not None
        sets = [i["set"] for i in table["nftables"] if "set" in i]
        assert [(s["name"], s.get("elem")) for s in sets] == [("ok", ["10.0.0.1"])]

    isolated(body)


def test_threads_attach_concurrently_and_stay_home(isolated: Callable[[Body], None]) -> None:
    def body(kernel: Kernel, scratch: Path) -> None:
        bridge(kernel)
        home = os.readlink("/proc/thread-self/ns/net")
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                for i in range(10):
                    n = 2 + t * 10 + i
                    path = scratch / f"c{n}"
                    kernel.netns_create(path)
                    attach(kernel, path, n)
                    assert os.readlink("/proc/thread-self/ns/net") == home
            except BaseException as err:  # noqa: BLE001 - collected for the main thread
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert kernel.bridge_port_count(BRIDGE) == 60
        assert os.readlink("/proc/thread-self/ns/net") == home
        assert len(kernel.snapshot()["netns"]) == 60
        assert ping(scratch / "c2", "10.77.0.61", tries=3)

    isolated(body)
