"""Docker's Engine API as an anchor: a Docker daemon (Debian's docker.io: dockerd with its own
containerd, runc) started inside the throwaway host, in a network namespace of its own there; never on
the machine itself, where it would put its bridge and firewall rules into the machine's own network
namespace.

The throwaway host has a fresh /sys, so its cgroup hierarchies are mounted again there; runc then
creates the containers' cgroups under one parent named after the run, which :meth:`Docker.close`
removes once the daemon and its containers are gone. The image is berth's busybox rootfs as a
``docker save`` archive, loaded with ``docker load``. Timed through the same keep-alive API client as
berth: network connect/disconnect of a running container, network create/rm, and create + start of a
container until it runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from anchors import Box, Samples, Skipped, memory, timed
from anchors.berthd import ApiError, Engine

IMAGE = "bb:latest"
NETWORK = "dknet"
# Mount options that are not a cgroup v1 hierarchy's identity (its controllers or name=).
GENERIC_OPTIONS = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "seclabel", "nsdelegate",
                   "memory_recursiveprot", "favordynmods"}


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """The machine's cgroup file systems under /sys/fs/cgroup: (type, mount point, hierarchy options)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, fstype, options, *_ = line.split()
        if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup"):
            keep = ",".join(o for o in options.split(",") if o not in GENERIC_OPTIONS)
            found.append((fstype, point, keep))
    return found


