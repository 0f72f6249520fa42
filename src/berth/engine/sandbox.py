"""A container's network sandbox: its namespace, its endpoints, its default route and /etc files."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_interface
from pathlib import Path
from typing import Any, Callable, Sequence

from berth import config
from berth.drivers.base import EndpointSpec
from berth.drivers.cni import endpoint_addresses, has_capability, sandbox_interface
from berth.engine.context import EngineContext
from berth.engine.txn import Undo, fault
from berth.ipam.allocator import mac_for, random_mac
from berth.model import Attachment, Container, Network, new_id
from berth.runtime import etcfiles


def route_priority(net: Network, a: Attachment) -> tuple[bool, bool, str]:
    """Docker's order for the default route: non-internal first, dual-stack first, then by network name."""
    dual = a.ipv4 is not None and a.ipv6 is not None
    return (net.internal, not dual, net.name)


class Sandboxes:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def network(self, network_id: str) -> Network:
        for net in self.ctx.store.networks(state=None):
            if net.id == network_id:
                return net
        raise KeyError(network_id)

    def route_owner(self, active: Sequence[Attachment]) -> Attachment | None:
        """The endpoint whose network provides the default route; internal networks never do."""
        # cni networks never: their plugins install (or not) their own routes, which berth leaves alone
        nets = [(self.network(a.network_id), a) for a in active]
        candidates = [(route_priority(net, a), a) for net, a in nets if net.driver != "cni"]
        candidates = [(p, a) for p, a in candidates if not p[0] and (a.gateway4 or a.gateway6)]
        return min(candidates, key=lambda pa: pa[0])[1] if candidates else None

    def _spec(self, net: Network, netns: Path, a: Attachment) -> EndpointSpec:
        addresses: tuple[IPv4Interface | IPv6Interface, ...] = tuple(x for x in (a.ipv4, a.ipv6) if x is not None)
        return EndpointSpec(
            network=net, netns=netns, endpoint_id=a.endpoint_id or "", host_ifname=a.host_ifname or "",
            ifname=a.ifname or "", mac=a.mac or "", addresses=addresses, gateway4=None, gateway6=None,
            container_id=a.container_id,
        )

    def plug(self, netns: Path, a: Attachment, active: Sequence[Attachment], undo: Undo,
             record: Callable[[Attachment, str], None] | None = None,
             runtime: dict[str, Any] | None = None) -> Attachment:
        """Give the container an endpoint on ``a``'s network; every step's inverse goes on ``undo``.

        ``a.ifname`` and ``a.mac``, when set, are the interface name and MAC the caller requires (a CNI
        runtime names the interface); otherwise the next free ``eth<i>`` and the address-derived MAC.
        ``record`` stores the pending endpoint before any kernel step (default: the container's
        attachment row) so that a crash in between is found by reconciliation. ``runtime`` is what
        CNI plugins may take by capability (``portMappings``).
        """
        net = self.network(a.network_id)
        driver = self.ctx.drivers[net.driver]
        if getattr(driver, "allocates_addresses", False):
            return self._plug_by_plugins(netns, net, driver, a, active, undo, record or self.ctx.store.set_endpoint,
                                         runtime or {})
        book = self.ctx.addresses[net.id]
        v4, v6 = book.allocate(a.ipv4_request, a.ipv6_request)
        undo.push(f"addresses on {net.name}", book.release, v4, v6)
        used = {x.ifname for x in active}
        ifname = a.ifname or next(f"eth{i}" for i in range(len(active) + 1) if f"eth{i}" not in used)
        endpoint_id = new_id()
        gw4 = book.gateway(4) if v4 is not None else None
        gw6 = book.gateway(6) if v6 is not None else None
        ep = replace(
            a, endpoint_id=endpoint_id, ifname=ifname,
            host_ifname=config.HOST_VETH_PREFIX + endpoint_id[:10],
            ipv4=v4, ipv6=v6, mac=a.mac or (mac_for(v4.ip) if v4 is not None else random_mac()),
            gateway4=gw4, gateway6=gw6,  # type: ignore[arg-type]
        )
        (record or self.ctx.store.set_endpoint)(ep, "pending")
        fault("endpoint-reserved")
        old_owner = self.route_owner(active)
        new_owner = self.route_owner([*active, ep])
        spec = self._spec(net, netns, ep)
        # The new endpoint takes the default route in the same kernel round trip as its addresses, unless
        # an IPv6 default of the previous owner must go too (then the routes are set on their own).
        separate = new_owner is ep and old_owner is not None and old_owner.gateway6 is not None and gw6 is None
        if new_owner is ep and not separate:
            spec = replace(spec, gateway4=gw4, gateway6=gw6)
        driver = self.ctx.drivers[net.driver]
        driver.add(spec)
        undo.push(f"endpoint {ep.host_ifname}", driver.delete, spec)
        if new_owner is ep and old_owner is not None:
            undo.push("default route", self.set_routes, netns, old_owner)
        fault("endpoint-plugged")
        if separate:
            self.set_routes(netns, ep)
        return ep

    def _plug_by_plugins(self, netns: Path, net: Network, driver: Any, a: Attachment, active: Sequence[Attachment],
                         undo: Undo, record: Callable[[Attachment, str], None], runtime: dict[str, Any]) -> Attachment:
        """An endpoint whose interfaces, addresses and routes the driver's plugins choose (``cni``):
        berth's address book and default-route logic stay out; the ADD result says what was made."""
        used = {x.ifname for x in active}
        ifname = a.ifname or next(f"eth{i}" for i in range(len(active) + 1) if f"eth{i}" not in used)
        ep = replace(a, endpoint_id=new_id(), ifname=ifname, host_ifname=None, ipv4=None, ipv6=None, mac=None,
                     gateway4=None, gateway6=None)
        record(ep, "pending")
        undo.push("endpoint record", record, a, "active")
        fault("endpoint-reserved")
        offered = {**runtime, **({"mac": a.mac} if a.mac else {})}
        spec = replace(self._spec(net, netns, ep), runtime=offered)
        result = driver.add(spec)
        undo.push(f"endpoint {ifname} on {net.name}", driver.delete, spec)
        ep = replace(ep, **_result_fields(result, ifname))
        record(ep, "pending")
        fault("endpoint-plugged")
        return ep

    def set_routes(self, netns: Path, owner: Attachment | None) -> None:
        self.ctx.kernel.netns_set_default_routes(
            netns, gateway4=owner.gateway4 if owner else None, gateway6=owner.gateway6 if owner else None
        )

    def unplug(self, netns: Path, ep: Attachment, active: Sequence[Attachment]) -> None:
        """Remove one endpoint from a running container and hand the default route on if it had it."""
        net = self.network(ep.network_id)
        spec = self._spec(net, netns, ep)
        owner_before = self.route_owner(active)
        if owner_before is not None and owner_before.network_id == ep.network_id:
            # Its default routes die with its link; the next owner's go in, in the same kernel round trip.
            successor = self.route_owner([x for x in active if x.network_id != ep.network_id])
            if successor is not None:
                spec = replace(spec, gateway4=successor.gateway4, gateway6=successor.gateway6)
        self.ctx.drivers[net.driver].delete(spec)
        self.unregister_name(ep)
        book = self.ctx.addresses.get(net.id)
        if book is not None:
            book.release(ep.ipv4, ep.ipv6)

    def plugins_publish(self, active: Sequence[Attachment]) -> bool:
        """Does a cni network of these endpoints publish ports itself (a plugin with ``portMappings``)?"""
        for a in active:
            record = self.ctx.store.cni_config(a.network_id)
            if record is not None and has_capability(record[0], "portMappings"):
                return True
        return False

    def check(self, netns: Path, ep: Attachment) -> list[str]:
        """The driver's findings about an endpoint that should be in place (empty when healthy)."""
        net = self.network(ep.network_id)
        return self.ctx.drivers[net.driver].check(self._spec(net, netns, ep))

    def forget(self, netns: Path, ep: Attachment) -> None:
        """An endpoint whose links died with its namespace: drop its driver state, free its addresses."""
        net = self.network(ep.network_id)
        self.ctx.drivers[net.driver].forget(self._spec(net, netns, ep))
        book = self.ctx.addresses.get(net.id)
        if book is not None:
            book.release(ep.ipv4, ep.ipv6)
        self.unregister_name(ep)

    # -- /etc files ----------------------------------------------------------------------------

    def etc_dir(self, c: Container) -> Path:
        return self.ctx.paths.container_dir(c.id)

    def write_etc(self, c: Container, active: Sequence[Attachment], mode: str) -> None:
        """hosts, hostname and resolv.conf as Docker writes them for the container's mode.

        A file is rewritten only when its text changed (hostname never does on a connect, resolv.conf only
        when the container's resolver changes), compared as bytes: this runs in every connect and disconnect."""
        d = self.etc_dir(c)
        if mode == "host":
            import socket

            hostname = socket.gethostname()
            hosts = self._host_hosts()
        else:
            hostname = c.hostname
            addresses = [str(x.ip) for a in active for x in (a.ipv4, a.ipv6) if x is not None]
            hosts = etcfiles.hosts_file(hostname, addresses)
        host_cfg = c.host_config
        resolv = etcfiles.resolv_conf(
            self.ctx.host_resolv_text(),
            nameservers=host_cfg.get("Dns") or (),
            search=host_cfg.get("DnsSearch") or (),
            options=host_cfg.get("DnsOptions") or (),
            embedded=self.embedded_dns(active),
        )
        for name, text in (("hosts", hosts), ("hostname", hostname + "\n"), ("resolv.conf", resolv)):
            path = d / name
            try:
                if path.read_bytes() != text.encode():
                    etcfiles.write_in_place(path, text)  # same inode: the container's bind mount sees it
            except FileNotFoundError:
                d.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def embedded_dns(self, active: Sequence[Attachment]) -> str | None:
        """The resolver address for a container on user networks: the gateway of the first such network."""
        if self.ctx.dns is None:
            return None
        for a in active:
            net = self.network(a.network_id)
            if a.gateway4 is not None and not net.builtin and net.driver != "cni":
                return str(a.gateway4)
        return None

    def register_name(self, c: Container, ep: Attachment) -> None:
        """Make the container resolvable by its names on ``ep``'s network (user networks only)."""
        self.register_names(ep, [c.name, c.config.get("Hostname") or ""], c.host_config.get("Dns") or ())

    def register_names(self, ep: Attachment, names: Sequence[str], dns_servers: Sequence[str] = ()) -> None:
        """Make ``names`` and the endpoint's aliases resolve to its addresses on its network (user networks)."""
        net = self.network(ep.network_id)
        if self.ctx.dns is None or net.builtin or net.driver == "cni":  # no embedded DNS on cni networks
            return
        self.ctx.dns.table.set_endpoint(net.id, net.name, ep.container_id, [*names, *ep.aliases],
                                        ep.ipv4.ip if ep.ipv4 else None, ep.ipv6.ip if ep.ipv6 else None,
                                        dns_servers)

    def unregister_name(self, ep: Attachment) -> None:
        if self.ctx.dns is not None:
            self.ctx.dns.table.remove_endpoint(ep.network_id, ep.container_id)

    def _host_hosts(self) -> str:
        try:
            return self.ctx.hosts_file.read_text()
        except OSError:
            return etcfiles.hosts_file("localhost", [])


