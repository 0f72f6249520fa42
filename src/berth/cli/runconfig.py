"""``berth run`` flags → the POST /containers/create body, with the docker CLI's and runconfig's checks.

Pure functions (no I/O) so that every conflict message and body shape is unit-tested without a daemon.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from berth.cli.errors import CLIError

RUN_ERROR = 125  # docker's exit status when the container could not be created or started

BUILTIN_MODES = ("default", "bridge", "host", "none")
PROTOCOLS = ("tcp", "udp", "sctp")


class RunError(CLIError):
    """A refused ``run``: exit status 125 as docker's."""

    def __init__(self, message: str) -> None:
        super().__init__(message, RUN_ERROR)


def is_user_defined(mode: str) -> bool:
    return mode not in BUILTIN_MODES and not mode.startswith("container:")


def _port_range(text: str, what: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    try:
        first = int(start)
        last = int(end) if sep else first
    except ValueError:
        raise RunError(f"Invalid {what}: {text}") from None
    if not (0 <= first <= 65535 and 0 <= last <= 65535) or last < first:
        raise RunError(f"Invalid {what}: {text}")
    return first, last


def _split_proto(spec: str) -> tuple[str, str]:
    port, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS:
        raise RunError(f"invalid proto: {proto}")
    return port, proto


def parse_publish(spec: str) -> list[tuple[str, dict[str, str]]]:
    """One ``-p [ip:][hostPort:]containerPort[/proto]`` (ranges allowed) → [(\"80/tcp\", binding)…]."""
    import ipaddress

    raw, proto = _split_proto(spec)
    ip = ""
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0 or raw[close + 1:close + 2] != ":":
            raise RunError(f"invalid port format: {spec}")
        ip, raw = raw[1:close], raw[close + 2:]
        parts = raw.split(":")
        if len(parts) > 2:
            raise RunError(f"invalid port format: {spec}")
        host, container = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
    else:
        parts = raw.split(":")
        if len(parts) == 1:
            host, container = "", parts[0]
        elif len(parts) == 2:
            host, container = parts
        elif len(parts) == 3:
            ip, host, container = parts
        else:
            raise RunError(f"invalid port format: {spec}")
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise RunError(f"Invalid ip address: {ip}") from None
    if not container:
        raise RunError(f"No port specified: {spec}<empty>")
    c_first, c_last = _port_range(container, "containerPort")
    out: list[tuple[str, dict[str, str]]] = []
    if not host:
        for port in range(c_first, c_last + 1):
            out.append((f"{port}/{proto}", {"HostIp": ip, "HostPort": ""}))
        return out
    h_first, h_last = _port_range(host, "hostPort")
    if c_first == c_last and h_first != h_last:
        return [(f"{c_first}/{proto}", {"HostIp": ip, "HostPort": f"{h_first}-{h_last}"})]
    if c_last - c_first != h_last - h_first:
        raise RunError(f"Invalid ranges specified for container and host Ports: {container} and {host}")
    for offset in range(c_last - c_first + 1):
        out.append((f"{c_first + offset}/{proto}", {"HostIp": ip, "HostPort": str(h_first + offset)}))
    return out


def parse_expose(spec: str) -> list[str]:
    """``--expose 80`` / ``--expose 7000-7001/udp`` → exposed port keys."""
    raw, proto = _split_proto(spec)
    first, last = _port_range(raw, "range format for --expose")
    return [f"{p}/{proto}" for p in range(first, last + 1)]


def parse_env(items: list[str]) -> list[str]:
    """docker's ValidateEnv: ``K=V`` as given; a bare ``K`` takes our own value of K when we have one."""
    out = []
    for item in items:
        if "=" not in item and item in os.environ:
            item = f"{item}={os.environ[item]}"
        out.append(item)
    return out


def _endpoints(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """docker CLI's parseNetworkOpts: the network mode and the EndpointsConfig to send."""
    networks = list(args.network or [])
    has_user = any(is_user_defined(n) for n in networks)
    has_builtin = any(not is_user_defined(n) for n in networks)
    if has_user and has_builtin:
        raise RunError("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
    seen: set[str] = set()
    endpoints: dict[str, Any] = {}
    for i, name in enumerate(networks or ["default"]):
        if name in seen:
            raise RunError(f'network "{name}" is specified multiple times')
        seen.add(name)
        settings = None
        if i == 0 and (args.ip or args.ip6 or args.network_alias or args.link):
            ipam = {k: v for k, v in (("IPv4Address", args.ip), ("IPv6Address", args.ip6)) if v}
            settings = {"IPAMConfig": ipam or None, "Links": list(args.link) or None,
                        "Aliases": list(args.network_alias) or None, "MacAddress": "", "DriverOpts": None,
                        "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0}
        if settings is None and len(networks) <= 1:
            continue  # like docker: a lone network without options gets no client-side endpoint config
        endpoints[name] = settings or {}
    return (networks[0] if networks else "default"), endpoints


def _check_mode(mode: str, args: argparse.Namespace, ports: dict[str, Any]) -> None:
    """runconfig's validateNetMode, checked before any request, in Docker's order."""
    if mode.startswith("container:") and not mode[len("container:"):]:
        raise RunError("Invalid network mode: invalid container format container:<name|id>")
    container = mode.startswith("container:")
    if container and args.hostname:
        raise RunError("conflicting options: hostname and the network mode")
    if container and args.link:
        raise RunError("conflicting options: container type network can't be used with links. "
                       "This would result in undefined behavior")
    if container and args.dns:
        raise RunError("conflicting options: dns and the network mode")
    if container and args.add_host:
        raise RunError("conflicting options: custom host-to-IP mapping and the network mode")
    if (container or mode == "host") and args.mac_address:
        raise RunError("conflicting options: mac-address and the network mode")
    if container and (ports or args.publish_all):
        raise RunError("conflicting options: port publishing and the container type network mode")
    if container and args.expose:
        raise RunError("conflicting options: port exposing and the container type network mode")
    if mode == "host" and args.link:
        raise RunError("conflicting options: host type networking can't be used with links. "
                       "This would result in undefined behavior")


def create_request(args: argparse.Namespace) -> dict[str, Any]:
    """The create body for ``berth run``; raises ``RunError`` (exit 125) for what Docker refuses up front."""
    if args.tty:
        raise RunError("the -t/--tty option is not supported: berth has no TTY support yet; run without -t")
    if args.rootfs and args.image is not None:
        args.command = [args.image, *args.command]
        args.image = None
    if not args.rootfs and not args.image:
        raise RunError('"berth run" requires at least 1 argument (an image, or --rootfs DIR and a command)')
    bindings: dict[str, list[dict[str, str]]] = {}
    exposed: dict[str, dict[str, Any]] = {}
    for spec in args.publish:
        for key, binding in parse_publish(spec):
            bindings.setdefault(key, []).append(binding)
            exposed[key] = {}
    expose_keys = [key for spec in args.expose for key in parse_expose(spec)]
    mode, endpoints = _endpoints(args)
    _check_mode(mode, args, bindings)
    for key in expose_keys:
        exposed.setdefault(key, {})
    attach = not args.detach
    host_config: dict[str, Any] = {
        "NetworkMode": mode,
        "PortBindings": bindings,
        "AutoRemove": args.rm,
        "Dns": list(args.dns),
        "DnsOptions": list(args.dns_option),
        "DnsSearch": list(args.dns_search),
        "ExtraHosts": list(args.add_host) or None,
        "Links": list(args.link) or None,
        "PublishAllPorts": args.publish_all,
    }
    if args.rootfs:
        host_config["BerthRootfs"] = os.path.abspath(args.rootfs)
    return {
        "Hostname": args.hostname or "",
        "Domainname": "",
        "User": args.user or "",
        "AttachStdin": args.interactive and attach,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "ExposedPorts": exposed or None,
        "Tty": False,
        "OpenStdin": args.interactive,
        "StdinOnce": args.interactive and attach,
        "Env": parse_env(args.env),
        "Cmd": list(args.command) or None,
        "Image": args.image or "",
        "Volumes": None,
        "WorkingDir": args.workdir or "",
        "Entrypoint": [args.entrypoint] if args.entrypoint else None,
        "MacAddress": args.mac_address or "",
        "Labels": dict(_labels(args.label)),
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }


def _labels(items: list[str]) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in (item.partition("=") for item in items)]


def start_failure_code(message: str) -> int:
    """docker's runStartContainerErr: 127 for a missing command, 126 for one that cannot be run, else 125."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message:
        return 126
    return RUN_ERROR


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``berth run`` (docker's names; ``-h`` is the hostname, so help is ``--help`` only)."""
    p.add_argument("--help", action="help", help="Print usage")
    p.add_argument("-d", "--detach", action="store_true", help="Run container in background and print container ID")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY (not supported)")
    p.add_argument("--rm", action="store_true", help="Automatically remove the container when it exits")
    p.add_argument("--name", help="Assign a name to the container")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("-h", "--hostname", help="Container host name")
    p.add_argument("-u", "--user", help="Username or UID")
    p.add_argument("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    p.add_argument("-l", "--label", action="append", default=[], help="Set meta data on a container")
    p.add_argument("--network", "--net", action="append", default=[], help="Connect a container to a network")
    p.add_argument("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    p.add_argument("--network-alias", "--net-alias", action="append", default=[],
                   help="Add network-scoped alias for the container")
    p.add_argument("--link", action="append", default=[], help="Add link to another container")
    p.add_argument("--mac-address", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    p.add_argument("-p", "--publish", action="append", default=[], help="Publish a container's port(s) to the host")
    p.add_argument("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    p.add_argument("--expose", action="append", default=[], help="Expose a port or a range of ports")
    p.add_argument("--dns", action="append", default=[], help="Set custom DNS servers")
    p.add_argument("--dns-option", action="append", default=[], help="Set DNS options")
    p.add_argument("--dns-search", action="append", default=[], help="Set custom DNS search domains")
    p.add_argument("--add-host", action="append", default=[], help="Add a custom host-to-IP mapping (host:ip)")
    p.add_argument("--rootfs", help="Run in this directory tree instead of an image (berth extension)")
    p.add_argument("image", nargs="?", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
