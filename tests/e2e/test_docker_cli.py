"""The real docker CLI, pointed at berthd, drives berth's networks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.helpers import ok

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed"),
]


def docker(host, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": f"unix://{host.socket}", "DOCKER_CONFIG": str(host.tmp / "docker-config")}
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=60)


def test_docker_network_commands(bb):
    net_id = ok(docker(bb, "network", "create", "--subnet", "10.60.0.0/24", "--label", "k=v", "dnet")).strip()
    assert len(net_id) == 64
    table = ok(docker(bb, "network", "ls")).splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert any(line.split()[1] == "dnet" for line in table[1:])
    data = json.loads(ok(docker(bb, "network", "inspect", "dnet")))
    assert data[0]["IPAM"]["Config"][0]["Subnet"] == "10.60.0.0/24" and data[0]["Labels"] == {"k": "v"}
    assert ok(docker(bb, "network", "inspect", "-f", "{{.Driver}}", "dnet")).strip() == "bridge"
    ok(bb.berth("run", "-d", "--name", "c1", "bb", "sleep", "600"))
    ok(docker(bb, "network", "connect", "--ip", "10.60.0.9", "dnet", "c1"))
    assert "10.60.0.9/24" in ok(bb.berth("exec", "c1", "ip", "-o", "-4", "addr"))
    busy = docker(bb, "network", "rm", "dnet")
    assert busy.returncode != 0 and "has active endpoints" in busy.stderr
    ok(docker(bb, "network", "disconnect", "dnet", "c1"))
    missing = docker(bb, "network", "inspect", "nosuch")
    # the docker CLI words it: 20.10 (Debian's docker.io) "No such network: nosuch", later ones pass ours on
    assert missing.returncode == 1 and ("network nosuch not found" in missing.stderr
                                        or "No such network: nosuch" in missing.stderr), missing.stderr
    ok(docker(bb, "network", "create", "spare"))
    pruned = ok(docker(bb, "network", "prune", "-f"))
    assert "dnet" in pruned and "spare" in pruned
    assert sorted(ok(docker(bb, "network", "ls", "--format", "{{.Name}}")).split()) == ["bridge", "host", "none"]


def test_docker_run_exec_ps_rm_through_berthd(bb):
    assert ok(docker(bb, "run", "--rm", "bb", "echo", "hi")) == "hi\n"
    failed = docker(bb, "run", "--rm", "bb", "sh", "-c", "exit 4")
    assert failed.returncode == 4
    cid = ok(docker(bb, "run", "-d", "--name", "x", "bb", "sleep", "600")).strip()
    assert ok(docker(bb, "exec", "x", "hostname")).strip() == cid[:12]
    assert "x" in ok(docker(bb, "ps", "--format", "{{.Names}}")).split()
    assert ok(docker(bb, "rm", "-f", "x")).strip() == "x"
    assert "bb" in ok(docker(bb, "images"))
