"""Endpoints in network namespaces berth does not own: what ``berth-cni`` asks berthd for.

A CNI runtime creates a network namespace and runs ``berth-cni``, which asks berthd to plug that
namespace into a berth network. The endpoint is a real berth endpoint (veth on the network's bridge,
address from berth's IPAM, default route, DNS names, firewall elements), so other containers reach it
and ``network inspect`` lists it. It is recorded as a ``model.ExternalEndpoint``, never as a
container: the namespace and everything in it belong to the runtime, so berth removes the interface
and releases the address (DEL, GC, reconciliation) but never deletes the namespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import ip_interface, ip_network
from pathlib import Path
from typing import Any, Iterable

from berth.engine.context import EngineContext
from berth.engine.networks import Networks
from berth.engine.sandbox import Sandboxes
from berth.engine.txn import Undo, fault
from berth.errors import BerthError, Conflict, Forbidden, InvalidParameter, NotFound
from berth.model import Attachment, ExternalEndpoint, Network

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


class EndpointExists(Conflict):
    """ADD for an attachment (container id + interface name) that exists, or an interface name taken in
    the namespace: the CNI spec requires an error, and its code range 100+ is the plugin's."""

    cni_code = 101


class UnknownAttachment(NotFound):
    """CHECK of an attachment berth does not know (CNI code 3: unknown container)."""

    cni_code = 3


class EndpointBroken(BerthError):
    """CHECK found the endpoint's interface, address or route missing or wrong."""

    status = 500
    cni_code = 102


@dataclass(frozen=True)
class AddRequest:
    """One CNI ADD as berth-cni forwards it: the attachment, the berth network and the capabilities."""

    container_id: str
    ifname: str
    netns: str
    cni_network: str
    network: str
    name: str
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    ipv6_subnet: str = ""
    ips: tuple[str, ...] = ()
    mac: str = ""
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "AddRequest":
        def text(key: str) -> str:
            value = body.get(key) or ""
            if not isinstance(value, str):
                raise InvalidParameter(f"{key} must be a string")
            return value

        def texts(key: str) -> tuple[str, ...]:
            value = body.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidParameter(f"{key} must be a list of strings")
            return tuple(value)

        req = cls(
            container_id=text("containerID"), ifname=text("ifname"), netns=text("netns"),
            cni_network=text("cniNetwork"), network=text("network") or text("cniNetwork"), name=text("name"),
            subnet=text("subnet"), gateway=text("gateway"), ip_range=text("ipRange"),
            ipv6_subnet=text("ipv6Subnet"), ips=texts("ips"), mac=text("mac"), aliases=texts("aliases"),
        )
        for key, value in (("containerID", req.container_id), ("ifname", req.ifname), ("netns", req.netns),
                           ("network", req.network), ("name", req.name)):
            if not value:
                raise InvalidParameter(f"{key} must not be empty")
        if req.mac and not MAC_RE.match(req.mac):
            raise InvalidParameter(f"invalid MAC address {req.mac}")
        return req


