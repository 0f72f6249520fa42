"""Paths, names and defaults shared by every layer.

A ``Paths`` value is derived from two roots so that tests (and several berth instances) can run side by
side: the state root (``--root`` / ``BERTH_ROOT``, default ``/var/lib/berth``) holds what must survive a
reboot, the run root (``--run-root`` / ``BERTH_RUN``, default ``/run/berth``) what must not.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/var/lib/berth"
DEFAULT_RUN = "/run/berth"

DEFAULT_BRIDGE_NAME = "berth0"
DEFAULT_NETWORK = "bridge"
BUILTIN_NETWORKS = ("bridge", "host", "none")
USER_BRIDGE_PREFIX = "berth-"
HOST_VETH_PREFIX = "bveth"
KERNEL_MARK_PREFIX = "berth:"
DEFAULT_MTU = 1500
LINUX_BRIDGE_MAX_PORTS = 1023

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

# Docker's default local address pools, in Docker's order: (base, size of each subnet).
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)
# berth does better than Docker 20.10 here: --ipv6 without --subnet takes a ULA /64 from this pool.
DEFAULT_POOLS_V6: tuple[tuple[str, int], ...] = (("fd42:b37e::/48", 64),)


@dataclass(frozen=True)
class Paths:
    """Every file and directory berth uses, derived from the state and run roots."""

    root: Path
    run: Path

    @classmethod
    def from_env(cls, root: str | None = None, run: str | None = None) -> "Paths":
        return cls(
            Path(root or os.environ.get("BERTH_ROOT") or DEFAULT_ROOT),
            Path(run or os.environ.get("BERTH_RUN") or DEFAULT_RUN),
        )

    @property
    def db(self) -> Path:
        return self.root / "berth.db"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def containers(self) -> Path:
        """Per-container persistent files: config, logs, hosts/resolv.conf/hostname, overlay upper dir."""
        return self.root / "containers"

    @property
    def socket(self) -> Path:
        return self.run / "berth.sock"

    @property
    def pidfile(self) -> Path:
        return self.run / "berthd.pid"

    @property
    def logfile(self) -> Path:
        return self.run / "berthd.log"

    @property
    def netns(self) -> Path:
        """Bind-mounted network namespaces, one file per container id."""
        return self.run / "netns"

    @property
    def monitors(self) -> Path:
        """Runtime files of running containers: monitor socket, exit status."""
        return self.run / "containers"

    def container_dir(self, container_id: str) -> Path:
        return self.containers / container_id

    def container_run_dir(self, container_id: str) -> Path:
        return self.monitors / container_id

    def netns_path(self, container_id: str) -> Path:
        return self.netns / container_id


def default_socket() -> str:
    """The socket a client should talk to: ``BERTH_HOST`` (``unix://…``), else ``<run>/berth.sock``."""
    host = os.environ.get("BERTH_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return str(Paths.from_env().socket)
