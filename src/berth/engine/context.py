"""What every engine part shares: the store, the kernel, drivers, address books, paths and the lock."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.config import Paths
from berth.engine.addresses import NetworkAddresses
from berth.store.sqlite import Store


@dataclass
class EngineContext:
    paths: Paths
    store: Store
    kernel: Any
    runtime: Any
    images: Any
    drivers: dict[str, Any]
    dns: Any = None  # berth.dns.server.DnsServer, or None (unit tests, or DNS disabled)
    resolv_conf: Path = Path("/etc/resolv.conf")
    hosts_file: Path = Path("/etc/hosts")
    # Where CNI network configurations are discovered (berthd --cni-config-dir); None: no discovery.
    cni_config_dir: Path | None = None
    # One lock serialises every change: berthd is the only writer, and a change spans store and kernel.
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Address books of active networks, rebuilt from the store at start-up.
    addresses: dict[str, NetworkAddresses] = field(default_factory=dict)
    # Wakes ``wait`` callers whenever a container changes state.
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def host_resolv_text(self) -> str:
        try:
            return self.resolv_conf.read_text()
        except OSError:
            return ""
