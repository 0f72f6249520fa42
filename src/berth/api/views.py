"""Engine objects rendered in the Docker Engine API v1.41 JSON shapes (field order as Docker's)."""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from typing import Any

from berth.engine import Engine
from berth.model import Attachment, Container, Network
from berth.units import human_duration


def network_json(engine: Engine, net: Network) -> dict[str, Any]:
    containers: dict[str, Any] = {}
    for a in engine.ctx.store.attachments(network_id=net.id):
        if not a.active:
            continue
        c = engine.ctx.store.container(a.container_id)
        containers[a.container_id] = _network_endpoint(c.name if c else "", a)
        if net.driver == "cni":  # what the plugins made: interfaces, addresses, routes, DNS
            cached = engine.ctx.store.cni_result(a.container_id, net.id)
            containers[a.container_id]["CNIResult"] = cached[2] if cached else None
    for ep in engine.external.all(net.id):  # berth-cni endpoints: listed like containers, keyed by CNI id
        containers[ep.container_id] = _network_endpoint(ep.name, ep.attachment)
    if net.driver in ("host", "null"):
        for c in engine.ctx.store.containers():
            if c.state.running and c.network_mode == net.name:
                containers[c.id] = {"Name": c.name, "EndpointID": "", "MacAddress": "", "IPv4Address": "",
                                    "IPv6Address": ""}
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": net.scope,
        "Driver": net.driver,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": net.ipam,
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": net.options,
        "Labels": net.labels,
    }


def _network_endpoint(name: str, a: Attachment) -> dict[str, Any]:
    return {
        "Name": name,
        "EndpointID": a.endpoint_id,
        "MacAddress": a.mac or "",
        "IPv4Address": str(a.ipv4) if a.ipv4 else "",
        "IPv6Address": str(a.ipv6) if a.ipv6 else "",
    }


def _endpoint_settings(engine: Engine, c: Container, net: Network, a: Attachment | None) -> dict[str, Any]:
    ipam = None
    if a is not None and (a.ipv4_request or a.ipv6_request):
        ipam = {k: v for k, v in (("IPv4Address", a.ipv4_request), ("IPv6Address", a.ipv6_request)) if v}
    aliases = None
    if a is not None and not net.builtin:
        aliases = [*a.aliases, c.id[:12]]
        if c.config.get("Hostname") and c.config["Hostname"] not in aliases:
            aliases.append(c.config["Hostname"])
    live = a is not None and a.active
    return {
        "IPAMConfig": ipam,
        "Links": None,
        "Aliases": aliases,
        "NetworkID": net.id if (live or a is None) else "",
        "EndpointID": a.endpoint_id if live and a else "",
        "Gateway": str(a.gateway4) if live and a and a.gateway4 else "",
        "IPAddress": str(a.ipv4.ip) if live and a and a.ipv4 else "",
        "IPPrefixLen": a.ipv4.network.prefixlen if live and a and a.ipv4 else 0,
        "IPv6Gateway": str(a.gateway6) if live and a and a.gateway6 else "",
        "GlobalIPv6Address": str(a.ipv6.ip) if live and a and a.ipv6 else "",
        "GlobalIPv6PrefixLen": a.ipv6.network.prefixlen if live and a and a.ipv6 else 0,
        "MacAddress": a.mac if live and a and a.mac else "",
        "DriverOpts": None,
    }


def container_networks(engine: Engine, c: Container) -> dict[str, Any]:
    mode = engine.containers.mode_network(c)
    if mode.startswith("container:"):
        return {}
    nets = {n.id: n for n in engine.ctx.store.networks()}
    if mode in ("host", "none"):
        net = next(n for n in nets.values() if n.name == mode)
        return {net.name: _endpoint_settings(engine, c, net, None)}
    out = {}
    for a in engine.ctx.store.attachments(container_id=c.id):
        net = nets.get(a.network_id)
        if net is not None:
            out[net.name] = _endpoint_settings(engine, c, net, a)
    return out