class Docker:
    """dockerd in a throwaway host, with the busybox image, a bridge network and a running probe container."""

    def __init__(self, box: Box, rootfs_tar: Path) -> None:
        from berth.testing.images import docker_save_archive
        from berth.testing.sandbox import ping_socket

        if not (shutil.which("dockerd") and shutil.which("docker")):
            raise Skipped("dockerd or the docker CLI is not installed (bench/setup.sh installs docker.io)")
        self.box = box
        self.dir = box.tmp / "docker"
        self.dir.mkdir()
        self.socket = self.dir / "docker.sock"
        self.cgroup_parent = f"/{box.tmp.name}-docker"  # one name per run: a leftover is recognisable
        self.cgroups = cgroup_mounts()
        self._mount_cgroups()
        self.env = {**box.env(), "DOCKER_HOST": f"unix://{self.socket}"}
        daemon = ["dockerd", "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
                  "--pidfile", str(self.dir / "dockerd.pid"), "-H", f"unix://{self.socket}",
                  "--storage-driver", "vfs", "--cgroup-parent", self.cgroup_parent]
        with open(self.dir / "dockerd.log", "wb") as log:
            # A network namespace of its own: Docker's bridge and iptables chains must not meet berthd's
            # (berth would add itself to DOCKER-USER, and br_netfilter would run berth's bridged traffic
            # through Docker's FORWARD chain), and they vanish with the daemon.
            self.daemon = box.popen(["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "-",
                                     *daemon], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not ping_socket(self.socket):
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / "dockerd.log").read_text(errors="replace").strip().splitlines()[-3:]
                self.close()
                raise Skipped(f"dockerd did not start in the throwaway host: {' / '.join(tail)}")
            time.sleep(0.1)
        archive = docker_save_archive(self.dir / "bb-image.tar", [rootfs_tar.read_bytes()], [IMAGE])
        self.cli("load", "-i", str(archive))
        self.engine = Engine(self.socket)
        self.network = self.engine.call("POST", "/networks/create",
                                        {"Name": NETWORK, "IPAM": {"Config": [{"Subnet": "10.89.0.0/16"}]}})["Id"]
        self.probe = self.start("dkprobe")
        self.started: list[str] = []

    def _mount_cgroups(self) -> None:
        script = ["set -e"]
        if not any(point == "/sys/fs/cgroup" for _, point, _ in self.cgroups):
            script.append("mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup")
        for fstype, point, options in self.cgroups:
            script.append(f"mkdir -p {point} && mount -t {fstype} {'-o ' + options if options else ''} cgroup {point}")
        result = self.box.run(["sh", "-c", "\n".join(script)])
        if result.returncode != 0:
            raise Skipped(f"cannot mount cgroups in the throwaway host: {result.stderr.strip()}")

    def cli(self, *args: str) -> None:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {result.stderr.strip()}")

    def start(self, name: str) -> str:
        made = self.engine.call("POST", f"/containers/create?name={name}",
                                {"Image": IMAGE, "Cmd": ["sleep", "1000000"], "HostConfig": {"NetworkMode": "bridge"}})
        self.engine.call("POST", f"/containers/{made['Id']}/start")
        return made["Id"]

    # -- the measurements ------------------------------------------------------------------------

    def attach_rounds(self, rounds: int) -> Samples:
        body = {"Container": self.probe}
        out: Samples = {"Docker API attach": [], "Docker API detach": []}
        for _ in range(rounds):
            out["Docker API attach"].append(
                timed(lambda: self.engine.call("POST", f"/networks/{self.network}/connect", body)))
            out["Docker API detach"].append(
                timed(lambda: self.engine.call("POST", f"/networks/{self.network}/disconnect", body)))
        return out

    def network_rounds(self, rounds: int) -> Samples:
        out: Samples = {"Docker API network create": [], "Docker API network rm": []}
        for i in range(rounds):
            made: dict[str, str] = {}
            out["Docker API network create"].append(
                timed(lambda: made.update(self.engine.call("POST", "/networks/create", {"Name": f"dn{i}"}))))
            out["Docker API network rm"].append(timed(lambda: self.engine.call("DELETE", f"/networks/{made['Id']}")))
        return out

    def run_rounds(self, rounds: int) -> Samples:
        """``run -d`` until running (create + start), on the default bridge; the containers keep running
        until :meth:`record_memory` has counted them."""
        out: Samples = {"Docker API run -d": []}
        for _ in range(rounds):
            name = f"dkrun{len(self.started)}"
            out["Docker API run -d"].append(timed(lambda: self.started.append(self.start(name))))
        return out

    def record_memory(self, into: dict[str, list[float]]) -> None:
        """Per running container: its containerd-shim with the container's processes (PSS and RSS, MiB),
        and dockerd with containerd, as berth's rows count a monitor with its container and berthd."""
        snap = memory.take(self.box)
        containers = snap["docker_containers"]
        if containers:
            into.setdefault(f"Docker per container PSS, {len(containers)} containers", []).extend(
                pss / 1024 for pss, _ in containers)
            into.setdefault(f"Docker per container RSS, {len(containers)} containers", []).extend(
                rss / 1024 for _, rss in containers)
        into.setdefault(f"dockerd + containerd RSS, {len(containers)} containers", []).append(
            snap["docker_daemons_rss"] / 1024)

    # -- cleaning up -----------------------------------------------------------------------------

    def close(self) -> None:
        """Containers, daemon, then the cgroups runc made (they outlive a namespace: they are the machine's)."""
        engine = getattr(self, "engine", None)
        if engine is not None:
            try:
                for c in engine.call("GET", "/containers/json?all=1"):
                    engine.call("DELETE", f"/containers/{c['Id']}?force=1")
            except (ApiError, OSError):
                pass  # the daemon is stopped below either way; its containers die with their shims
            engine.close()
        pidfile = self.dir / "dockerd.pid"
        if pidfile.exists():
            self.box.run(["sh", "-c", f'kill -TERM "$(cat {pidfile})"'])
            deadline = time.monotonic() + 30
            while pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            if pidfile.exists():
                self.box.run(["sh", "-c", f'kill -KILL "$(cat {pidfile})"'])
        self._remove_cgroups()

    def _remove_cgroups(self) -> None:
        """Every cgroup under the run's parent, in every hierarchy, deepest first: a process still in one
        (only this daemon's containers can be) is killed by its pid, then the empty cgroup is removed."""
        for _, point, _ in self.cgroups:
            top = Path(point) / self.cgroup_parent.lstrip("/")
            deadline = time.monotonic() + 10
            while top.is_dir() and time.monotonic() < deadline:
                for group in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                    try:
                        for pid in (group / "cgroup.procs").read_text().split():
                            os.kill(int(pid), signal.SIGKILL)
                        group.rmdir()
                    except OSError:
                        time.sleep(0.05)  # a killed process is still leaving it

