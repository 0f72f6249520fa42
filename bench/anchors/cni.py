"""CNI plugins driven exactly as a runtime drives them: one exec per ADD/DEL, the config on stdin, the
rest in env. Two of them: the reference ``bridge`` plugin with ``host-local`` IPAM (Debian's
containernetworking-plugins), and ``berth-cni``, which attaches through berthd.

One untimed ADD/DEL first creates the bridge (berth-cni: the berth network), so the timed calls, like
berth's connect, find their network in place. Runs inside the throwaway host, the reference plugin in a
network namespace of its own, berth-cni beside berthd (which does its work):
``python -m anchors.cni bridge|berth ROUNDS WORKDIR [BERTHD_SOCKET]``.
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
BERTH_LABEL = "berth-cni"


def measure(box: Box, rounds: int) -> Samples:
    return in_box(box, "cni", "bridge", str(rounds), str(box.tmp), own_netns=True)


def measure_berth(box: Box, rounds: int) -> Samples:
    return in_box(box, "cni", "berth", str(rounds), str(box.tmp), str(box.socket))


def reference(work: Path) -> tuple[Path, dict, str]:
    """The bridge plugin, its config (a subnet and IPAM state of its own) and its row label."""
    plugin = PLUGINS / "bridge"
    if not (plugin.exists() and (PLUGINS / "host-local").exists()):
        skip_worker(f"{plugin} or host-local is missing (bench/setup.sh installs containernetworking-plugins)")
    return plugin, {"cniVersion": "1.0.0", "name": "benchnet", "type": "bridge", "bridge": "cnibr0",
                    "isGateway": True, "ipMasq": True,
                    "ipam": {"type": "host-local", "subnet": "10.95.0.0/16",
                             "dataDir": str(work / f"cni-ipam-{os.getpid()}")}}, LABEL


def berth_cni(socket: str) -> tuple[Path, dict, str]:
    """This tree's ``berth-cni`` (next to the interpreter, not a version manager's shim) and its config."""
    plugin = Path(sys.executable).with_name("berth-cni")
    if not plugin.exists():
        skip_worker(f"berth-cni is not installed next to {sys.executable} (scripts/install installs it)")
    return plugin, {"cniVersion": "1.0.0", "name": "cninet", "type": "berth-cni", "subnet": "10.87.0.0/16",
                    "socket": socket}, BERTH_LABEL


def main(kind: str, rounds: int, work: Path, socket: str = "") -> None:
    plugin, config, label = reference(work) if kind == "bridge" else berth_cni(socket)
    conf = json.dumps(config).encode()
    netns = f"cnibench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    env = dict(os.environ, CNI_CONTAINERID=f"bench{os.getpid()}", CNI_NETNS=f"/run/netns/{netns}",
               CNI_IFNAME="eth1", CNI_PATH=str(PLUGINS))

    def call(command: str) -> None:
        result = subprocess.run([str(plugin)], input=conf, env=dict(env, CNI_COMMAND=command), capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"{label} {command}: {(result.stdout + result.stderr).decode()[-1000:]}")

    out: Samples = {f"{label} ADD": [], f"{label} DEL": []}
    try:
        call("ADD")
        call("DEL")
        for _ in range(rounds):
            out[f"{label} ADD"].append(timed(lambda: call("ADD")))
            out[f"{label} DEL"].append(timed(lambda: call("DEL")))
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
        if kind == "bridge":
            subprocess.run(["ip", "link", "del", "cnibr0"], check=False, capture_output=True)
            shutil.rmtree(work / f"cni-ipam-{os.getpid()}", ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), *sys.argv[4:])
