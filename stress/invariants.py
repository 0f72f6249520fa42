"""The invariants every scenario must leave true: store and kernel agree, nothing leaked, nothing doubled.

Records and kernel objects both come from ``probe.py``, run inside the throwaway host. Checked at rest, when no command is in flight:

* no record is left ``pending`` or ``removing``;
* no address is handed out twice on a network, and none is the gateway;
* every network's bridge exists with its ``berth:<id>`` mark, and every marked bridge has its network;
* every live endpoint's veth exists on its network's bridge, and every marked veth has its endpoint;
* netns files, monitor processes, published-port map elements and mounts belong to running containers,
  and every running container has its netns (when it has endpoints) and its monitor;
* nft's ``bridges`` set equals the store's bridges.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.testing.sandbox import Sandbox

PROBE = Path(__file__).with_name("probe.py")
MONITOR = "berth-monitor"        # a monitor's argv: berth-monitor <container-id>
FORKSERVER = "berth-forkserver"  # berthd's child that forks the monitors
DAEMON = "berth.api.daemon"


@dataclass
class Records:
    networks: list[dict[str, Any]] = field(default_factory=list)
    containers: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    externals: list[dict[str, Any]] = field(default_factory=list)


def records(data: dict[str, Any]) -> Records:
    """The probe's store dump as records (a container's state decoded)."""
    if "error" in data:
        raise RuntimeError(f"cannot read berthd's store: {data['error']}")
    rec = Records(**data)
    for c in rec.containers:
        c["state"] = json.loads(c["state"])
    return rec


def read_store(host: Sandbox) -> Records:
    return records(probe(host)["store"])


def probe(host: Sandbox) -> dict[str, Any]:
    result = host.run([sys.executable, str(PROBE), str(host.tmp)], timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"probe failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


@dataclass
class Check:
    """The outcome of one check: violations (must be empty) and what was counted."""

    violations: list[str]
    counts: dict[str, int]


def check(host: Sandbox, settle: float = 5.0) -> Check:
    """The invariants, polled for up to ``settle`` seconds: the kernel frees a deleted network namespace
    (and the veths in it) asynchronously, and a container's monitor exits just after reporting."""
    deadline = time.monotonic() + settle
    while True:
        found = _check_once(host)
        if not found.violations or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _check_once(host: Sandbox) -> Check:
    kernel = probe(host)
    rec = records(kernel["store"])
    bad: list[str] = []
    bad += _states(rec)
    bad += _addresses(rec)
    running = {c["id"]: c for c in rec.containers if c["state"].get("status") == "running"}
    bad += _links(rec, kernel["links"], running)
    bad += _netns(rec, kernel["netns"], running)
    bad += _processes(kernel["processes"], running)
    bad += _nft(rec, kernel["nft"], running)
    bad += _mounts(host, kernel["mounts"], running)
    counts = {"networks": len(rec.networks), "containers": len(rec.containers), "running": len(running),
              "endpoints": sum(1 for a in rec.attachments if a["endpoint_id"]),
              "links": sum(1 for l in kernel["links"] if l["alias"].startswith("berth:")),
              "netns": len(kernel["netns"])}
    return Check(bad, counts)


def _states(rec: Records) -> list[str]:
    bad = [f"network {n['name']} left {n['state']}" for n in rec.networks if n["state"] != "active"]
    bad += [f"endpoint {a['container_id'][:12]}@{a['network_id'][:12]} left {a['state']}"
            for a in rec.attachments if a["state"] != "active"]
    bad += [f"container {c['name']} left {c['state']['status']}" for c in rec.containers
            if c["state"].get("status") not in ("created", "running", "exited")]
    return bad


def _addresses(rec: Records) -> list[str]:
    bad = []
    names = {n["id"]: n["name"] for n in rec.networks}
    for family, gw in (("ipv4", "gateway4"), ("ipv6", "gateway6")):
        taken = Counter((a["network_id"], a[family]) for a in [*rec.attachments, *rec.externals] if a[family])
        bad += [f"address {addr} handed out {n} times on {names.get(net, net)}"
                for (net, addr), n in taken.items() if n > 1]
        bad += [f"address {a[family]} on {names.get(a['network_id'])} is its gateway"
                for a in rec.attachments if a[family] and a[family] == a[gw]]
    return bad


def _links(rec: Records, links: list[dict[str, Any]], running: dict[str, Any]) -> list[str]:
    bad = []
    by_name = {l["name"]: l for l in links}
    bridges = {n["bridge"]: n for n in rec.networks if n["bridge"]}
    for name, net in bridges.items():
        link = by_name.get(name)
        if link is None:
            bad.append(f"network {net['name']}: bridge {name} missing")
        elif link["alias"] != f"berth:{net['id']}":
            bad.append(f"network {net['name']}: bridge {name} marked {link['alias']!r}")
    endpoints = {a["endpoint_id"]: a for a in [*rec.attachments, *rec.externals] if a["endpoint_id"]}
    net_bridge = {n["id"]: n["bridge"] for n in rec.networks}
    for a in rec.attachments:
        if not a["endpoint_id"]:
            continue
        if a["container_id"] not in running:
            bad.append(f"endpoint {a['endpoint_id'][:12]} of a container that is not running")
        if a["host_ifname"] and net_bridge.get(a["network_id"]):
            link = by_name.get(a["host_ifname"])
            if link is None:
                bad.append(f"endpoint {a['endpoint_id'][:12]}: veth {a['host_ifname']} missing")
            elif link["master"] != net_bridge[a["network_id"]]:
                bad.append(f"veth {a['host_ifname']} on {link['master']!r}, not {net_bridge[a['network_id']]}")
    for link in links:
        parts = link["alias"].split(":")
        if parts[0] != "berth":
            continue
        if len(parts) == 2 and bridges.get(link["name"], {}).get("id") != parts[1]:
            bad.append(f"leaked bridge {link['name']} ({link['alias']})")
        elif len(parts) == 3 and endpoints.get(parts[2], {}).get("host_ifname") != link["name"]:
            bad.append(f"leaked veth {link['name']} ({link['alias']})")
    return bad


def _netns(rec: Records, files: list[str], running: dict[str, Any]) -> list[str]:
    bad = [f"leaked netns {f[:12]}" for f in files if f not in running]
    with_endpoints = {a["container_id"] for a in rec.attachments if a["endpoint_id"]}
    bad += [f"container {running[c]['name']}: netns missing" for c in with_endpoints & set(running)
            if c not in files]
    return bad


def _processes(procs: list[dict[str, Any]], running: dict[str, Any]) -> list[str]:
    bad = []
    monitors: dict[int, str] = {}
    for p in procs:
        if p["argv"][:1] == [MONITOR]:
            monitors[p["pid"]] = p["argv"][1]
    for pid, cid in monitors.items():
        c = running.get(cid)
        if c is None:
            bad.append(f"leaked monitor pid {pid} of container {cid[:12]}")
        elif c["state"].get("monitor_pid") != pid:
            bad.append(f"container {c['name']}: monitor pid {pid}, record says {c['state'].get('monitor_pid')}")
    for cid, c in running.items():
        if cid not in monitors.values():
            bad.append(f"container {c['name']} recorded running without a monitor")
    parent = {p["pid"]: p["ppid"] for p in procs}

    def under_monitor(pid: int) -> bool:
        while pid in parent:
            if pid in monitors:
                return True
            pid = parent[pid]
        return False

    daemons = {p["pid"] for p in procs if DAEMON in " ".join(p["argv"])}
    for p in procs:
        if p["pid"] in monitors or p["pid"] in daemons or under_monitor(p["pid"]):
            continue
        if p["argv"][:1] == [FORKSERVER] and p["ppid"] in daemons:
            continue
        if p["state"] == "Z":
            continue  # reaped by the sandbox's init at its next SIGCHLD
        bad.append(f"leaked process {p['pid']}: {' '.join(p['argv'])[:120]}")
    return bad


def _published(running: dict[str, Any]) -> Counter[str]:
    want: Counter[str] = Counter()
    for c in running.values():
        for proto, host_ip, host_port, ip, port in c["state"].get("ports") or []:
            key = f"{proto} . {host_ip} . {host_port}" if host_ip else f"{proto} . {host_port}"
            want[f"{key} -> {ip} . {port}"] += 1
    return want


def _nft(rec: Records, nft: dict[str, list[str]] | None, running: dict[str, Any]) -> list[str]:
    if nft is None:
        return ["berth's nft tables are missing"]
    bad = []
    want = {n["bridge"] for n in rec.networks if n["bridge"] and n["driver"] == "bridge"}
    have = set(nft.get("inet/bridges", []))
    bad += [f"nft bridges set lacks {b}" for b in sorted(want - have)]
    bad += [f"leaked nft bridges element {b}" for b in sorted(have - want)]
    veths = {a["host_ifname"] for a in [*rec.attachments, *rec.externals] if a["endpoint_id"]}
    bad += [f"leaked nft icc_off_ports element {v}" for v in nft.get("bridge/icc_off_ports", []) if v not in veths]
    published = Counter(nft.get("inet/pub_any4", []) + nft.get("inet/pub_ip4", []))
    expected = _published(running)
    bad += [f"leaked nft published-port element {e}" for e in sorted(published - expected)]
    bad += [f"published port missing from nft: {e}" for e in sorted(expected - published)]
    return bad


def _mounts(host: Sandbox, points: list[str], running: dict[str, Any]) -> list[str]:
    allowed = {str(host.root), str(host.run_root), str(host.run_root / "netns")}
    netns_dir = str(host.run_root / "netns") + "/"
    bad = []
    for point in points:
        if point in allowed:
            continue
        if point.startswith(netns_dir) and point[len(netns_dir):] in running:
            continue
        bad.append(f"leaked mount {point}")
    return bad
