"""Lists the records and kernel objects of a throwaway host; run *inside* it (``python3 stress/probe.py TMPDIR``).

Prints one JSON object: berthd's records (read-only SQLite, from inside because the state root may be a
filesystem mounted only there, and SQLite resolves ``/proc/PID/root`` paths to the outside), links with their ``berth:`` marks, the elements of berth's nft sets and maps,
the netns files under the run root, mounts under the sandbox's directory, and every process with its
parent and command line (pids as the sandbox sees them, the pids berthd records). Only the ``ip`` and
``nft`` tools are used: the harness must not depend on the code it checks.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any


def _json(argv: list[str]) -> Any:
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout or "null")


def links() -> list[dict[str, Any]]:
    return [{"name": l["ifname"], "alias": l.get("ifalias", ""), "master": l.get("master", ""),
             "kind": l.get("linkinfo", {}).get("info_kind", "")}
            for l in _json(["ip", "-j", "-d", "link"]) or []]


def _element(value: Any) -> str:
    """One set or map element as text: ``a . b`` for concatenations, ``k -> v`` for map entries."""
    if isinstance(value, list):  # a map entry: [key, data]
        return " -> ".join(_element(v) for v in value)
    if isinstance(value, dict):
        if "concat" in value:
            return " . ".join(_element(v) for v in value["concat"])
        if "prefix" in value:
            return f'{value["prefix"]["addr"]}/{value["prefix"]["len"]}'
        if "elem" in value:
            return _element(value["elem"]["val"])
        if "range" in value:
            return "-".join(_element(v) for v in value["range"])
    return str(value)


def nft_elements() -> dict[str, list[str]] | None:
    """``family/name`` -> elements of each of berth's sets and maps; None when the tables are missing."""
    found: dict[str, list[str]] = {}
    for family in ("inet", "bridge"):
        data = _json(["nft", "-j", "list", "table", family, "berth"])
        if data is None:
            return None
        for item in data.get("nftables", []):
            obj = item.get("set") or item.get("map")
            if obj:
                found[f'{family}/{obj["name"]}'] = [_element(e) for e in obj.get("elem", [])]
    return found


def mounts(under: str) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(under + "/"):
            points.append(point)
    return points


def processes() -> list[dict[str, Any]]:
    procs = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (1, me):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        procs.append({"pid": int(entry.name), "ppid": int(fields[1]), "state": fields[0],
                      "argv": [a.decode(errors="replace") for a in argv if a]})
    return procs


QUERIES = {
    "networks": "SELECT id, name, driver, bridge, ipam, state FROM networks",
    "containers": "SELECT id, name, host_config, state FROM containers",
    "attachments": "SELECT container_id, network_id, endpoint_id, host_ifname, ipv4, ipv6, gateway4, gateway6, state "
                   "FROM attachments",
    "externals": "SELECT network_id, endpoint_id, host_ifname, ipv4, ipv6, state FROM external_endpoints",
}


def store(db: Path) -> dict[str, Any]:
    """Every record berth's checks need, as lists of dicts; ``error`` if the database cannot be read."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as err:
        return {"error": str(err)}
    conn.row_factory = sqlite3.Row
    found: dict[str, Any] = {}
    try:
        for table, sql in QUERIES.items():
            try:
                found[table] = [dict(r) for r in conn.execute(sql)]
            except sqlite3.OperationalError as err:
                if "no such table" not in str(err):
                    return {"error": str(err)}
                found[table] = []
    except sqlite3.Error as err:
        return {"error": str(err)}
    finally:
        conn.close()
    return found


def main(tmp: str) -> None:
    run_netns = Path(tmp) / "run" / "netns"
    netns = sorted(p.name for p in run_netns.iterdir()) if run_netns.is_dir() else []
    json.dump({"store": store(Path(tmp) / "root" / "berth.db"), "links": links(), "nft": nft_elements(), "netns": netns, "mounts": mounts(tmp),
               "processes": processes()}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
