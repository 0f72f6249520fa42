"""The CNI reference ``bridge`` plugin with ``host-local`` IPAM (Debian's containernetworking-plugins),
driven exactly as a runtime drives it: one exec per ADD/DEL, the config on stdin, the rest in env.

One untimed ADD/DEL first creates the bridge, so the timed calls, like berth's connect, find their
network in place. Runs inside the throwaway host in a network namespace of its own:
``python -m anchors.cni ROUNDS WORKDIR``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from anchors import Box, Samples, emit, in_box, skip_worker, timed

PLUGINS = Path("/usr/lib/cni")
LABEL = "CNI bridge plugin"


def measure(box: Box, rounds: int) -> Samples:
    return in_box(box, "cni", str(rounds), str(box.tmp), own_netns=True)


def main(rounds: int, work: Path) -> None:
    plugin = PLUGINS / "bridge"
    if not (plugin.exists() and (PLUGINS / "host-local").exists()):
        skip_worker(f"{plugin} or host-local is missing (bench/setup.sh installs containernetworking-plugins)")
    conf = json.dumps({
        "cniVersion": "1.0.0", "name": "benchnet", "type": "bridge", "bridge": "cnibr0", "isGateway": True,
        "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.95.0.0/16",
                                 "dataDir": str(work / f"cni-ipam-{os.getpid()}")},
    }).encode()
    netns = f"cnibench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    env = dict(os.environ, CNI_CONTAINERID="bench", CNI_NETNS=f"/run/netns/{netns}", CNI_IFNAME="eth1",
               CNI_PATH=str(PLUGINS))

    def call(command: str) -> None:
        result = subprocess.run([str(plugin)], input=conf, env=dict(env, CNI_COMMAND=command), capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"CNI {command}: {(result.stdout + result.stderr).decode()[-1000:]}")

    out: Samples = {f"{LABEL} ADD": [], f"{LABEL} DEL": []}
    try:
        call("ADD")
        call("DEL")
        for _ in range(rounds):
            out[f"{LABEL} ADD"].append(timed(lambda: call("ADD")))
            out[f"{LABEL} DEL"].append(timed(lambda: call("DEL")))
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
        subprocess.run(["ip", "link", "del", "cnibr0"], check=False, capture_output=True)
        shutil.rmtree(work / f"cni-ipam-{os.getpid()}", ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
