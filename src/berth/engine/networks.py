"""Networks: create, list, inspect, remove, prune, and the built-in ``bridge``, ``host`` and ``none``."""

from __future__ import annotations

import logging
import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from berth import config
from berth.cni import conflist as cni_conf
from berth.drivers.cni import CONFIG_OPTION
from berth.drivers import options as opts
from berth.engine.addresses import NetworkAddresses
from berth.engine.context import EngineContext
from berth.engine.txn import Undo, fault
from berth.errors import BerthError, Conflict, Forbidden, InvalidParameter, NotFound
from berth.ipam import config as ipam_config
from berth.ipam.pools import nameservers, pick_subnet
from berth.model import Network, new_id, now_rfc3339

log = logging.getLogger("berth.networks")

NETWORK_FILTERS = ("driver", "id", "label", "name", "scope", "type", "dangling")


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


class Networks:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._cni_signature: tuple[Any, ...] | None = None  # the CNI directory as last synchronised

    # -- lookup ---------------------------------------------------------------------------------

    def all(self) -> list[Network]:
        return self.ctx.store.networks()

    def resolve(self, ref: str) -> Network:
        """Docker's order: exact id, exact name, then a unique id prefix."""
        self.sync_cni_dir()
        nets = self.all()
        for net in nets:
            if net.id == ref:
                return net
        named = [n for n in nets if n.name == ref]
        if len(named) == 1:
            return named[0]
        prefixed = [n for n in nets if n.id.startswith(ref)] if ref else []
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise InvalidParameter(f"network {ref} is ambiguous ({len(prefixed)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def subnets(self, net: Network) -> list[IPv4Network | IPv6Network]:
        book = self.ctx.addresses.get(net.id)
        return [cfg.subnet for cfg in book.subnets] if book else []

    # -- create ---------------------------------------------------------------------------------

    def create(self, req: dict[str, Any]) -> Network:
        name = req.get("Name") or ""
        driver_name = req.get("Driver") or "bridge"
        with self.ctx.lock:
            net = self._plan(name, driver_name, req)
            if net.driver == "cni":
                if (req.get("IPAM") or {}).get("Config"):
                    raise InvalidParameter("a cni network's addresses are its IPAM plugin's: put subnets in the CNI configuration")
                path = net.options.get(CONFIG_OPTION)
                if not path:
                    raise InvalidParameter(f"the cni driver needs -o {CONFIG_OPTION}=FILE (a .conf or .conflist)")
                if not Path(path).is_absolute():
                    raise InvalidParameter(f"{CONFIG_OPTION} must be an absolute path: {path}")
                return self._create_cni(net, cni_conf.load(Path(path)), path, discovered=False)
            book = self._plan_addresses(net, req)
            net = replace(self._with_bridge(net, req), user_subnets=self._user_subnets(req))
            driver = self.ctx.drivers[net.driver]
            with Undo() as undo:
                self.ctx.store.add_network(net, state="pending")
                undo.push("record of network " + net.name, self.ctx.store.remove_network, net.id)
                fault("network-create-reserved")
                driver.create_network(net, [c.subnet for c in book.subnets], book.gateway_interfaces())
                undo.push("kernel state of network " + net.name, driver.delete_network, net,
                          [c.subnet for c in book.subnets])
                fault("network-create-applied")
                self.ctx.store.set_network_state(net.id, "active")
            self.ctx.addresses[net.id] = book
            self.serve_dns(net)
            return net

    def _create_cni(self, net: Network, conflist: dict[str, Any], source: str, discovered: bool) -> Network:
        """Record a cni network with a copy of its configuration list: later attaches never need the file."""
        ranges = cni_conf.ipam_ranges(conflist)
        net = replace(net, ipam={"Driver": "cni", "Options": None, "Config": ranges})
        with Undo() as undo:
            with self.ctx.store.transaction():
                self.ctx.store.add_network(net, state="pending")
                self.ctx.store.set_cni_config(net.id, conflist, source, discovered)
            undo.push("record of network " + net.name, self.ctx.store.remove_network, net.id)
            fault("network-create-reserved")
            self.ctx.store.set_network_state(net.id, "active")
        self.ctx.addresses[net.id] = _cni_book(ranges)
        return net

    def sync_cni_dir(self) -> None:
        """Follow ``--cni-config-dir``: a new file adds a cni network, a changed one updates the copy used
        by later attaches, a removed one removes its network once no endpoint uses it."""
        directory = self.ctx.cni_config_dir
        if directory is None:
            return
        signature = cni_conf.signature(directory)
        if signature == self._cni_signature:
            return
        with self.ctx.lock:
            found = cni_conf.discover(directory)
            settled = True
            for net in self.ctx.store.networks():
                record = self.ctx.store.cni_config(net.id) if net.driver == "cni" else None
                if record is None or not record[2]:
                    continue
                if net.name not in found:
                    if self.in_use(net):
                        settled = False  # look again once its last endpoint is gone
                    else:
                        log.info("network %s: %s is gone, network removed", net.name, record[1])
                        self._delete(net)
                    continue
                path, conflist = found.pop(net.name)
                if (conflist, str(path)) != record[:2]:
                    self.ctx.store.set_cni_config(net.id, conflist, str(path), True)
                    log.info("network %s: configuration reloaded from %s", net.name, path)
            names = {n.name for n in self.ctx.store.networks(state=None)}
            for name, (path, conflist) in sorted(found.items()):
                if name in names or name in config.BUILTIN_NETWORKS:
                    log.warning("ignoring %s: a network named %s already exists", path, name)
                    continue
                net = Network(id=new_id(), name=name, driver="cni", scope="local", created=now_rfc3339(),
                              enable_ipv6=False, internal=False, attachable=True, ipam={},
                              options={CONFIG_OPTION: str(path)}, labels={})
                self._create_cni(net, conflist, str(path), discovered=True)
                log.info("network %s: discovered in %s", name, path)
            self._cni_signature = signature if settled else None

    def _plan(self, name: str, driver_name: str, req: dict[str, Any]) -> Network:
        if not name:
            raise InvalidParameter("network name must not be empty")
        if name in config.BUILTIN_NETWORKS:
            raise Forbidden(f"operation is not permitted on predefined {name} network")
        if not config.NAME_RE.match(name):
            raise InvalidParameter(f"Invalid network name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if driver_name in ("host", "null"):
            raise Forbidden(f'only one instance of "{driver_name}" network is allowed')
        if driver_name not in self.ctx.drivers:
            raise NotFound(f'plugin "{driver_name}" not found')
        scope = req.get("Scope") or "local"
        if scope != "local":
            raise Forbidden(f"cannot create a {scope} scoped network when swarm is not active")
        if req.get("Ingress"):
            raise Forbidden("ingress networks need swarm mode, which berth does not provide")
        if req.get("ConfigOnly") or req.get("ConfigFrom"):
            raise InvalidParameter("config-only networks are not supported")
        for existing in self.all():
            if existing.name == name:
                raise Conflict(f"network with name {name} already exists")
        labels = req.get("Labels") or {}
        options = req.get("Options") or {}
        if not isinstance(labels, dict) or not isinstance(options, dict):
            raise InvalidParameter("Labels and Options must be objects of strings")
        ipam_req = req.get("IPAM") or {}
        ipam_driver = ipam_req.get("Driver") or "default"
        if ipam_driver != "default":
            raise NotFound(f'plugin "{ipam_driver}" not found')
        net = Network(
            id=new_id(), name=name, driver=driver_name, scope="local", created=now_rfc3339(),
            enable_ipv6=bool(req.get("EnableIPv6")), internal=bool(req.get("Internal")),
            attachable=bool(req.get("Attachable")),
            ipam={"Driver": ipam_driver, "Options": ipam_req.get("Options"), "Config": []},
            options={str(k): str(v) for k, v in options.items()},
            labels={str(k): str(v) for k, v in labels.items()},
        )
        self.ctx.drivers[driver_name].validate(net)
        return net

    def _taken_subnets(self) -> list[IPv4Network | IPv6Network]:
        return [cfg.subnet for book in self.ctx.addresses.values() for cfg in book.subnets]

    def _reserved(self, version: int) -> list[IPv4Network | IPv6Network]:
        """Host networks and resolver addresses an automatic subnet of this IP version must avoid (Docker's
        rule, and VPN-aware)."""
        bridges = [n.bridge for n in self.ctx.store.networks(state=None) if n.bridge]
        reserved: list[IPv4Network | IPv6Network] = list(self.ctx.kernel.host_networks(version, bridges))
        reserved += [ip_network(ns) for ns in nameservers(self.ctx.host_resolv_text()) if ns.version == version]
        return reserved

    def _plan_addresses(self, net: Network, req: dict[str, Any]) -> NetworkAddresses:
        given = (req.get("IPAM") or {}).get("Config") or []
        subnets = ipam_config.normalize(given, enable_ipv6=net.enable_ipv6)
        taken = self._taken_subnets()
        for cfg in subnets:
            if any(cfg.subnet.overlaps(other) for other in taken if other.version == cfg.subnet.version):
                raise Forbidden("Pool overlaps with other one on this address space")
        echo = [ipam_config.echo(cfg) for cfg in subnets]
        if not any(c.subnet.version == 4 for c in subnets):
            auto = ipam_config.automatic(pick_subnet(config.DEFAULT_POOLS, taken, self._reserved(4)))
            subnets.insert(0, auto)
            echo.insert(0, {"Subnet": str(auto.subnet), "Gateway": str(auto.gateway)})
        if net.enable_ipv6 and not any(c.subnet.version == 6 for c in subnets):
            auto6 = ipam_config.automatic(pick_subnet(config.DEFAULT_POOLS_V6, taken, self._reserved(6)))
            subnets.append(auto6)
            echo.append({"Subnet": str(auto6.subnet), "Gateway": str(auto6.gateway)})
        net.ipam["Config"] = echo
        return NetworkAddresses(subnets)

    def _user_subnets(self, req: dict[str, Any]) -> bool:
        return any((c or {}).get("Subnet") for c in (req.get("IPAM") or {}).get("Config") or [])

    def _with_bridge(self, net: Network, req: dict[str, Any]) -> Network:
        bridge = net.options.get(opts.BRIDGE_NAME) or config.USER_BRIDGE_PREFIX + net.id[:9]
        for other in self.all():
            if other.bridge == bridge:
                raise Forbidden(
                    f"cannot create network {net.id} ({net.name}): conflicts with network {other.id} "
                    f"({other.name}): networks have same bridge name"
                )
        existing = self.ctx.kernel.link_get(bridge)
        if existing is not None:
            raise Forbidden(f"cannot create network {net.name}: a link named {bridge} already exists and is not berth's")
        return replace(net, bridge=bridge)

    # -- remove ---------------------------------------------------------------------------------

    def in_use(self, net: Network) -> bool:
        """Any endpoint on it: a container's, or one berth-cni made in a namespace berth does not own."""
        return any(a.active for a in self.ctx.store.attachments(network_id=net.id)) or bool(
            self.ctx.store.externals(net.id))

    def remove(self, ref: str) -> Network:
        with self.ctx.lock:
            if ref in config.BUILTIN_NETWORKS:
                raise Forbidden(f"{ref} is a pre-defined network and cannot be removed")
            net = self.resolve(ref)
            if net.builtin:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if self.in_use(net):
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} has active endpoints")
            source = self._discovered_from(net)
            if source:
                raise Forbidden(f"network {net.name} is defined by {source}: remove that file instead")
            self._delete(net)
            return net

    def _discovered_from(self, net: Network) -> str:
        """The file of a network discovered in the CNI directory (it follows the file), else ''."""
        record = self.ctx.store.cni_config(net.id) if net.driver == "cni" else None
        return record[1] if record and record[2] else ""

    def _delete(self, net: Network) -> None:
        """Remove a network in the order that survives a crash: mark, unplug the kernel, forget."""
        self.ctx.store.set_network_state(net.id, "removing")
        fault("network-rm-marked")
        if self.ctx.dns is not None:
            self.ctx.dns.unlisten(net.id)
            self.ctx.dns.table.remove_network(net.id)
        self.ctx.drivers[net.driver].delete_network(net, self.subnets(net))
        fault("network-rm-applied")
        with self.ctx.store.transaction():
            for a in self.ctx.store.attachments(network_id=net.id):
                self.ctx.store.remove_attachment(a.container_id, a.network_id)
            self.ctx.store.remove_network(net.id)
        self.ctx.addresses.pop(net.id, None)

    # -- list / prune ---------------------------------------------------------------------------

    def list(self, filters: dict[str, list[str]]) -> list[Network]:
        for key in filters:
            if key not in NETWORK_FILTERS:
                raise InvalidParameter(f"Invalid filter '{key}'")
        for value in filters.get("type", []):
            if value not in ("builtin", "custom"):
                raise InvalidParameter(f"invalid filter: 'type'='{value}'")
        for value in filters.get("dangling", []):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidParameter(
                    "invalid value for filter 'dangling', must be \"true\" (or \"1\"), or \"false\" (or \"0\")"
                )
        self.sync_cni_dir()
        return [n for n in self.all() if self._matches(n, filters)]

    def _matches(self, net: Network, filters: dict[str, list[str]]) -> bool:
        def any_of(key: str, test: Any) -> bool:
            values = filters.get(key)
            return not values or any(test(v) for v in values)

        return (
            any_of("driver", lambda v: net.driver == v)
            and any_of("scope", lambda v: net.scope == v)
            and any_of("name", lambda v: v in net.name)
            and any_of("id", lambda v: v in net.id)
            and any_of("label", lambda v: _label_matches(net.labels, v))
            and any_of("type", lambda v: net.builtin == (v == "builtin"))
            and any_of("dangling", lambda v: (not net.builtin and not self.in_use(net)) == _truthy(v))
        )

    def prune(self, filters: dict[str, list[str]]) -> list[str]:
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise InvalidParameter(f"Invalid filter '{key}'")
        deleted = []
        with self.ctx.lock:
            for net in self.all():
                if net.builtin or self.in_use(net) or self._discovered_from(net):
                    continue
                if any(not _label_matches(net.labels, v) for v in filters.get("label", [])):
                    continue
                if any(_label_matches(net.labels, v) for v in filters.get("label!", [])):
                    continue
                if filters.get("until") and not _created_before(net.created, filters["until"]):
                    continue
                self._delete(net)
                deleted.append(net.name)
        return deleted

    # -- built-ins and restore ------------------------------------------------------------------

    def ensure_builtins(self) -> None:
        """Create the records of ``bridge``, ``host`` and ``none`` on first start (Docker's defaults)."""
        names = {n.name for n in self.ctx.store.networks(state=None)}
        if "bridge" not in names:
            subnet = pick_subnet(config.DEFAULT_POOLS, self._taken_subnets(), self._reserved(4))
            auto = ipam_config.automatic(subnet)
            net = Network(
                id=new_id(), name="bridge", driver="bridge", scope="local", created=now_rfc3339(),
                enable_ipv6=False, internal=False, attachable=False,
                ipam={"Driver": "default", "Options": None,
                      "Config": [{"Subnet": str(auto.subnet), "Gateway": str(auto.gateway)}]},
                options={
                    opts.DEFAULT_BRIDGE: "true",
                    opts.ENABLE_ICC: "true",
                    opts.ENABLE_MASQUERADE: "true",
                    opts.HOST_BINDING_IPV4: "0.0.0.0",
                    opts.BRIDGE_NAME: config.DEFAULT_BRIDGE_NAME,
                    opts.MTU: str(config.DEFAULT_MTU),
                },
                labels={}, bridge=config.DEFAULT_BRIDGE_NAME, builtin=True,
            )
            self.ctx.store.add_network(net, state="active")
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in names:
                self.ctx.store.add_network(
                    Network(
                        id=new_id(), name=name, driver=driver, scope="local", created=now_rfc3339(),
                        enable_ipv6=False, internal=False, attachable=False,
                        ipam={"Driver": "default", "Options": None, "Config": []},
                        options={}, labels={}, builtin=True,
                    ),
                    state="active",
                )

    def load_addresses(self) -> None:
        """Rebuild every active network's address book from its recorded configuration."""
        self.ctx.addresses.clear()
        for net in self.all():
            if net.driver == "cni":
                self.ctx.addresses[net.id] = _cni_book(net.ipam.get("Config") or [])
                continue
            cfgs = ipam_config.normalize(net.ipam.get("Config") or [], enable_ipv6=True)
            self.ctx.addresses[net.id] = NetworkAddresses(cfgs)

    def serve_dns(self, net: Network) -> None:
        """Embedded DNS for a user-defined bridge network, on its IPv4 gateway (Docker: none on ``bridge``)."""
        if self.ctx.dns is None or net.builtin or net.driver != "bridge":
            return
        gateway = self.ctx.addresses[net.id].gateway(4)
        self.ctx.dns.table.set_network(net.id, net.name, net.internal)
        if gateway is None:
            return
        try:
            self.ctx.dns.listen(net.id, gateway)
        except OSError as err:
            log.error("no name resolution on network %s: cannot listen on %s:53: %s", net.name, gateway, err)

    def restore_kernel(self, net: Network) -> None:
        """(Re)create a network's kernel objects; idempotent, used at start-up and after a reboot."""
        if net.driver != "bridge":
            return
        book = self.ctx.addresses[net.id]
        self.ctx.drivers[net.driver].create_network(net, [c.subnet for c in book.subnets], book.gateway_interfaces())


def _cni_book(ranges: list[dict[str, str]]) -> NetworkAddresses:
    """A cni network's ranges as an address book berth never allocates from: automatic subnets of
    berth's own networks keep clear of them. Ranges berth cannot read give an empty book."""
    try:
        return NetworkAddresses(ipam_config.normalize(ranges, enable_ipv6=True))
    except BerthError:
        return NetworkAddresses([])


def _label_matches(labels: dict[str, str], expr: str) -> bool:
    key, sep, value = expr.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def _created_before(created: str, until: Iterable[str]) -> bool:
    """Docker's ``until`` filter: a unix timestamp, an RFC 3339 date, or a duration ago (``24h``, ``90m``)."""
    import time
    from datetime import datetime

    stamp = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    for value in until:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([hms])", value)
        try:
            if match:
                limit = time.time() - float(match[1]) * {"h": 3600, "m": 60, "s": 1}[match[2]]
            elif re.fullmatch(r"\d+(?:\.\d+)?", value):
                limit = float(value)
            else:
                limit = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise InvalidParameter(f"invalid value for filter 'until': {value}") from None
        if stamp >= limit:
            return False
    return True
