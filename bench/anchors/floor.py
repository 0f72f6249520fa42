"""The floor: the kernel work of an attach, detach, network create and rm, done directly in-process.

Two implementations, both reported: berth's own kernel layer (``berth.kernel.host.Kernel``, what berthd
calls) and plain pyroute2 written the obvious way (one call per step, a socket opened inside the
namespace per attach). Attach = a veth pair with one end in an existing namespace, the other enslaved to
a bridge, an address, both ends up and a default route; detach = deleting the pair. Create = bridge,
address, up and the nft set elements berth's fixed ruleset looks up; rm = the reverse.

Run inside the throwaway host, in a network namespace of its own (so berthd's table is never touched):
``python -m anchors.floor once ROUNDS WORKDIR`` or ``... fill K1,K2,.. ROUNDS WORKDIR``.
"""

from __future__ import annotations

import sys
from ipaddress import ip_interface
from pathlib import Path

from anchors import Box, Samples, emit, in_box, timed

KERNEL = "floor (berth kernel layer)"
BARE = "floor (bare pyroute2)"


def measure(box: Box, rounds: int) -> Samples:
    """Attach/detach with both implementations, create/rm with the kernel layer; ``rounds`` each."""
    return in_box(box, "floor", "once", str(rounds), str(box.tmp), own_netns=True)


def measure_fill(box: Box, levels: list[int], rounds: int) -> Samples:
    """The k-th attach and detach on one bridge (k-1 other ports present), for each k in ``levels``."""
    return in_box(box, "floor", "fill", ",".join(map(str, levels)), str(rounds), str(box.tmp), own_netns=True)


