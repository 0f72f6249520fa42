"""Bring the kernel and the store back into agreement after a crash, a restart or a reboot.

Runs at every berthd start (and on demand). The store says what should exist; berth's marks
(link ifalias ``berth:<network>[:<endpoint>]``, netns files under the run root) say what berth made.
Interrupted work (records still ``pending`` or ``removing``) is undone, missing kernel objects of
active networks are re-created, and marked objects that no record claims are removed. Nothing
unmarked is ever touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from berth import config
from berth.engine.containers import Containers, mode_kind
from berth.engine.external import ExternalEndpoints
from berth.engine.networks import Networks
from berth.engine.ports import from_records
from berth.firewall import rules
from berth.ipam import config as ipam_config
from berth.model import Attachment
from berth.store.sqlite import cleared

log = logging.getLogger("berth.reconcile")


@dataclass
class Report:
    """What one reconciliation changed, for the log and ``berth system reconcile``."""

    removed_networks: list[str] = field(default_factory=list)
    restored_networks: list[str] = field(default_factory=list)
    exited_containers: list[str] = field(default_factory=list)
    adopted_containers: list[str] = field(default_factory=list)
    removed_links: list[str] = field(default_factory=list)
    removed_netns: list[str] = field(default_factory=list)
    released_external: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return dict(self.__dict__)


def reconcile(networks: Networks, containers: Containers, external: ExternalEndpoints | None = None) -> Report:
    ctx = networks.ctx
    report = Report()
    with ctx.lock:
        _finish_interrupted_networks(networks, report)
        networks.load_addresses()
        for net in networks.all():
            try:
                networks.restore_kernel(net)
                networks.serve_dns(net)
                report.restored_networks.append(net.name)
            except Exception as err:  # noqa: BLE001 - report and go on with the others
                report.errors.append(f"restoring network {net.name}: {err}")
        _reconcile_containers(containers, report)
        _release_orphan_cni_results(containers, report)
        if external is not None:  # endpoints in namespaces berth does not own: released, namespaces untouched
            report.released_external.extend(external.reconcile(report.errors))
        _remove_unclaimed_links(networks, containers, report)
        _remove_unclaimed_netns(containers, report)
    for line in report.errors:
        log.error("reconcile: %s", line)
    return report


def _finish_interrupted_networks(networks: Networks, report: Report) -> None:
    ctx = networks.ctx
    states = ctx.store.network_states()
    for net in ctx.store.networks(state=None):
        if states.get(net.id) in ("pending", "removing"):
            subnets = [c.subnet for c in ipam_config.normalize(net.ipam.get("Config") or [], enable_ipv6=True)]
            try:
                if net.driver in ctx.drivers and net.bridge:
                    ctx.drivers[net.driver].delete_network(net, subnets)
            except Exception as err:  # noqa: BLE001
                report.errors.append(f"removing interrupted network {net.name}: {err}")
            with ctx.store.transaction():
                for a in ctx.store.attachments(network_id=net.id):
                    ctx.store.remove_attachment(a.container_id, a.network_id)
                ctx.store.remove_network(net.id)
            report.removed_networks.append(net.name)


def _reconcile_containers(containers: Containers, report: Report) -> None:
    ctx = containers.ctx
    published: list[rules.Published] = []
    for c in ctx.store.containers():
        if not c.state.running and (left := ctx.runtime.leftover(c.id)) is not None:
            # spawned by a berthd that died before recording it running: nothing may keep it alive
            containers._kill_quietly(left.pid)
            containers._kill_quietly(left.monitor_pid)
            report.exited_containers.append(c.name)
        alive = c.state.running and ctx.runtime.monitor_alive(c.id, c.state.monitor_pid)
        kind = mode_kind(containers.mode_network(c))
        netns_ok = kind not in ("network", "none") or ctx.kernel.netns_exists(containers.netns_path(c))
        for a, state in [(a, s) for a, s in ctx.store.attachment_states() if a.container_id == c.id]:
            if not a.active:
                if state != "active":
                    ctx.store.set_endpoint(a, state="active")
                continue
            if alive and netns_ok and state == "active":
                ctx.addresses[a.network_id].claim(a.ipv4, a.ipv6)
                containers.sandboxes.register_name(c, a)
                continue
            if ctx.store.cni_result(a.container_id, a.network_id) is not None:
                _release_cni(containers, a, netns_ok, report)
            elif alive and netns_ok and a.ifname:
                ctx.kernel.netns_link_delete(containers.netns_path(c), a.ifname)
            if state == "removing":
                ctx.store.remove_attachment(a.container_id, a.network_id)
            else:
                ctx.store.set_endpoint(cleared(a), state="active")
        if c.state.running and alive and netns_ok:
            published += from_records(c.state.ports)
            containers.watch(c.id, c.state.monitor_pid)
            report.adopted_containers.append(c.name)
        elif c.state.running:
            if alive:
                containers._kill_quietly(c.state.pid)  # its network is gone (reboot-like loss): it cannot be kept
            containers.on_exit(c.id)
            report.exited_containers.append(c.name)
    # Exactly the running containers' ports: restored if berth's table was lost while they ran, and
    # dropped if a crash left those of a container that never started.
    ctx.kernel.nft(rules.published_replace(published))


def _release_cni(containers: Containers, a: Attachment, netns_ok: bool, report: Report) -> None:
    """DEL a CNI endpoint that must not stay: in its namespace if that still exists, else without."""
    netns = containers.ctx.paths.netns_path(a.container_id)
    try:
        if netns_ok:
            containers.sandboxes.unplug(netns, a, [])
        else:
            containers.sandboxes.forget(netns, a)
    except Exception as err:  # noqa: BLE001 - the cache stays; the next reconcile tries again
        report.errors.append(f"releasing CNI endpoint of {a.container_id[:12]}: {err}")


def _release_orphan_cni_results(containers: Containers, report: Report) -> None:
    """Cached CNI endpoints no active attachment claims (a crash between DEL and forgetting it)."""
    ctx = containers.ctx
    active = {(a.container_id, a.network_id) for a in ctx.store.attachments() if a.active}
    networks = {net.id for net in ctx.store.networks(state=None)}
    for container_id, network_id in ctx.store.cni_results():
        if (container_id, network_id) in active:
            continue
        if network_id not in networks:
            ctx.store.remove_cni_result(container_id, network_id)
            continue
        _release_cni(containers, Attachment(container_id=container_id, network_id=network_id, seq=0), False, report)


def _remove_unclaimed_links(networks: Networks, containers: Containers, report: Report) -> None:
    ctx = networks.ctx
    bridges = {net.id: net.bridge for net in networks.all()}
    endpoints = {a.endpoint_id for a in ctx.store.attachments() if a.active}
    endpoints |= {ep.attachment.endpoint_id for ep, _ in ctx.store.externals()}
    for link in ctx.kernel.links(config.KERNEL_MARK_PREFIX):
        parts = (link.alias or "").split(":")
        if len(parts) == 2:
            keep = bridges.get(parts[1]) == link.name
        elif len(parts) == 3:
            keep = parts[2] in endpoints
        else:
            keep = False
        if not keep:
            try:
                ctx.kernel.link_delete(link.name)
                report.removed_links.append(link.name)
            except Exception as err:  # noqa: BLE001
                report.errors.append(f"removing stale link {link.name}: {err}")


def _remove_unclaimed_netns(containers: Containers, report: Report) -> None:
    ctx = containers.ctx
    directory = ctx.paths.netns
    if not directory.is_dir():
        return
    running = {c.id for c in ctx.store.containers() if c.state.running}
    for path in directory.iterdir():
        if path.name not in running:
            try:
                ctx.kernel.netns_delete(path)
                report.removed_netns.append(path.name)
            except Exception as err:  # noqa: BLE001
                report.errors.append(f"removing stale network namespace {path.name}: {err}")