class ExternalEndpoints:
    def __init__(self, ctx: EngineContext, networks: Networks) -> None:
        self.ctx = ctx
        self.networks = networks
        self.sandboxes = Sandboxes(ctx)

    # -- lookup ---------------------------------------------------------------------------------

    def all(self, network_id: str | None = None) -> list[ExternalEndpoint]:
        return [ep for ep, state in self.ctx.store.externals(network_id) if state == "active"]

    def find(self, container_id: str, ifname: str, cni_network: str) -> ExternalEndpoint | None:
        """The attachment (container id, ifname) of one CNI network; another network's is not ours to touch."""
        for ep, _ in self.ctx.store.externals():
            if ep.container_id == container_id and ep.ifname == ifname and ep.cni_network == cni_network:
                return ep
        return None

    def _neighbours(self, netns: str, exclude: Attachment | None = None) -> list[Attachment]:
        """berth's other endpoints in the same namespace: they decide who owns the default route."""
        skip = (exclude.container_id, exclude.ifname) if exclude else None
        return [ep.attachment for ep in self.all() if ep.netns == netns and (ep.container_id, ep.ifname) != skip]

    # -- ADD ------------------------------------------------------------------------------------

    def add(self, req: AddRequest) -> dict[str, Any]:
        """Plug ``req.netns`` into the network; returns the CNI result (1.1.0 shape, no ``cniVersion``)."""
        with self.ctx.lock:
            for ep, _ in self.ctx.store.externals():
                if ep.container_id == req.container_id and ep.ifname == req.ifname:
                    raise EndpointExists(
                        f"attachment of container {req.container_id} with interface {req.ifname} already exists "
                        f"(network {ep.cni_network})"
                    )
            if not self.ctx.kernel.netns_exists(req.netns):
                raise NotFound(f"network namespace {req.netns} does not exist")
            if any(link.name == req.ifname for link in self.ctx.kernel.netns_links(req.netns)):
                raise EndpointExists(f"interface {req.ifname} already exists in network namespace {req.netns}")
            v4_request, v6_request = _split_ips(req.ips)
            with Undo() as undo:
                net = self._network(req, undo)
                for ep in self.all(net.id):
                    if ep.container_id == req.container_id:
                        raise Forbidden(f"endpoint with name {ep.name} already exists in network {net.name}")
                a = Attachment(
                    container_id=req.container_id, network_id=net.id, seq=0, aliases=req.aliases,
                    ipv4_request=v4_request, ipv6_request=v6_request, ifname=req.ifname, mac=req.mac.lower() or None,
                )
                self.ctx.store.add_external(
                    ExternalEndpoint(netns=req.netns, name=req.name, cni_network=req.cni_network, attachment=a)
                )
                undo.push("external endpoint record", self.ctx.store.remove_external, a.container_id, a.ifname)
                fault("external-reserved")
                neighbours = self._neighbours(req.netns)
                plugged = self.sandboxes.plug(Path(req.netns), a, neighbours, undo, record=self.ctx.store.set_external)
                fault("external-plugged")
                self.ctx.store.set_external(plugged, "active")
            self.sandboxes.register_names(plugged, [req.name])
            owns_route = self.sandboxes.route_owner([*neighbours, plugged]) is plugged
            return self.result(net, req.netns, plugged, owns_route=owns_route)

    def _network(self, req: AddRequest, undo: Undo) -> Network:
        """The named berth network; created on first use when the config gives its subnet."""
        try:
            net = self.networks.resolve(req.network)
        except NotFound:
            if not req.subnet:
                raise NotFound(f"network {req.network} not found (give \"subnet\" to create it on first use)") from None
            net = self.networks.create(self._create_request(req))
            undo.push(f"network {net.name} created for this attachment", self.networks.remove, net.id)
            return net
        if net.driver != "bridge":
            raise InvalidParameter(f"berth-cni attaches to bridge networks only; network {net.name} has driver {net.driver}")
        subnets = self.networks.subnets(net)
        for wanted in (req.subnet, req.ipv6_subnet):
            try:
                known = not wanted or ip_network(wanted, strict=False) in subnets
            except ValueError:
                raise InvalidParameter(f"invalid subnet {wanted}") from None
            if not known:  # the config and the network disagree: its addresses would surprise the runtime
                listed = ", ".join(str(s) for s in subnets)
                raise InvalidParameter(f"network {net.name} exists with subnets {listed}, not {wanted}")
        return net

    @staticmethod
    def _create_request(req: AddRequest) -> dict[str, Any]:
        config: list[dict[str, str]] = [
            {k: v for k, v in (("Subnet", req.subnet), ("Gateway", req.gateway), ("IPRange", req.ip_range)) if v}
        ]
        if req.ipv6_subnet:
            config.append({"Subnet": req.ipv6_subnet})
        return {"Name": req.network, "Driver": "bridge", "EnableIPv6": bool(req.ipv6_subnet),
                "IPAM": {"Driver": "default", "Config": config},
                "Labels": {"berth.cni.network": req.cni_network}}

    def result(self, net: Network, netns: str, a: Attachment, owns_route: bool) -> dict[str, Any]:
        """The CNI result of an attachment: bridge, host veth, container interface; addresses; routes; DNS."""
        ips: list[dict[str, Any]] = []
        routes: list[dict[str, Any]] = []
        for iface, gateway, default in ((a.ipv4, a.gateway4, "0.0.0.0/0"), (a.ipv6, a.gateway6, "::/0")):
            if iface is None:
                continue
            entry: dict[str, Any] = {"address": str(iface), "interface": 2}
            if gateway is not None:
                entry["gateway"] = str(gateway)
                if owns_route:
                    routes.append({"dst": default, "gw": str(gateway)})
            ips.append(entry)
        dns: dict[str, Any] = {}
        if self.ctx.dns is not None and not net.builtin and a.gateway4 is not None:
            dns = {"nameservers": [str(a.gateway4)]}
        return {
            "interfaces": [
                {"name": net.bridge},
                {"name": a.host_ifname},
                {"name": a.ifname, "mac": a.mac, "sandbox": netns},
            ],
            "ips": ips,
            "routes": routes,
            "dns": dns,
        }

    # -- DEL / GC -------------------------------------------------------------------------------

    def delete(self, container_id: str, ifname: str, cni_network: str) -> None:
        """Remove an attachment; unknown attachments and vanished namespaces count as removed."""
        with self.ctx.lock:
            ep = self.find(container_id, ifname, cni_network)
            if ep is not None:
                self._release(ep)

    def gc(self, cni_network: str, valid: Iterable[tuple[str, str]]) -> list[str]:
        """Release every attachment of ``cni_network`` not in ``valid``; returns their container ids.

        Keeps going past a failure (the spec asks GC to remove as much as it can) and reports them all.
        """
        keep = set(valid)
        released, errors = [], []
        with self.ctx.lock:
            for ep, _ in self.ctx.store.externals():
                if ep.cni_network != cni_network or (ep.container_id, ep.ifname) in keep:
                    continue
                try:
                    self._release(ep)
                    released.append(ep.container_id)
                except BerthError as err:
                    errors.append(f"{ep.container_id}/{ep.ifname}: {err}")
        if errors:
            raise BerthError("garbage collection incomplete: " + "; ".join(errors))
        return released

    def _release(self, ep: ExternalEndpoint) -> None:
        a = ep.attachment
        self.ctx.store.set_external(a, "removing")
        fault("external-del-marked")
        netns = Path(ep.netns)
        if a.endpoint_id is not None:
            if self.ctx.kernel.netns_exists(netns):
                self.sandboxes.unplug(netns, a, [*self._neighbours(ep.netns, exclude=a), a])
            else:
                self.sandboxes.forget(netns, a)
        self.ctx.store.remove_external(a.container_id, a.ifname)

    # -- CHECK ----------------------------------------------------------------------------------

    def check(self, container_id: str, ifname: str, cni_network: str) -> None:
        """Raise ``EndpointBroken`` naming every problem with the interface, its addresses and its route."""
        with self.ctx.lock:
            ep = self.find(container_id, ifname, cni_network)
            if ep is None or ep.attachment.endpoint_id is None:
                raise UnknownAttachment(
                    f"no attachment of container {container_id} with interface {ifname} on network {cni_network}"
                )
            a = ep.attachment
            if not self.ctx.kernel.netns_exists(ep.netns):
                raise EndpointBroken(f"network namespace {ep.netns} does not exist")
            problems = self.sandboxes.check(Path(ep.netns), a)
            neighbours = self._neighbours(ep.netns, exclude=a)
            if self.sandboxes.route_owner([*neighbours, a]) is a and a.gateway4 is not None:
                routes = self.ctx.kernel.netns_routes(ep.netns)
                if not any(r["dst"] == "default" and r["gateway"] == str(a.gateway4) and r["dev"] == a.ifname
                           for r in routes):
                    problems.append(f"no default route via {a.gateway4} on {a.ifname}")
            if problems:
                raise EndpointBroken("; ".join(problems))

    # -- reconcile ------------------------------------------------------------------------------

    def reconcile(self, errors: list[str]) -> list[str]:
        """Keep live endpoints (claim their addresses, names) and release the rest; returns those released.

        Runs after the address books were rebuilt, so a released endpoint's address was never claimed
        and releasing it is a no-op. The namespace is only ever looked at, never removed.
        """
        released = []
        for ep, state in self.ctx.store.externals():
            a = ep.attachment
            try:
                alive = a.endpoint_id is not None and self.ctx.kernel.netns_exists(ep.netns) and any(
                    link.name == a.ifname for link in self.ctx.kernel.netns_links(ep.netns)
                )
                if alive and state == "active":
                    self.ctx.addresses[a.network_id].claim(a.ipv4, a.ipv6)
                    self.sandboxes.register_names(a, [ep.name])
                    continue
                if alive:  # an interrupted ADD or DEL: its interface goes, the namespace stays
                    self.ctx.kernel.netns_link_delete(ep.netns, a.ifname)
                if a.endpoint_id is not None:
                    self.sandboxes.forget(Path(ep.netns), a)
                self.ctx.store.remove_external(a.container_id, a.ifname)
                released.append(f"{ep.name} ({ep.cni_network}/{a.ifname})")
            except BerthError as err:
                errors.append(f"external endpoint {ep.name}: {err}")
        return released


def _split_ips(ips: Iterable[str]) -> tuple[str, str]:
    """The requested IPv4 and IPv6 address (``ip[/prefix]``, the prefix is the network's anyway)."""
    v4 = v6 = ""
    for text in ips:
        try:
            iface = ip_interface(text.strip())
        except ValueError:
            raise InvalidParameter(f"invalid IP address {text}") from None
        if iface.version == 4:
            if v4:
                raise InvalidParameter("only one IPv4 address per attachment")
            v4 = str(iface.ip)
        else:
            if v6:
                raise InvalidParameter("only one IPv6 address per attachment")
            v6 = str(iface.ip)
    return v4, v6