def _result_fields(result: dict[str, Any], ifname: str) -> dict[str, Any]:
    """The attachment's addresses, gateways and MAC as a CNI ADD result reports them for ``ifname``."""
    fields: dict[str, Any] = {"ipv4": None, "ipv6": None, "gateway4": None, "gateway6": None,
                              "mac": sandbox_interface(result, ifname)[1].get("mac")}
    for ip in endpoint_addresses(result, ifname):
        try:
            address = ip_interface(ip["address"])
            gateway = ip_address(ip["gateway"]) if ip.get("gateway") else None
        except ValueError:
            continue
        family = "4" if address.version == 4 else "6"
        if fields["ipv" + family] is None:
            fields["ipv" + family], fields["gateway" + family] = address, gateway
    return fields


def cni_runtime(c: Container) -> dict[str, Any]:
    """What CNI plugins may take by capability: the container's fixed ``-p`` bindings as ``portMappings``
    (a binding without a host port has no CNI form: ports a plugin publishes are the ones asked for)."""
    mappings = []
    for key, entries in sorted((c.host_config.get("PortBindings") or {}).items()):
        port, _, proto = key.partition("/")
        for entry in entries or []:
            host_port = (entry or {}).get("HostPort") or ""
            if port.isdigit() and host_port.isdigit():
                mappings.append({"hostPort": int(host_port), "containerPort": int(port), "protocol": proto or "tcp",
                                 "hostIP": (entry or {}).get("HostIp") or ""})
    return {"portMappings": mappings} if mappings else {}