def container_json(engine: Engine, c: Container) -> dict[str, Any]:
    paths = engine.ctx.paths
    networks = container_networks(engine, c)
    default = networks.get("bridge") if engine.containers.mode_network(c) == "bridge" else None
    netns = engine.containers.sandbox_netns(c) if c.state.running else None
    cmd = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
    cdir = paths.container_dir(c.id)
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": cmd[0] if cmd else "",
        "Args": cmd[1:],
        "State": {
            "Status": c.state.status,
            "Running": c.state.running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": c.state.pid,
            "ExitCode": c.state.exit_code,
            "Error": c.state.error,
            "StartedAt": c.state.started_at,
            "FinishedAt": c.state.finished_at,
        },
        "Image": c.image_id or c.image,
        "ResolvConfPath": str(cdir / "resolv.conf"),
        "HostnamePath": str(cdir / "hostname"),
        "HostsPath": str(cdir / "hosts"),
        "LogPath": str(cdir / f"{c.id}-json.log"),
        "Name": "/" + c.name,
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": [e.id for e in engine.containers.execs.values() if e.container_id == c.id] or None,
        "HostConfig": {"NetworkMode": c.network_mode, "AutoRemove": bool(c.host_config.get("AutoRemove")),
                       "PortBindings": c.host_config.get("PortBindings") or {},
                       "Dns": c.host_config.get("Dns") or [], "DnsOptions": c.host_config.get("DnsOptions") or [],
                       "DnsSearch": c.host_config.get("DnsSearch") or []},
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "Mounts": [],
        "Config": {
            "Hostname": c.hostname,
            "Domainname": "",
            "User": c.config.get("User") or "",
            "AttachStdin": bool(c.config.get("AttachStdin")),
            "AttachStdout": bool(c.config.get("AttachStdout")),
            "AttachStderr": bool(c.config.get("AttachStderr")),
            "Tty": False,
            "OpenStdin": bool(c.config.get("OpenStdin")),
            "StdinOnce": bool(c.config.get("StdinOnce")),
            "Env": c.config.get("Env") or [],
            "Cmd": c.config.get("Cmd") or None,
            "Image": c.image,
            "Volumes": None,
            "WorkingDir": c.config.get("WorkingDir") or "",
            "Entrypoint": c.config.get("Entrypoint"),
            "OnBuild": None,
            "Labels": c.config.get("Labels") or {},
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": c.id if netns else "",
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": port_map(c),
            "SandboxKey": str(netns) if netns else "",
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "EndpointID": (default or {}).get("EndpointID", ""),
            "Gateway": (default or {}).get("Gateway", ""),
            "GlobalIPv6Address": (default or {}).get("GlobalIPv6Address", ""),
            "GlobalIPv6PrefixLen": (default or {}).get("GlobalIPv6PrefixLen", 0),
            "IPAddress": (default or {}).get("IPAddress", ""),
            "IPPrefixLen": (default or {}).get("IPPrefixLen", 0),
            "IPv6Gateway": (default or {}).get("IPv6Gateway", ""),
            "MacAddress": (default or {}).get("MacAddress", ""),
            "Networks": networks,
        },
    }


def _host_ip(host_ip: str | None, container_ip: str) -> str:
    """A binding's host address as Docker shows it: every address is 0.0.0.0 or ::, by family."""
    return host_ip or ("::" if ":" in container_ip else "0.0.0.0")


def port_map(c: Container) -> dict[str, Any]:
    """``NetworkSettings.Ports``: every exposed or bound port, with its live host bindings (or null)."""
    keys = set(c.config.get("ExposedPorts") or {}) | set(c.host_config.get("PortBindings") or {})
    out: dict[str, Any] = {key if "/" in key else f"{key}/tcp": None for key in keys}
    for proto, host_ip, host_port, container_ip, port in c.state.ports:
        out.setdefault(f"{port}/{proto}", None)
        out[f"{port}/{proto}"] = (out[f"{port}/{proto}"] or []) + [{"HostIp": _host_ip(host_ip, container_ip),
                                                                    "HostPort": str(host_port)}]
    return out if c.state.running else {}


def port_list(c: Container) -> list[dict[str, Any]]:
    """The ``ps`` summary's ``Ports``: published ports with their host side, exposed ones without."""
    out = [{"IP": _host_ip(host_ip, container_ip), "PrivatePort": port, "PublicPort": host_port, "Type": proto}
           for proto, host_ip, host_port, container_ip, port in c.state.ports]
    published = {(p["PrivatePort"], p["Type"]) for p in out}
    for key in c.config.get("ExposedPorts") or {}:
        port, _, proto = key.partition("/")
        if (int(port), proto or "tcp") not in published:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out


def _epoch(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def status_text(c: Container) -> str:
    now = datetime.now(timezone.utc).timestamp()
    if c.state.running:
        return "Up " + human_duration(now - _epoch(c.state.started_at))
    if c.state.status == "exited":
        return f"Exited ({c.state.exit_code}) {human_duration(now - _epoch(c.state.finished_at))} ago"
    return "Created"


def container_summary(engine: Engine, c: Container) -> dict[str, Any]:
    cmd = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": " ".join(shlex.quote(x) if " " in x else x for x in cmd),
        "Created": _epoch(c.created),
        "Ports": port_list(c),
        "Labels": c.config.get("Labels") or {},
        "State": c.state.status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.network_mode},
        "NetworkSettings": {"Networks": container_networks(engine, c)},
        "Mounts": [],
    }


def image_summary(image: Any, containers: int = -1) -> dict[str, Any]:
    return {
        "Containers": containers,
        "Created": int(image.created),
        "Id": image.id,
        "Labels": None,
        "ParentId": "",
        "RepoDigests": None,
        "RepoTags": list(image.repo_tags) or None,
        "SharedSize": -1,
        "Size": image.size,
        "VirtualSize": image.size,
    }


def image_json(image: Any) -> dict[str, Any]:
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": [],
        "Parent": "",
        "Comment": "",
        "Created": datetime.fromtimestamp(image.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "Container": "",
        "DockerVersion": "",
        "Author": "",
        "Config": {"Cmd": image.config.get("Cmd"), "Entrypoint": image.config.get("Entrypoint"),
                   "Env": image.config.get("Env"), "WorkingDir": image.config.get("WorkingDir") or ""},
        "Architecture": "amd64",
        "Os": "linux",
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": []},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }
