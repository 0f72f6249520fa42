"""netavark (Podman's network backend, Debian package ``netavark``): ``setup`` and ``teardown`` of one
container on a bridge network, as Podman calls them (network and container JSON on stdin).

A second container stays attached throughout so that, like berth's connect, the timed setup finds the
bridge in place (netavark removes a bridge when its last container leaves). Runs inside the throwaway
host in a network namespace of its own: ``python -m anchors.netavark ROUNDS WORKDIR``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from anchors import Box, Samples, emit, in_box, skip_worker, timed

CANDIDATES = ("/usr/lib/podman/netavark", "/usr/libexec/podman/netavark")
LABEL = "netavark"


def binary() -> str | None:
    found = [p for p in CANDIDATES if os.access(p, os.X_OK)]
    return found[0] if found else shutil.which("netavark")


def measure(box: Box, rounds: int) -> Samples:
    return in_box(box, "netavark", str(rounds), str(box.tmp), own_netns=True)


def request(container: str, address: str) -> bytes:
    network = {"name": "nvnet", "id": "b" * 64, "driver": "bridge", "network_interface": "nvbr0",
               "subnets": [{"subnet": "10.94.0.0/16", "gateway": "10.94.0.1"}],
               "ipv6_enabled": False, "internal": False, "dns_enabled": False}
    return json.dumps({"container_id": container * 64, "container_name": f"bench-{container}",
                       "networks": {"nvnet": {"interface_name": "eth1", "static_ips": [address]}},
                       "network_info": {"nvnet": network}}).encode()


def main(rounds: int, work: Path) -> None:
    exe = binary()
    if exe is None:
        skip_worker("netavark is not installed (bench/setup.sh installs Debian's netavark)")
    config = work / f"netavark-{os.getpid()}"
    holder, probe = f"nvhold{os.getpid()}", f"nvprobe{os.getpid()}"

    def call(verb: str, netns: str, data: bytes) -> None:
        result = subprocess.run([exe, "--config", str(config), verb, f"/run/netns/{netns}"], input=data,
                                capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"netavark {verb}: {(result.stdout + result.stderr).decode()[-1000:]}")

    for ns in (holder, probe):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    out: Samples = {f"{LABEL} setup": [], f"{LABEL} teardown": []}
    hold, one = request("a", "10.94.0.3"), request("c", "10.94.0.2")
    try:
        call("setup", holder, hold)
        for _ in range(rounds):
            out[f"{LABEL} setup"].append(timed(lambda: call("setup", probe, one)))
            out[f"{LABEL} teardown"].append(timed(lambda: call("teardown", probe, one)))
        call("teardown", holder, hold)
    finally:
        for ns in (holder, probe):
            subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(config, ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
