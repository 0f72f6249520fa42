"""Many clients at once: every one gets success or a clear error, and the state stays consistent."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from tests.helpers import inspect, ok

pytestmark = pytest.mark.integration

CLIENTS = 24


def test_parallel_clients_keep_addresses_unique_and_kernel_matching_records(bb):
    ok(bb.berth("network", "create", "--subnet", "10.30.0.0/24", "shared"))
    errors: list[str] = []

    def client(i: int) -> None:
        steps = [
            ("network", "create", f"net{i}"),
            ("run", "-d", "--name", f"c{i}", "--network", "shared", "bb", "sleep", "600"),
            ("network", "connect", f"net{i}", f"c{i}"),
            ("network", "disconnect", f"net{i}", f"c{i}"),
            ("network", "connect", f"net{i}", f"c{i}"),
        ]
        if i % 3 == 0:
            steps += [("rm", "-f", f"c{i}"), ("network", "rm", f"net{i}")]
        for step in steps:
            result = bb.berth(*step)
            if result.returncode != 0:
                errors.append(f"{step}: {result.stderr.strip()}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    shared = inspect(bb, "network", "inspect", "shared")[0]["Containers"]
    addresses = [c["IPv4Address"] for c in shared.values()]
    assert len(addresses) == CLIENTS - len(range(0, CLIENTS, 3))
    assert len(set(addresses)) == len(addresses), Counter(addresses)
    # every live endpoint has exactly one host veth on the right bridge, and there are no others
    endpoints = 0
    for net in inspect(bb, "network", "inspect", *[n for n in ok(bb.berth("network", "ls", "--format", "{{.Name}}")).split()
                                                if n not in ("host", "none")]):
        endpoints += len(net["Containers"])
    veths = [l for l in json.loads(ok(bb.run(["ip", "-j", "link"]))) if l["ifname"].startswith("bveth")]
    assert len(veths) == endpoints
    netns = sorted(p.name for p in (bb.run_root / "netns").iterdir())
    running = sorted(c for c in ok(bb.berth("ps", "-q", "--no-trunc")).split())
    assert netns == running