class KernelLayer:
    """Attach and detach through berth's kernel layer, into one namespace, on one bridge."""

    def __init__(self, work: Path, bridge: str, subnet: str) -> None:
        from berth.kernel.host import Kernel

        self.k = Kernel()
        self.bridge = bridge
        net = ip_interface(subnet).network
        self.gateway = net.network_address + 1
        gateway = ip_interface(f"{self.gateway}/{net.prefixlen}")
        self.k.bridge_ensure(bridge, alias="bench", mtu=1500, addresses=[gateway])
        self.ns = work / f"{bridge}-ns"
        self.k.netns_create(self.ns)
        self.address = ip_interface(f"{net.network_address + 2}/{net.prefixlen}")
        self.sides: list[Path] = []

    def attach(self, host_name: str) -> None:
        self.k.veth_attach(netns=self.ns, host_name=host_name, alias="bench", bridge=self.bridge, ifname="eth1",
                           mac="02:42:0a:63:00:02", mtu=1500, addresses=[self.address], gateway4=self.gateway)

    def detach(self, host_name: str) -> None:
        self.k.netns_link_delete(self.ns, "eth1")

    def fill(self, ports: int) -> None:
        """Enslave veths until the bridge has ``ports`` ports, each peer up in a namespace of its own as a
        container's is (no addresses). One namespace holding every peer would not be a floor: each packet
        it receives looks up IPv6 routes among one link-local route per peer, so the multicast a new
        port sends, flooded to all peers, would cost O(ports^2) there and nothing like it in berth."""
        have = self.k.bridge_port_count(self.bridge)
        for i in range(have, ports):
            side = self.ns.with_name(f"{self.ns.name}-{i}")
            self.k.netns_create(side)
            self.sides.append(side)
            self.k.veth_attach(netns=side, host_name=f"flx{i}", alias="bench", bridge=self.bridge, ifname="eth0",
                               mac="02:42:0b:00:%02x:%02x" % (i // 256, i % 256), mtu=1500, addresses=[])

    def close(self) -> None:
        for ns in (self.ns, *self.sides):
            self.k.netns_delete(ns)
        self.k.link_delete(self.bridge)
        self.k.close()


class BarePyroute2:
    """The same attach and detach as someone would write it with pyroute2 alone."""

    def __init__(self, bridge: str, subnet: str) -> None:
        from pyroute2 import IPRoute, netns

        self.IPRoute = IPRoute
        self.netns = netns
        self.ipr = IPRoute()
        net = ip_interface(subnet).network
        self.gateway = str(net.network_address + 1)
        self.address = str(net.network_address + 2)
        self.prefix = net.prefixlen
        self.ipr.link("add", ifname=bridge, kind="bridge")
        self.bridge = self.ipr.link_lookup(ifname=bridge)[0]
        self.ipr.addr("add", index=self.bridge, address=self.gateway, prefixlen=self.prefix)
        self.ipr.link("set", index=self.bridge, state="up")
        self.ns = f"{bridge}-ns"
        netns.create(self.ns)

    def attach(self, host_name: str) -> None:
        self.ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": "eth1", "net_ns_fd": self.ns})
        index = self.ipr.link_lookup(ifname=host_name)[0]
        self.ipr.link("set", index=index, master=self.bridge, state="up")
        with self.IPRoute(netns=self.ns, flags=0) as inner:
            peer = inner.link_lookup(ifname="eth1")[0]
            inner.addr("add", index=peer, address=self.address, prefixlen=self.prefix)
            inner.link("set", index=peer, state="up")
            inner.route("add", dst="0.0.0.0/0", gateway=self.gateway)

    def detach(self, host_name: str) -> None:
        self.ipr.link("del", index=self.ipr.link_lookup(ifname=host_name)[0])

    def close(self) -> None:
        self.netns.remove(self.ns)
        self.ipr.link("del", index=self.bridge)
        self.ipr.close()


def network_create_remove(rounds: int) -> Samples:
    """Bridge + address + nft set elements, and back, through berth's kernel layer and rule data."""
    from berth.firewall import rules
    from berth.kernel.host import Kernel

    k = Kernel()
    k.nft(rules.base_ruleset())
    out: Samples = {"floor network create": [], "floor network rm": []}
    for i in range(rounds):
        name = f"flbr{i}"
        subnet = ip_interface(f"10.98.{i % 250}.1/24")

        def create() -> None:
            k.bridge_ensure(name, alias="bench", mtu=1500, addresses=[subnet])
            k.nft(rules.network_elements(name, [subnet.network], icc=True, masquerade=True, internal=False, op="add"))

        def remove() -> None:
            k.nft(rules.network_elements(name, [subnet.network], icc=True, masquerade=True, internal=False,
                                         op="delete"))
            k.link_delete(name)

        out["floor network create"].append(timed(create))
        out["floor network rm"].append(timed(remove))
    k.nft(rules.remove_all())
    k.close()
    return out


def once(rounds: int, work: Path) -> Samples:
    layer = KernelLayer(work, "flk0", "10.99.0.1/16")
    bare = BarePyroute2("flb0", "10.97.0.1/16")
    out: Samples = {f"{KERNEL} attach": [], f"{KERNEL} detach": [], f"{BARE} attach": [], f"{BARE} detach": []}
    try:
        for i in range(rounds):  # alternate, so both see the same background load
            for label, impl in ((KERNEL, layer), (BARE, bare)):
                out[f"{label} attach"].append(timed(lambda: impl.attach(f"flv{i}")))
                out[f"{label} detach"].append(timed(lambda: impl.detach(f"flv{i}")))
    finally:
        layer.close()
        bare.close()
    out.update(network_create_remove(rounds))
    return out


def fill(levels: list[int], rounds: int, work: Path) -> Samples:
    layer = KernelLayer(work, "flf0", "10.96.0.1/16")
    out: Samples = {}
    try:
        for k in sorted(levels):
            layer.fill(k - 1)
            for i in range(rounds):
                out.setdefault(f"{KERNEL} attach k={k}", []).append(timed(lambda: layer.attach(f"flp{i}")))
                out.setdefault(f"{KERNEL} detach k={k}", []).append(timed(lambda: layer.detach(f"flp{i}")))
    finally:
        layer.close()
    return out


def main(argv: list[str]) -> None:
    if argv[0] == "once":
        emit(once(int(argv[1]), Path(argv[2])))
    else:
        emit(fill([int(k) for k in argv[1].split(",")], int(argv[2]), Path(argv[3])))


if __name__ == "__main__":
    main(sys.argv[1:])
