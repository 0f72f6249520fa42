"""Containers: create, start, stop, kill, remove, wait, connect/disconnect, exec, and exit handling."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from berth import config
from berth.engine import names
from berth.engine.context import EngineContext
from berth.engine.networks import Networks
from berth.engine.ports import Ports, as_records, from_records
from berth.engine.sandbox import Sandboxes, cni_runtime
from berth.engine.txn import Undo, fault
from berth.errors import BerthError, Conflict, Forbidden, InvalidParameter, NotFound, NotModified
from berth.firewall import rules
from berth.model import Attachment, Container, ContainerState, Network, new_id, now_rfc3339
from berth.runtime.spawn import ContainerSpec
from berth.store.sqlite import Store, cleared

log = logging.getLogger("berth.containers")

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_MSG = "container cannot be disconnected from host network or connected to host network"
NONE_MSG = "container cannot be connected to multiple networks with one of the networks in private (none) mode"
SHARED_MSG = "container sharing network namespace with another container or host cannot be connected to any other network"


@dataclass
class PendingAttach:
    """A client that attached before start: it receives the monitor connection once the container exists."""

    container_id: str
    flags: dict[str, bool]
    ready: threading.Event = field(default_factory=threading.Event)
    sock: Any = None
    error: BaseException | None = None


@dataclass
class ExecRecord:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    workdir: str
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    running: bool = False
    exit_code: int | None = None
    pid: int = 0


def mode_kind(mode: str) -> str:
    """``host``, ``none``, ``container`` or ``network`` (the default bridge or a user network)."""
    if mode in ("host", "none"):
        return mode
    if mode.startswith("container:"):
        return "container"
    return "network"


class Containers:
    def __init__(self, ctx: EngineContext, networks: Networks) -> None:
        self.ctx = ctx
        self.networks = networks
        self.sandboxes = Sandboxes(ctx)
        self.ports = Ports(ctx)
        self.pending: dict[str, list[PendingAttach]] = {}
        self.execs: dict[str, ExecRecord] = {}
        self.exits: dict[str, int] = {}  # exit generation per container, for wait?condition=next-exit
        # last exit code of recently removed containers: a ``--rm`` run's waiter learns it after removal
        self.removed_codes: dict[str, int] = {}
        self.watch: Callable[[str, int], None] = lambda cid, pid: None

    # -- lookup ---------------------------------------------------------------------------------

    def all(self) -> list[Container]:
        return self.ctx.store.containers()

    def resolve(self, ref: str) -> Container:
        """Docker's order: full id, exact name (with or without '/'), unique id prefix."""
        ref = ref or ""
        items = self.all()
        for c in items:
            if c.id == ref:
                return c
        name = ref.lstrip("/")
        for c in items:
            if c.name == name:
                return c
        prefixed = [c for c in items if ref and c.id.startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise InvalidParameter(f"multiple containers found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def get(self, container_id: str) -> Container:
        c = self.ctx.store.container(container_id)
        if c is None:
            raise NotFound(f"No such container: {container_id}")
        return c

    def attachments(self, c: Container) -> list[Attachment]:
        return self.ctx.store.attachments(container_id=c.id)

    def mode_network(self, c: Container) -> str:
        mode = c.network_mode
        return "bridge" if mode == "default" else mode

    # -- create ---------------------------------------------------------------------------------

    def create(self, name: str | None, body: dict[str, Any]) -> Container:
        host_config = dict(body.get("HostConfig") or {})
        net_config = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        with self.ctx.lock:
            taken = {c.name for c in self.all()}
            if name:
                name = name.lstrip("/")
                if not config.NAME_RE.match(name):
                    raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
                for c in self.all():
                    if c.name == name:
                        raise Conflict(
                            f'Conflict. The container name "/{name}" is already in use by container "{c.id}". '
                            "You have to remove (or rename) that container to be able to reuse that name."
                        )
            else:
                name = names.generate(taken)
            image_ref = body.get("Image") or ""
            rootfs = host_config.get("BerthRootfs") or ""
            if rootfs:
                if not Path(rootfs).is_dir():
                    raise InvalidParameter(f"rootfs {rootfs} is not a directory")
                image_id, image_config = "", {}
                image_ref = image_ref or rootfs
            else:
                if not image_ref:
                    raise InvalidParameter("No image specified")
                image = self.ctx.images.get(image_ref)
                image_id, image_config = image.id, image.config
            cfg = dict(body)
            cfg.pop("HostConfig", None)
            cfg.pop("NetworkingConfig", None)
            entrypoint = cfg.get("Entrypoint") or image_config.get("Entrypoint") or []
            cmd = cfg.get("Cmd") or (image_config.get("Cmd") if not cfg.get("Entrypoint") else None) or []
            if isinstance(entrypoint, str):
                entrypoint = [entrypoint]
            if isinstance(cmd, str):
                cmd = [cmd]
            if not entrypoint and not cmd:
                raise InvalidParameter("No command specified")
            cfg["Entrypoint"] = entrypoint or None
            cfg["Cmd"] = cmd
            cfg["Image"] = image_ref
            cfg["Env"] = _merge_env(image_config.get("Env") or [], cfg.get("Env") or [])
            cfg["WorkingDir"] = cfg.get("WorkingDir") or image_config.get("WorkingDir") or ""
            mode = host_config.get("NetworkMode") or "default"
            host_config["NetworkMode"] = mode
            network, endpoint = self._plan_network(mode, cfg, host_config, net_config)
            c = Container(
                id=new_id(), name=name, image=image_ref, image_id=image_id, created=now_rfc3339(),
                config=cfg, host_config=host_config,
            )
            with self.ctx.store.transaction():
                self.ctx.store.add_container(c)
                if network is not None:
                    self.ctx.store.add_attachment(self._attachment(c, network, endpoint, 0), state="active")
            return c

    def _plan_network(self, mode: str, cfg: dict[str, Any], host_config: dict[str, Any],
                      net_config: dict[str, Any]) -> tuple[Network | None, dict[str, Any]]:
        """Docker's network-mode rules, checked before anything is recorded."""
        if len(net_config) > 1:
            raise InvalidParameter(
                "Container cannot be connected to network endpoints: " + ", ".join(net_config)
            )
        kind = mode_kind(mode)
        if kind == "container":
            target = mode.split(":", 1)[1]
            if cfg.get("Hostname"):
                raise InvalidParameter("conflicting options: hostname and the network mode")
            if host_config.get("PortBindings") or host_config.get("PublishAllPorts"):
                raise InvalidParameter("conflicting options: port publishing and the container type network mode")
            if host_config.get("Dns"):
                raise InvalidParameter("conflicting options: dns and the network mode")
            if cfg.get("MacAddress"):
                raise InvalidParameter("conflicting options: mac-address and the network mode")
            if host_config.get("ExtraHosts"):
                raise InvalidParameter("conflicting options: custom host-to-IP mapping and the network mode")
            if cfg.get("ExposedPorts"):
                raise InvalidParameter("conflicting options: port exposing and the container type network mode")
            if net_config:
                raise InvalidParameter(SHARED_MSG)
            self.resolve(target)
            return None, {}
        if kind in ("host", "none"):
            for ep in net_config.values():
                ep = ep or {}
                if ep.get("Aliases"):
                    raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
                if any((ep.get("IPAMConfig") or {}).get(k) for k in ("IPv4Address", "IPv6Address")):
                    raise InvalidParameter("user specified IP address is supported on user defined networks only")
            return None, {}
        net = self.networks.resolve("bridge" if mode == "default" else mode)
        if net.driver in ("host", "null"):
            return None, {}
        endpoint = next(iter(net_config.values()), None) or {}
        self._check_endpoint_request(net, endpoint)
        return net, endpoint

    def _check_endpoint_request(self, net: Network, endpoint: dict[str, Any]) -> None:
        ipam = endpoint.get("IPAMConfig") or {}
        static = ipam.get("IPv4Address") or ipam.get("IPv6Address")
        if net.builtin:
            if static:
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
            if endpoint.get("Aliases"):
                raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
        elif static:
            if not net.user_subnets:
                raise InvalidParameter(
                    "user specified IP address is supported only when connecting to networks with user configured subnets"
                )
            self._check_static(net, ipam)

    def _check_static(self, net: Network, ipam: dict[str, Any]) -> None:
        """Refuse an address outside every subnet now, rather than at start."""
        from ipaddress import ip_address

        book = self.ctx.addresses.get(net.id)
        for key in ("IPv4Address", "IPv6Address"):
            value = ipam.get(key)
            if not value:
                continue
            try:
                addr = ip_address(value)
            except ValueError:
                raise InvalidParameter(f"invalid {key}: {value}") from None
            if book is not None and not any(addr in cfg.subnet for cfg in book.subnets):
                raise InvalidParameter(f"Invalid address {addr}: It does not belong to any of this network's subnets")

    def _attachment(self, c: Container, net: Network, endpoint: dict[str, Any], seq: int) -> Attachment:
        ipam = endpoint.get("IPAMConfig") or {}
        return Attachment(
            container_id=c.id, network_id=net.id, seq=seq, aliases=tuple(endpoint.get("Aliases") or ()),
            ipv4_request=ipam.get("IPv4Address") or "", ipv6_request=ipam.get("IPv6Address") or "",
        )

    # -- start ----------------------------------------------------------------------------------

    def netns_path(self, c: Container) -> Path:
        return self.ctx.paths.netns_path(c.id)

    def sandbox_netns(self, c: Container) -> Path | None:
        """The netns a running container lives in (its own, its target's, or None for the host's)."""
        mode = self.mode_network(c)
        kind = mode_kind(mode)
        if kind == "host":
            return None
        if kind == "container":
            target = self.resolve(mode.split(":", 1)[1])
            return self.sandbox_netns(target)
        return self.netns_path(c)

    def start(self, ref: str) -> Container:
        with self.ctx.lock:
            c = self.resolve(ref)
            if c.state.running:
                raise NotModified("container already started")
            mode = self.mode_network(c)
            kind = mode_kind(mode)
            published: list[rules.Published] = []
            with Undo() as undo:
                netns: Path | None
                if kind == "container":
                    target = self.resolve(mode.split(":", 1)[1])
                    if target.id == c.id:
                        raise InvalidParameter("cannot join own network")
                    if not target.state.running:
                        raise Conflict(f"cannot join network of a non running container: {target.id}")
                    netns = self.sandbox_netns(target)
                    etc_owner = target
                elif kind == "host":
                    netns, etc_owner = None, c
                else:
                    netns, etc_owner = self.netns_path(c), c
                    netns.parent.mkdir(parents=True, exist_ok=True)
                    self.ctx.kernel.netns_create(netns)
                    undo.push("network namespace", self.ctx.kernel.netns_delete, netns)
                    fault("start-netns")
                    active: list[Attachment] = []
                    runtime = cni_runtime(c)
                    for a in self.attachments(c):
                        ep = self.sandboxes.plug(netns, a, active, undo, runtime=runtime)
                        undo.push("endpoint record", self.ctx.store.set_endpoint, cleared(a), "active")
                        active.append(ep)
                    published = self._publish(c, active, undo)
                    if etc_owner is c:
                        self.sandboxes.write_etc(c, active, kind)
                if kind == "host":
                    self.sandboxes.write_etc(c, [], kind)
                fault("start-network-ready")
                spec = self._spec(c, etc_owner, netns, kind)
                started = self.ctx.runtime.start(spec)
                undo.push("container process", self._kill_quietly, started.pid)
                fault("start-spawned")
                with self.ctx.store.transaction():
                    for a in self.attachments(c):
                        if a.active:
                            self.ctx.store.set_endpoint(a, state="active")
                    state = ContainerState(
                        status="running", pid=started.pid, monitor_pid=started.monitor_pid,
                        started_at=now_rfc3339(), finished_at=c.state.finished_at, ports=as_records(published),
                    )
                    self.ctx.store.set_container_state(c.id, state)
            for a in self.attachments(c):
                if a.active:
                    self.sandboxes.register_name(c, a)
            self.watch(c.id, started.monitor_pid)
            self._deliver_pending(c.id)
            self.ctx.changed.notify_all()
        self.ctx.runtime.release(c.id)
        return self.get(c.id)

    def _publish(self, c: Container, active: list[Attachment], undo: Undo) -> list[rules.Published]:
        """Install the container's published ports (map elements) on its default-route network."""
        owner = self.sandboxes.route_owner(active) or next((a for a in active if a.ipv4 and a.host_ifname), None)
        if owner is None and self.sandboxes.plugins_publish(active):
            return []  # a CNI plugin with the portMappings capability (portmap) was handed the bindings
        network = self.sandboxes.network(owner.network_id) if owner else None
        published = self.ports.plan(c, owner, network)
        if published:
            assert owner is not None and owner.host_ifname
            self.ctx.kernel.bridge_port_hairpin(owner.host_ifname)
            self.ctx.kernel.nft(rules.published_elements(published, "add"))
            undo.push("published ports", self.ctx.kernel.nft, rules.published_elements(published, "delete"))
            fault("start-published")
        return published

    def _spec(self, c: Container, etc_owner: Container, netns: Path | None, kind: str) -> ContainerSpec:
        if c.image_id:
            rootfs = self.ctx.images.get(c.image_id).rootfs
        else:
            rootfs = Path(c.host_config["BerthRootfs"])
        cmd = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
        env = list(c.config.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        hostname = c.hostname
        env.append(f"HOSTNAME={hostname}")
        return ContainerSpec(
            id=c.id, rootfs=rootfs, cmd=cmd, env=env, workdir=c.config.get("WorkingDir") or "/",
            hostname=hostname, netns=netns, share_uts=kind == "host",
            open_stdin=bool(c.config.get("OpenStdin")),
            state_dir=self.ctx.paths.container_dir(c.id), run_dir=self.ctx.paths.container_run_dir(c.id),
            etc_dir=self.ctx.paths.container_dir(etc_owner.id),
        )

    def _kill_quietly(self, pid: int) -> None:
        try:
            self.ctx.runtime.kill(pid, signal.SIGKILL)
        except (OSError, BerthError):
            pass

    # -- attach before start --------------------------------------------------------------------

    def attach(self, ref: str, flags: dict[str, bool]) -> PendingAttach:
        """Register an attach client: a running container's monitor connection at once, a created one's when
        it starts. The API registers before it tells the client the stream is open (``101``), so the start
        a client sends right after that cannot let the container run before the client is there."""
        with self.ctx.lock:
            c = self.resolve(ref)
            pending = PendingAttach(c.id, flags)
            if c.state.running:
                pending.sock = self.ctx.runtime.attach(c.id, **flags)
                pending.ready.set()
            else:
                self.pending.setdefault(c.id, []).append(pending)
            return pending

    def attached(self, pending: PendingAttach, timeout: float | None = None) -> Any:
        """The monitor connection of a registered client; None if the container was never started."""
        if not pending.ready.wait(timeout):
            with self.ctx.lock:
                waiting = self.pending.get(pending.container_id, [])
                if pending in waiting:
                    waiting.remove(pending)
            return None
        if pending.error:
            raise pending.error
        return pending.sock

    def _deliver_pending(self, container_id: str) -> None:
        for pending in self.pending.pop(container_id, []):
            try:
                pending.sock = self.ctx.runtime.attach(container_id, **pending.flags)
            except BaseException as err:  # noqa: BLE001 - handed to the waiting client
                pending.error = err
            pending.ready.set()

    def _cancel_pending(self, container_id: str) -> None:
        for pending in self.pending.pop(container_id, []):
            pending.ready.set()

    # -- stop, kill, exit -----------------------------------------------------------------------

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> None:
        with self.ctx.lock:
            c = self.resolve(ref)
            if not c.state.running:
                raise Conflict(f"Container {c.id} is not running")
            self.ctx.runtime.kill(c.state.pid, sig)

    def stop(self, ref: str, timeout: float | None = None) -> None:
        with self.ctx.lock:
            c = self.resolve(ref)
            if not c.state.running:
                raise NotModified("container already stopped")
            stop_signal = _signal_number(c.config.get("StopSignal") or "SIGTERM")
            grace = 10.0 if timeout is None or timeout < 0 else float(timeout)
            self.ctx.runtime.kill(c.state.pid, stop_signal)
            if not self._wait_exit(c.id, grace):
                current = self.get(c.id)
                if current.state.running:
                    self.ctx.runtime.kill(current.state.pid, signal.SIGKILL)
                if not self._wait_exit(c.id, 30.0):
                    raise BerthError(f"container {c.id} did not exit after SIGKILL")

    def _wait_exit(self, container_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            c = self.ctx.store.container(container_id)
            if c is None or not c.state.running:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.ctx.changed.wait(min(left, 0.5))
            if not self._monitor_alive(container_id):
                self.on_exit(container_id)

    def _monitor_alive(self, container_id: str) -> bool:
        c = self.ctx.store.container(container_id)
        return c is not None and c.state.running and self.ctx.runtime.monitor_alive(c.id, c.state.monitor_pid)

    def on_exit(self, container_id: str) -> None:
        """The monitor is gone: record the exit, tear the network down, honour --rm, wake waiters."""
        with self.ctx.lock:
            c = self.ctx.store.container(container_id)
            if c is None or not c.state.running:
                return
            status = self.ctx.runtime.exit_status(c.id)
            if status is None:
                # The monitor died without recording an exit: make sure nothing of the container survives.
                self._kill_quietly(c.state.pid)
                code, finished, error = 137, now_rfc3339(), "container monitor exited unexpectedly"
            else:
                (code, finished), error = status, ""
            self.teardown_network(c)
            self.ctx.store.set_container_state(
                c.id, replace(c.state, status="exited", pid=0, monitor_pid=0, exit_code=code,
                              finished_at=finished, error=error, ports=[]),
            )
            self.exits[c.id] = self.exits.get(c.id, 0) + 1
            self.ctx.changed.notify_all()
            if c.host_config.get("AutoRemove"):
                self._remove(self.get(c.id))

    def teardown_network(self, c: Container) -> None:
        """Release every endpoint of a stopped container; deleting the netns removes all veths at once."""
        if c.state.ports:
            self.ctx.kernel.nft(rules.published_elements(from_records(c.state.ports), "delete"))
        netns = self.netns_path(c)
        for a in self.attachments(c):
            if a.active and self.sandboxes.network(a.network_id).driver == "cni":
                try:  # while the namespace exists, so plugins can remove what they made inside it
                    self.sandboxes.unplug(netns, a, [])
                except BerthError as err:
                    log.error("container %s: %s (retried without the namespace)", c.name, err)
        if mode_kind(self.mode_network(c)) in ("network", "none"):
            self.ctx.kernel.netns_delete(netns)
        for a in self.attachments(c):
            if a.active:
                self.sandboxes.forget(netns, a)
                self.ctx.store.set_endpoint(cleared(a), state="active")

    # -- remove ---------------------------------------------------------------------------------

    def remove(self, ref: str, force: bool = False) -> None:
        with self.ctx.lock:
            c = self.resolve(ref)
            if c.state.running:
                if not force:
                    raise Conflict(
                        f"You cannot remove a running container {c.id}. Stop the container before attempting "
                        "removal or force remove"
                    )
                self.ctx.runtime.kill(c.state.pid, signal.SIGKILL)
                if not self._wait_exit(c.id, 30.0):
                    raise BerthError(f"container {c.id} did not exit after SIGKILL")
            c = self.ctx.store.container(c.id)
            if c is not None:
                self._remove(c)

    def _remove(self, c: Container) -> None:
        self._cancel_pending(c.id)
        self.removed_codes[c.id] = c.state.exit_code
        while len(self.removed_codes) > 4096:
            self.removed_codes.pop(next(iter(self.removed_codes)))
        self.ctx.store.remove_container(c.id)
        self.ctx.runtime.remove(c.id)
        for exec_id in [e.id for e in self.execs.values() if e.container_id == c.id]:
            self.execs.pop(exec_id, None)
        self.exits.pop(c.id, None)
        self.ctx.changed.notify_all()

    # -- wait -----------------------------------------------------------------------------------

    def wait(self, ref: str, condition: str = "not-running", timeout: float | None = None) -> int | None:
        """Block until the condition holds; returns the exit code (None on timeout)."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.ctx.lock:
            c = self.resolve(ref)
            generation = self.exits.get(c.id, 0)
            last_code = c.state.exit_code
            while True:
                current = self.ctx.store.container(c.id)
                if current is None:
                    return self.removed_codes.get(c.id, last_code)
                last_code = current.state.exit_code
                if condition == "not-running" and not current.state.running:
                    return last_code
                if condition == "next-exit" and self.exits.get(c.id, 0) > generation:
                    return last_code
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.ctx.changed.wait(left if left is not None else 1.0)

    # -- connect / disconnect -------------------------------------------------------------------

    def _membership(self, net_ref: str, container_ref: str) -> tuple[Network, Container, str]:
        """The network and container of a connect/disconnect, with Docker's refusal for host mode."""
        net = self.networks.resolve(net_ref)
        c = self.resolve(container_ref)
        kind = mode_kind(self.mode_network(c))
        if net.driver == "host" or kind == "host":
            raise InvalidParameter(HOST_MSG)
        return net, c, kind

    def connect(self, net_ref: str, container_ref: str, endpoint: dict[str, Any]) -> None:
        with self.ctx.lock:
            net, c, kind = self._membership(net_ref, container_ref)
            if net.driver == "null" or kind == "none":
                raise InvalidParameter(NONE_MSG)
            if kind == "container":
                raise InvalidParameter(SHARED_MSG)
            existing = self.attachments(c)
            if any(a.network_id == net.id for a in existing):
                raise Forbidden(f"endpoint with name {c.name} already exists in network {net.name}")
            self._check_endpoint_request(net, endpoint)
            a = self._attachment(c, net, endpoint, max((x.seq for x in existing), default=-1) + 1)
            with Undo() as undo:
                undo.push("attachment record", self.ctx.store.remove_attachment, c.id, net.id)
                if not c.state.running:
                    self.ctx.store.add_attachment(a, state="active")
                    fault("connect-recorded")
                    return
                netns = self.netns_path(c)
                active = [x for x in existing if x.active]
                ep = self.sandboxes.plug(netns, a, active, undo, record=_record_connect(self.ctx.store),
                                         runtime=cni_runtime(c))
                self.ctx.store.set_endpoint(ep, state="active")
                self.sandboxes.write_etc(c, [*active, ep], kind)
                self.sandboxes.register_name(c, ep)

    def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        with self.ctx.lock:
            net, c, kind = self._membership(net_ref, container_ref)
            existing = self.attachments(c)
            mine = [a for a in existing if a.network_id == net.id]
            if not mine:
                raise BerthError(f"container {c.id} is not connected to network {net.name}")
            a = mine[0]
            if a.active:
                netns = self.netns_path(c)
                active = [x for x in existing if x.active]
                self.ctx.store.set_endpoint(a, state="removing")
                fault("disconnect-marked")
                self.sandboxes.unplug(netns, a, active)
                self.sandboxes.write_etc(c, [x for x in active if x.network_id != net.id], kind)
            self.ctx.store.remove_attachment(c.id, net.id)

    # -- exec -----------------------------------------------------------------------------------

    def exec_create(self, ref: str, body: dict[str, Any]) -> ExecRecord:
        with self.ctx.lock:
            c = self.resolve(ref)
            if not c.state.running:
                raise Conflict(f"Container {c.id} is not running")
            cmd = body.get("Cmd") or []
            if not cmd:
                raise InvalidParameter("No exec command specified")
            env = _merge_env(c.config.get("Env") or [], body.get("Env") or [])
            if not any(e.startswith("PATH=") for e in env):
                env.insert(0, DEFAULT_PATH)
            record = ExecRecord(
                id=new_id(), container_id=c.id, cmd=list(cmd), env=env,
                workdir=body.get("WorkingDir") or c.config.get("WorkingDir") or "/",
                attach_stdin=bool(body.get("AttachStdin")), attach_stdout=body.get("AttachStdout", True) is not False,
                attach_stderr=body.get("AttachStderr", True) is not False,
            )
            self.execs[record.id] = record
            return record

    def exec_get(self, exec_id: str) -> ExecRecord:
        record = self.execs.get(exec_id)
        if record is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return record

    def exec_start(self, exec_id: str) -> Any:
        with self.ctx.lock:
            record = self.exec_get(exec_id)
            if record.running or record.exit_code is not None:
                raise Conflict(f"Exec command {exec_id} has already run")
            c = self.get(record.container_id)
            if not c.state.running:
                raise Conflict(f"Container {c.id} is not running")
            proc = self.ctx.runtime.exec(c.state.pid, record.cmd, env=record.env, workdir=record.workdir,
                                         stdin=record.attach_stdin)
            record.running, record.pid = True, proc.pid
            return proc

    def exec_finished(self, exec_id: str, code: int) -> None:
        with self.ctx.lock:
            record = self.execs.get(exec_id)
            if record is not None:
                record.running, record.exit_code = False, code


def _record_connect(store: Store) -> Callable[[Attachment, str], None]:
    """How a connect records a running container's endpoint: the attachment row and its pending
    endpoint are written together (a crash after it is repaired like one after ``endpoint-reserved``)."""

    def record(ep: Attachment, state: str) -> None:
        store.put_attachment(ep, state)
        fault("connect-recorded")

    return record


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    """Later ``KEY=value`` entries replace earlier ones with the same key, order kept."""
    merged: dict[str, str] = {}
    for item in [*base, *extra]:
        merged[item.split("=", 1)[0]] = item
    return list(merged.values())


def _signal_number(name: str | int) -> int:
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    name = str(name).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal, name))
    except AttributeError:
        raise InvalidParameter(f"Invalid signal: {name}") from None
