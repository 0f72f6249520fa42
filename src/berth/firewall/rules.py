"""berth's firewall: a fixed rule set that looks networks up in sets (design.md §5).

berth owns two tables and nothing else: ``inet berth`` (forwarding policy and masquerade) and
``bridge berth`` (port-to-port frames on bridges with ICC off, which never reach the inet hooks unless
br_netfilter is on). The rules never change after start-up: a network is a few set elements (its bridge
name, its subnets), so creating or removing one is O(1) whatever the number of networks, and
``base_ruleset()`` can be re-applied at every start as an atomic replace of berth's own chains.

Every base chain has policy accept: berth only ever drops traffic that touches its own bridges, and
never decides the fate of anybody else's packets.

Two choices forced by the kernels and nft 1.0.6 berth runs on:

* ICC off in the bridge family matches the *ports* (host-side veth names, ``icc_off_ports``) rather
  than ``meta ibrname @bridges``: the bridge meta expressions are missing from some kernels
  (``Operation not supported``), while ``iifname`` works everywhere. The driver adds an endpoint's port
  when it joins an ICC-off network.
* Deleting an element that is not there fails the whole batch, and ``destroy`` (delete-if-present)
  only exists from nft 1.0.8 / Linux 6.3. So every delete is preceded by an ``add`` of the same
  element in the same batch: the pair always succeeds and leaves the element absent, so the engine can
  repeat a teardown that was interrupted half-way.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from dataclasses import dataclass
from typing import Any, Literal, Sequence

TABLE = "berth"
INET = "inet"
BRIDGE = "bridge"

Json = dict[str, Any]


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _rule(family: str, chain: str, *expr: Json, comment: str | None = None) -> Json:
    rule: Json = {"family": family, "table": TABLE, "chain": chain, "expr": list(expr)}
    if comment:
        rule["comment"] = comment
    return {"add": {"rule": rule}}


def _set(family: str, name: str, type_: Any, interval: bool = False) -> Json:
    spec: Json = {"family": family, "table": TABLE, "name": name, "type": type_}
    if interval:
        spec["flags"] = ["interval"]
    return {"add": {"set": spec}}


def _chain(family: str, name: str, hook: str | None = None, kind: str = "filter", prio: int = 0) -> Json:
    spec: Json = {"family": family, "table": TABLE, "name": name}
    if hook:
        spec.update({"type": kind, "hook": hook, "prio": prio, "policy": "accept"})
    return {"add": {"chain": spec}}


def _flush(family: str, chain: str) -> Json:
    return {"flush": {"chain": {"family": family, "table": TABLE, "name": chain}}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


DROP: Json = {"drop": None}
ACCEPT: Json = {"accept": None}


def base_ruleset() -> list[Json]:
    """Tables, sets and chains, then an atomic replace of berth's rules (one batch, idempotent)."""
    cmds: list[Json] = [
        {"add": {"table": {"family": INET, "name": TABLE}}},
        {"add": {"table": {"family": BRIDGE, "name": TABLE}}},
        _set(INET, "bridges", "ifname"),
        _set(INET, "icc", ["ifname", "ifname"]),
        _set(INET, "internal", "ifname"),
        _set(INET, "masq4", "ipv4_addr", interval=True),
        _set(INET, "masq6", "ipv6_addr", interval=True),
        _set(INET, "subnets4", "ipv4_addr", interval=True),
        _set(INET, "subnets6", "ipv6_addr", interval=True),
        _set(BRIDGE, "icc_off_ports", "ifname"),
        _chain(INET, "forward", "forward", "filter", 0),
        _chain(INET, "from_bridge"),
        _chain(INET, "to_bridge"),
        _chain(INET, "postrouting", "postrouting", "nat", 100),
        _chain(INET, "prerouting", "prerouting", "nat", -100),
        _chain(INET, "output", "output", "nat", -100),
        _chain(INET, "publish"),
        _chain(BRIDGE, "forward", "forward", "filter", 0),
    ]
    for family, chain in ((INET, "forward"), (INET, "from_bridge"), (INET, "to_bridge"), (INET, "postrouting"),
                          (INET, "prerouting"), (INET, "output"), (BRIDGE, "forward")):
        cmds.append(_flush(family, chain))
    iif, oif = _meta("iifname"), _meta("oifname")
    cmds += [
        # forward: sort traffic by whether it leaves or enters a berth bridge
        _rule(INET, "forward", _match(iif, "@bridges"), {"jump": {"target": "from_bridge"}}),
        _rule(INET, "forward", _match(oif, "@bridges"), {"jump": {"target": "to_bridge"}}),
        # from a container: same bridge only with ICC; other bridges never (isolation); internal: no egress
        _rule(INET, "from_bridge", _match({"concat": [iif, oif]}, "@icc"), ACCEPT, comment="icc"),
        _rule(INET, "from_bridge", _match(iif, "@internal"), DROP, comment="internal network: no egress"),
        _rule(INET, "from_bridge", _match({"ct": {"key": "status"}}, "dnat", "in"), ACCEPT,
              comment="published ports are reachable from every network"),
        _rule(INET, "from_bridge", _match(oif, "@bridges"), DROP, comment="isolation between networks"),
        # into a container from outside: replies and published ports only
        _rule(INET, "to_bridge", _match(oif, "@internal"), DROP, comment="internal network: no ingress"),
        _rule(INET, "to_bridge", _match({"ct": {"key": "state"}}, ["established", "related"], "in"), ACCEPT),
        _rule(INET, "to_bridge", _match({"ct": {"key": "status"}}, "dnat", "in"), ACCEPT, comment="published ports"),
        _rule(INET, "to_bridge", DROP, comment="no unsolicited connections into containers"),
        # published ports: traffic to a local address (never 127/8 from the network: Docker's hole, moby#45610)
        _rule(INET, "prerouting", _match(_payload("ip", "daddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
              {"return": None}, comment="loopback-bound ports are never reachable from other hosts"),
        _rule(INET, "prerouting", _match({"fib": {"flags": ["daddr"], "result": "type"}}, "local"),
              {"jump": {"target": "publish"}}),
        # IPv6 has no route_localnet: a DNAT'ed packet from ::1 could never leave lo, so [::1] is left alone
        # (refused at once by the host) rather than sent into a container and lost
        _rule(INET, "output", _match(_payload("ip6", "daddr"), "::1"), {"return": None},
              comment="[::1] is never published"),
        _rule(INET, "output", _match({"fib": {"flags": ["daddr"], "result": "type"}}, "local"),
              {"jump": {"target": "publish"}}),
        # a container reaching a published port (its own: hairpin, or another network's) and the host's
        # own 127.0.0.1 reaching a container: rewrite the source so replies come back the same way
        _rule(INET, "postrouting", _match({"ct": {"key": "status"}}, "dnat", "in"),
              _match(_payload("ip", "saddr"), "@subnets4"), {"masquerade": None},
              comment="hairpin and cross-network published ports"),
        _rule(INET, "postrouting", _match({"ct": {"key": "status"}}, "dnat", "in"),
              _match(_payload("ip6", "saddr"), "@subnets6"), {"masquerade": None},
              comment="hairpin and cross-network published ports, IPv6"),
        _rule(INET, "postrouting", _match(_payload("ip", "saddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
              _match(oif, "@bridges"), {"masquerade": None}, comment="published ports reached on 127.0.0.1"),
        # egress NAT for networks with masquerade on
        _rule(INET, "postrouting", _match({"payload": {"protocol": "ip", "field": "saddr"}}, "@masq4"),
              _match(oif, "@bridges", "!="), {"masquerade": None}),
        _rule(INET, "postrouting", _match({"payload": {"protocol": "ip6", "field": "saddr"}}, "@masq6"),
              _match(oif, "@bridges", "!="), {"masquerade": None}),
        # port-to-port frames on a bridge with ICC off (when br_netfilter does not send them through inet)
        _rule(BRIDGE, "forward", _match(iif, "@icc_off_ports"), DROP, comment="icc off"),
    ]
    return cmds


def _elements(op: str, family: str, name: str, elems: list[Any]) -> list[Json]:
    if not elems:
        return []
    element = {"element": {"family": family, "table": TABLE, "name": name, "elem": elems}}
    if op == "add":
        return [{"add": element}]
    return [{"add": element}, {"delete": element}]  # delete-if-present in nft 1.0.6 (module docstring)


def network_elements(bridge: str, subnets: Sequence[IPv4Network | IPv6Network], *, icc: bool, masquerade: bool,
                     internal: bool, op: Literal["add", "delete"]) -> list[Json]:
    """The set elements that make one network behave as configured (all of them, added or removed)."""
    def prefix(n: IPv4Network | IPv6Network) -> Json:
        return {"prefix": {"addr": str(n.network_address), "len": n.prefixlen}}

    cmds = _elements(op, INET, "bridges", [bridge])
    if icc:
        cmds += _elements(op, INET, "icc", [{"concat": [bridge, bridge]}])
    if internal:
        cmds += _elements(op, INET, "internal", [bridge])
    cmds += _elements(op, INET, "subnets4", [prefix(n) for n in subnets if n.version == 4])
    cmds += _elements(op, INET, "subnets6", [prefix(n) for n in subnets if n.version == 6])
    if masquerade and not internal:
        cmds += _elements(op, INET, "masq4", [prefix(n) for n in subnets if n.version == 4])
        cmds += _elements(op, INET, "masq6", [prefix(n) for n in subnets if n.version == 6])
    return cmds


def icc_off_elements(host_ifname: str, op: Literal["add", "delete"]) -> list[Json]:
    """An endpoint of a bridge with ICC off: its frames may reach the gateway but no other port."""
    return _elements(op, BRIDGE, "icc_off_ports", [host_ifname])


def publish_text() -> str:
    """The published-port maps and the ``publish`` chain's DNAT rules, in nft syntax.

    Four maps: any local address or one address, per family (a binding's family is its container
    address's: IPv4 to IPv4, IPv6 to IPv6, as nft's NAT cannot translate between them).
    libnftables 1.0.6's JSON parser cannot declare a map with concatenated data (it silently makes a set)
    and crashes on a dnat through such a map; its text parser handles both. Applied as a second batch
    right after ``base_ruleset()``: an atomic replace of that one chain; the maps keep their elements.
    """
    lines = []
    for v, addr in (("4", "ipv4_addr"), ("6", "ipv6_addr")):
        lines += [
            f"add map {INET} {TABLE} pub_any{v} {{ type inet_proto . inet_service : {addr} . inet_service; }}",
            f"add map {INET} {TABLE} pub_ip{v} {{ type inet_proto . {addr} . inet_service : {addr} . inet_service; }}",
        ]
    lines.append(f"flush chain {INET} {TABLE} publish")
    for v, nfproto, ip in (("4", "ipv4", "ip"), ("6", "ipv6", "ip6")):
        lines += [
            f"add rule {INET} {TABLE} publish meta nfproto {nfproto} dnat {ip} to meta l4proto . {ip} daddr . th dport"
            f" map @pub_ip{v}",
            f"add rule {INET} {TABLE} publish meta nfproto {nfproto} dnat {ip} to meta l4proto . th dport map @pub_any{v}",
        ]
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class Published:
    """One published port: ``host_ip`` None means every local address of the container address's family."""

    proto: str
    host_ip: str | None
    host_port: int
    container_ip: str
    container_port: int

    @property
    def ipv6(self) -> bool:
        return ":" in self.container_ip


PUBLISH_MAPS = ("pub_any4", "pub_ip4", "pub_any6", "pub_ip6")


def published_elements(ports: Sequence[Published], op: Literal["add", "delete"]) -> list[Json]:
    """Map elements that publish (or withdraw) a container's ports; O(1) each, whatever the count."""
    cmds: list[Json] = []
    for v6, suffix in ((False, "4"), (True, "6")):
        family = [p for p in ports if p.ipv6 == v6]
        any_ip = [[{"concat": [p.proto, p.host_port]}, {"concat": [p.container_ip, p.container_port]}]
                  for p in family if p.host_ip is None]
        one_ip = [[{"concat": [p.proto, p.host_ip, p.host_port]}, {"concat": [p.container_ip, p.container_port]}]
                  for p in family if p.host_ip is not None]
        cmds += _elements(op, INET, f"pub_any{suffix}", any_ip) + _elements(op, INET, f"pub_ip{suffix}", one_ip)
    return cmds


def published_replace(ports: Sequence[Published]) -> list[Json]:
    """Every published-port map emptied and refilled with exactly ``ports``, in one atomic batch."""
    flush = [{"flush": {"map": {"family": INET, "table": TABLE, "name": name}}} for name in PUBLISH_MAPS]
    return flush + published_elements(ports, "add")


def remove_all() -> list[Json]:
    """Delete berth's tables (idempotent: each is added first, so the delete cannot miss)."""
    cmds: list[Json] = []
    for family in (INET, BRIDGE):
        table = {"table": {"family": family, "name": TABLE}}
        cmds += [{"add": table}, {"delete": table}]
    return cmds
