"""The engine facade berthd serves: one object owning the store, the kernel and the runtime."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from berth.config import Paths
from berth.drivers.bridge import BridgeDriver
from berth.drivers.cni import CniDriver
from berth.engine.containers import Containers
from berth.engine.context import EngineContext
from berth.engine.external import ExternalEndpoints
from berth.engine.networks import Networks
from berth.engine.reconcile import Report, reconcile
from berth.engine.watcher import ExitWatcher
from berth.firewall import rules
from berth.store.sqlite import Store

log = logging.getLogger("berth.engine")


class _BuiltinDriver:
    """``host`` and ``null``: networks that own no kernel objects (the mode decides the sandbox)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def validate(self, network: Any) -> None:
        pass

    def create_network(self, *args: Any) -> None:
        pass

    def delete_network(self, *args: Any) -> None:
        pass


class Engine:
    def __init__(self, paths: Paths, kernel: Any, runtime: Any, images: Any, *, store: Store | None = None,
                 resolv_conf: Path = Path("/etc/resolv.conf"), hosts_file: Path = Path("/etc/hosts"),
                 dns: Any = None, cni_config_dir: Path | None = None) -> None:
        store = store or Store(paths.db)
        drivers = {"bridge": BridgeDriver(kernel), "host": _BuiltinDriver("host"), "null": _BuiltinDriver("null"),
                   "cni": CniDriver(store)}
        self.ctx = EngineContext(
            paths=paths, store=store, kernel=kernel, runtime=runtime, images=images,
            drivers=drivers, resolv_conf=resolv_conf, hosts_file=hosts_file, dns=dns, cni_config_dir=cni_config_dir,
        )
        self.networks = Networks(self.ctx)
        self.containers = Containers(self.ctx, self.networks)
        self.external = ExternalEndpoints(self.ctx, self.networks)
        self.watcher = ExitWatcher(self.containers.on_exit, runtime.pidfd)
        self.containers.watch = self.watcher.watch

    def start(self) -> Report:
        """Install berth's fixed firewall rules, create the built-in networks, reconcile, watch exits."""
        kernel = self.ctx.kernel
        kernel.nft(rules.base_ruleset())
        kernel.nft_text(rules.publish_text())
        kernel.sysctl_set("net.ipv4.ip_forward", "1")
        for key in ("net.ipv6.conf.all.forwarding",):
            try:
                kernel.sysctl_set(key, "1")
            except Exception as err:  # noqa: BLE001 - IPv6 may be disabled on the host; IPv4 still works
                log.warning("cannot enable IPv6 forwarding: %s", err)
        if self.ctx.dns is not None:
            self.ctx.dns.start()
        with self.ctx.lock:
            self.networks.ensure_builtins()
            self.networks.sync_cni_dir()
        self.watcher.start()
        report = reconcile(self.networks, self.containers, self.external)
        log.info("reconciled: %s", {k: v for k, v in report.as_dict().items() if v})
        return report

    def reconcile(self) -> Report:
        return reconcile(self.networks, self.containers, self.external)

    def close(self) -> None:
        self.watcher.stop()
        self.ctx.runtime.close()
        if self.ctx.dns is not None:
            self.ctx.dns.stop()
        self.ctx.store.close()
