"""An in-memory twin of ``Kernel`` for unit tests: same methods, same preconditions, same errors.

It keeps links, namespaces, addresses, routes, sysctls and nft set elements as plain data, so engine
tests run without root and can compare ``snapshot()`` before and after a failed command.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Iterable, Sequence

from berth.errors import KernelError
from berth.kernel.types import Iface, LinkInfo

MAX_BRIDGE_PORTS = 1023
IFNAMSIZ = 15  # longest interface name the kernel takes


@dataclass
class _Link:
    name: str
    kind: str
    alias: str | None = None
    master: str | None = None
    mtu: int = 1500
    up: bool = False
    mac: str = ""
    addresses: list[Iface] = field(default_factory=list)


class FakeKernel:
    def __init__(self, host_networks: Sequence[IPv4Network | IPv6Network] = ()) -> None:
        self.host: dict[str, _Link] = {"lo": _Link("lo", "loopback", up=True)}
        self.namespaces: dict[str, dict[str, _Link]] = {}
        self.routes: dict[str, dict[int, Any]] = {}
        self.sysctls: dict[str, str] = {}
        self.sets: dict[tuple[str, str], set[str]] = {}
        self.tables: set[str] = set()
        self._host_networks = list(host_networks)
        self.docker_user: set[tuple[str, str]] = set()  # (bridge, mark) accept rules in Docker's chain
        self.fail: dict[str, Exception] = {}  # method name -> error to raise once (failure injection)

    def _maybe_fail(self, what: str) -> None:
        err = self.fail.pop(what, None)
        if err is not None:
            raise err

    @staticmethod
    def _info(index: int, link: _Link) -> LinkInfo:
        return LinkInfo(link.name, index, link.kind, link.alias, link.master, link.mtu, link.up, link.mac,
                        tuple(link.addresses))

    # -- namespaces ------------------------------------------------------------------------------

    def netns_create(self, path: str | Path) -> None:
        self._maybe_fail("netns_create")
        key = str(path)
        if key in self.namespaces:
            raise KernelError(f"network namespace {path} already exists")
        self.namespaces[key] = {"lo": _Link("lo", "loopback", up=True)}
        self.routes[key] = {}

    def netns_delete(self, path: str | Path) -> None:
        links = self.namespaces.pop(str(path), {})
        self.routes.pop(str(path), None)
        peers = {l.mac for l in links.values()}
        for name in [n for n, l in self.host.items() if l.kind == "veth" and l.mac in peers]:
            del self.host[name]
            self._forget_link(name)

    def netns_exists(self, path: str | Path) -> bool:
        return str(path) in self.namespaces

    def _netns(self, path: str | Path) -> dict[str, _Link]:
        inside = self.namespaces.get(str(path))
        if inside is None:
            raise KernelError(f"network namespace {path} does not exist")
        return inside

    # -- host links ------------------------------------------------------------------------------

    def bridge_ensure(self, name: str, *, alias: str, mtu: int, addresses: Sequence[Iface], mac: str | None = None) -> None:
        self._maybe_fail("bridge_ensure")
        link = self.host.get(name)
        if link is None:
            if len(name) > IFNAMSIZ:
                raise KernelError(f"cannot set up bridge {name}: Numerical result out of range")
            link = self.host[name] = _Link(name, "bridge", alias=alias, mtu=mtu, mac=mac or "")
        elif link.kind != "bridge" or link.alias != alias:
            raise KernelError(f"a link named {name} already exists and is not berth's bridge for this network")
        link.mtu = mtu
        for iface in addresses:
            if iface not in link.addresses:
                link.addresses.append(iface)
        link.up = True

    def link_delete(self, name: str) -> None:
        link = self.host.pop(name, None)
        if link is None:
            return
        self._forget_link(name)
        if link.kind == "bridge":
            for other in self.host.values():
                if other.master == name:
                    other.master = None
        elif link.kind == "veth":  # the peer dies with it, and so do routes through the peer
            for path, inside in self.namespaces.items():
                for ifname, peer in list(inside.items()):
                    if peer.kind == "veth" and peer.mac == link.mac:
                        del inside[ifname]
                        self._drop_routes(path, ifname)

    def _drop_routes(self, netns: str, ifname: str) -> None:
        routes = self.routes[netns]
        for family in [f for f, (_, dev) in routes.items() if dev == ifname]:
            del routes[family]

    def link_get(self, name: str) -> LinkInfo | None:
        names = list(self.host)
        return self._info(names.index(name) + 1, self.host[name]) if name in self.host else None

    def links(self, alias_prefix: str = "berth:") -> list[LinkInfo]:
        return [self._info(i + 1, l) for i, l in enumerate(self.host.values()) if (l.alias or "").startswith(alias_prefix)]

    def bridge_port_count(self, bridge: str) -> int:
        return sum(1 for l in self.host.values() if l.master == bridge)

    # -- endpoints -------------------------------------------------------------------------------

    def veth_attach(self, *, netns: str | Path, host_name: str, alias: str, bridge: str, ifname: str, mac: str,
                    mtu: int, addresses: Sequence[Iface], gateway4: IPv4Address | None = None,
                    gateway6: IPv6Address | None = None) -> None:
        self._maybe_fail("veth_attach")
        if bridge not in self.host:
            raise KernelError(f"bridge {bridge} does not exist (try: berth system reconcile)")
        inside = self._netns(netns)
        if len(host_name) > IFNAMSIZ or len(ifname) > IFNAMSIZ:
            raise KernelError(f"cannot create veth pair {host_name}/{ifname}: Numerical result out of range")
        if host_name in self.host or ifname in inside:
            raise KernelError(f"cannot create veth pair {host_name}/{ifname}: File exists")
        if self.bridge_port_count(bridge) >= MAX_BRIDGE_PORTS:
            raise KernelError(f"network {bridge} is full: a Linux bridge takes at most 1023 ports")
        for gateway in (gateway4, gateway6):
            on_link = [a for l in inside.values() for a in l.addresses] + list(addresses)
            if gateway is not None and not any(gateway in a.network for a in on_link):
                raise KernelError(f"cannot attach {ifname} to bridge {bridge} (route): Network is unreachable")
        self.host[host_name] = _Link(host_name, "veth", alias=alias, master=bridge, mtu=mtu, up=True, mac=mac)
        inside[ifname] = _Link(ifname, "veth", mtu=mtu, up=True, mac=mac, addresses=list(addresses))
        routes = self.routes[str(netns)]
        if gateway4 is not None:
            routes[4] = (gateway4, ifname)
        if gateway6 is not None:
            routes[6] = (gateway6, ifname)

    def bridge_port_hairpin(self, host_name: str) -> None:
        if host_name not in self.host:
            raise KernelError(f"link {host_name} does not exist")
        self.host[host_name].kind = "veth"

    def netns_link_delete(self, netns: str | Path, ifname: str, *, gateway4: IPv4Address | None = None,
                          gateway6: IPv6Address | None = None) -> None:
        if str(netns) not in self.namespaces:
            return
        link = self.namespaces[str(netns)].pop(ifname, None)
        if link is not None:
            for name in [n for n, l in self.host.items() if l.kind == "veth" and l.mac == link.mac]:
                del self.host[name]
                self._forget_link(name)
            self._drop_routes(str(netns), ifname)
        for family, gateway in ((4, gateway4), (6, gateway6)):
            if gateway is not None:
                self._set_default(netns, family, gateway)

    def _set_default(self, netns: str | Path, family: int, gateway: IPv4Address | IPv6Address) -> None:
        dev = next((l.name for l in self._netns(netns).values()
                    if any(a.version == family and gateway in a.network for a in l.addresses)), None)
        if dev is None:
            raise KernelError(f"cannot set default route via {gateway} in {netns}: Network is unreachable")
        self.routes[str(netns)][family] = (gateway, dev)

    def netns_set_default_routes(self, netns: str | Path, *, gateway4: IPv4Address | None,
                                 gateway6: IPv6Address | None) -> None:
        routes = self.routes[str(netns)]
        for family, gateway in ((4, gateway4), (6, gateway6)):
            if gateway is None:
                routes.pop(family, None)
            else:
                self._set_default(netns, family, gateway)

    def netns_links(self, netns: str | Path) -> list[LinkInfo]:
        return [self._info(i + 1, l) for i, l in enumerate(self._netns(netns).values())]

    def netns_routes(self, netns: str | Path) -> list[dict[str, Any]]:
        self._netns(netns)
        return [{"dst": "default", "gateway": str(gw), "dev": dev} for gw, dev in self.routes[str(netns)].values()]

    # -- facts, sysctls, nft ---------------------------------------------------------------------

    def host_networks(self, version: int | None = None, own_bridges: Iterable[str] = ()) -> list[IPv4Network | IPv6Network]:
        ours = set(own_bridges)
        nets = list(self._host_networks)
        for l in self.host.values():
            if l.name not in ours:
                nets += [ip_network(a.network) for a in l.addresses]
        return [n for n in nets if version is None or n.version == version]

    @staticmethod
    def _sysctl_link(key: str) -> str | None:
        """The interface a ``net.<proto>.conf.<if>.<knob>`` key belongs to (``all``/``default`` are none)."""
        parts = key.split(".")
        if len(parts) > 4 and parts[0] == "net" and parts[2] == "conf":
            name = ".".join(parts[3:-1])
            return None if name in ("all", "default") else name
        return None

    def sysctl_set(self, key: str, value: str) -> None:
        link = self._sysctl_link(key)
        if link is not None and link not in self.host:
            raise KernelError(f"cannot set sysctl {key}={value}: No such file or directory")
        self.sysctls[key] = value

    def sysctl_get(self, key: str) -> str:
        link = self._sysctl_link(key)
        if link is not None and link not in self.host:
            raise KernelError(f"cannot read sysctl {key}: No such file or directory")
        return self.sysctls.get(key, "0")

    def _forget_link(self, name: str) -> None:
        """An interface's sysctls vanish with it, as its /proc/sys/net/*/conf/<if> directory does."""
        self.sysctls = {k: v for k, v in self.sysctls.items() if self._sysctl_link(k) != name}

    def nft(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Applies table and set-element commands atomically (elements are tracked, rules only checked)."""
        self._maybe_fail("nft")
        sets, tables = copy.deepcopy(self.sets), set(self.tables)
        for cmd in commands:
            (verb, body), = cmd.items()
            (kind, spec), = body.items()
            if kind == "table":
                key = f"{spec['family']} {spec['name']}"
                if verb == "add":
                    tables.add(key)
                elif verb == "delete":
                    if key not in tables:
                        raise KernelError("nftables refused berth's change: No such file or directory")
                    tables.discard(key)
                    sets = {k: v for k, v in sets.items() if not k[0].startswith(key)}
            elif kind == "set" and verb == "add":
                sets.setdefault((f"{spec['family']} {spec['table']}", spec["name"]), set())
            elif kind in ("set", "map") and verb == "flush":
                key = (f"{spec['family']} {spec['table']}", spec["name"])
                if key not in sets:
                    raise KernelError("nftables refused berth's change: No such file or directory")
                sets[key] = set()
            elif kind == "element":
                key = (f"{spec['family']} {spec['table']}", spec["name"])
                if key not in sets:
                    raise KernelError("nftables refused berth's change: No such file or directory")
                for elem in spec["elem"]:
                    text = repr(elem)
                    if verb == "add":
                        sets[key].add(text)
                    elif verb == "delete":
                        if text not in sets[key]:
                            raise KernelError("nftables refused berth's change: No such file or directory")
                        sets[key].discard(text)
        self.sets, self.tables = sets, tables
        return []

    def nft_text(self, text: str) -> None:
        """Tracks the maps the text declares, so their elements can be added later."""
        import re

        for family, table, name in re.findall(r"add map (\w+) (\w+) (\w+)", text):
            self.sets.setdefault((f"{family} {table}", name), set())

    def docker_user_allow(self, bridge: str, mark: str) -> None:
        self.docker_user.add((bridge, mark))

    def docker_user_revoke(self, bridge: str, mark: str) -> None:
        self.docker_user.discard((bridge, mark))

    def nft_table(self, family: str, name: str) -> dict[str, Any] | None:
        key = f"{family} {name}"
        if key not in self.tables:
            return None
        return {k[1]: sorted(v) for k, v in self.sets.items() if k[0] == key}

    def snapshot(self) -> dict[str, Any]:
        return {
            "host": {n: replace(l, addresses=list(l.addresses)) for n, l in self.host.items()},
            "netns": {k: sorted(v) for k, v in self.namespaces.items()},
            "routes": copy.deepcopy(self.routes),
            "sets": copy.deepcopy(self.sets),
            "tables": set(self.tables),
            "docker_user": set(self.docker_user),
            "sysctls": dict(self.sysctls),
        }

    def release_thread(self) -> None:
        """The twin holds no per-thread sockets."""

    def close(self) -> None:
        pass
