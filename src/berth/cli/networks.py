"""``berth network create|ls|inspect|rm|prune|connect|disconnect``: the docker CLI's requests and output."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any, Callable

from berth.cli.errors import CLIError
from berth.cli.options import filters_query, key_values, prompt_yes
from berth.cli.render import Row, format_rows, go_time

if TYPE_CHECKING:
    from berth.cli.context import Context

LS_FIELDS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6", "IPv4": "IPV4",
             "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}
LS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
PRUNE_WARNING = ("WARNING! This will remove all custom networks not used by at least one container.\n"
                 "Are you sure you want to continue? [y/N] ")


# -- create: docker's consolidateIpam, client side ----------------------------------------------

def _subnet_matches(subnet: str, data: str) -> bool:
    """Go's subnetMatches: is the address (or the address part of a CIDR) inside the subnet?"""
    import ipaddress

    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise CLIError(f"invalid subnet: invalid CIDR address: {subnet}") from None
    try:
        ip = ipaddress.ip_interface(data).ip if "/" in data else ipaddress.ip_address(data)
    except ValueError:
        if "/" in data:
            raise CLIError(f"invalid CIDR address: {data}") from None
        return False
    return ip.version == net.version and ip in net


def ipam_config(subnets: list[str], ranges: list[str], gateways: list[str],
                aux: dict[str, str]) -> list[dict[str, Any]]:
    """Pair each --ip-range/--gateway/--aux-address with the --subnet containing it, with Docker's messages."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise CLIError("every ip-range or gateway must have a corresponding subnet")
    configs: dict[str, dict[str, Any]] = {}
    for s in subnets:
        for other in configs:
            if _subnet_matches(s, other) or _subnet_matches(other, s):
                raise CLIError("multiple overlapping subnet configuration is not supported")
        configs[s] = {"Subnet": s, "IPRange": "", "Gateway": "", "AuxiliaryAddresses": {}}
    for key, label, values in (("IPRange", "range", ranges), ("Gateway", "gateway", gateways)):
        for value in values:
            match = False
            for s in subnets:
                if not _subnet_matches(s, value):
                    continue
                if configs[s][key]:
                    what = "ranges" if key == "IPRange" else "gateways"
                    where = "on" if key == "IPRange" else "for"
                    raise CLIError(f"cannot configure multiple {what} ({value}, {configs[s][key]}) {where} the same subnet ({s})")
                configs[s][key] = value
                match = True
            if not match:
                raise CLIError(f"no matching subnet for {label} {value}")
    for name, address in aux.items():
        match = False
        for s in subnets:
            if _subnet_matches(s, address):
                configs[s]["AuxiliaryAddresses"][name] = address
                match = True
        if not match:
            raise CLIError(f"no matching subnet for aux-address {address}")
    return list(configs.values())


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /networks/create body as docker CLI 28 sends it to an API 1.41 daemon."""
    return {
        "Name": args.name,
        "CheckDuplicate": True,
        "Driver": args.driver,
        "Scope": args.scope,
        "EnableIPv6": args.ipv6,
        "Internal": args.internal,
        "Attachable": args.attachable,
        "Ingress": args.ingress,
        "ConfigOnly": args.config_only,
        "ConfigFrom": {"Network": args.config_from} if args.config_from else None,
        "IPAM": {
            "Driver": args.ipam_driver,
            "Options": key_values(args.ipam_opt),
            "Config": ipam_config(args.subnet, args.ip_range, args.gateway, key_values(args.aux_address)),
        },
        "Options": _cni_config_absolute(key_values(args.opt)),
        "Labels": key_values(args.label),
    }


def _cni_config_absolute(options: dict[str, str]) -> dict[str, str]:
    """``-o cni.config=FILE`` names a file berthd reads on the same host: make it relative to the user's directory."""
    import os

    if options.get("cni.config"):
        options["cni.config"] = os.path.abspath(options["cni.config"])
    return options


def cmd_create(ctx: "Context", args: argparse.Namespace) -> int:
    body = create_body(args)
    resp = ctx.client.post("/networks/create", body)
    if resp.get("Warning"):
        ctx.err(f"WARNING: {resp['Warning']}\n")
    ctx.out(resp["Id"] + "\n")
    return 0


# -- ls -------------------------------------------------------------------------------------

class NetworkRow(Row):
    FIELDS = LS_FIELDS
    type_name = "formatter.networkContext"

    def __init__(self, net: dict[str, Any], trunc: bool) -> None:
        self._n = net
        self._trunc = trunc

    @property
    def ID(self) -> str:
        return self._n.get("Id", "")[:12] if self._trunc else self._n.get("Id", "")

    @property
    def Name(self) -> str:
        return self._n.get("Name", "")

    @property
    def Driver(self) -> str:
        return self._n.get("Driver", "")

    @property
    def Scope(self) -> str:
        return self._n.get("Scope", "")

    @property
    def IPv6(self) -> str:
        return "true" if self._n.get("EnableIPv6") else "false"

    @property
    def IPv4(self) -> str:
        return "true" if self._n.get("EnableIPv4") else "false"

    @property
    def Internal(self) -> str:
        return "true" if self._n.get("Internal") else "false"

    @property
    def Labels(self) -> str:
        labels = self._n.get("Labels") or {}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def Label(self, name: str) -> str:
        return (self._n.get("Labels") or {}).get(name, "")

    @property
    def CreatedAt(self) -> str:
        return go_time(self._n.get("Created", ""))


def natural_key(text: str) -> list[Any]:
    """sortorder.NaturalLess, which ``docker network ls`` sorts names by: digit runs compare as numbers."""
    return [(0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def cmd_ls(ctx: "Context", args: argparse.Namespace) -> int:
    nets = ctx.client.get("/networks", filters_query(args.filter)) or []
    nets.sort(key=lambda n: natural_key(n.get("Name", "")))
    rows = [NetworkRow(n, not args.no_trunc) for n in nets]
    fmt = "{{.ID}}" if args.quiet else args.format
    ctx.out(format_rows(rows, fmt, LS_TABLE, LS_FIELDS))
    return 0


# -- inspect, rm, prune ---------------------------------------------------------------------

def inspect_each(ctx: "Context", refs: list[str], fetch: Callable[[str], Any], fmt: str | None) -> int:
    """docker's inspect.Inspect: print what was found (a JSON array, or the template per element),
    then one error line per reference that failed; exit 1 if any did."""
    from berth.cli.errors import DaemonError, NoSuchObject
    from berth.cli.render import execute, parse_template, pretty_json

    template = parse_template(fmt.replace("\\t", "\t").replace("\\n", "\n"), missing_key_error=True) \
        if fmt and fmt != "json" else None
    found: list[Any] = []
    errors: list[str] = []
    for ref in refs:
        try:
            found.append(fetch(ref))
        except (DaemonError, NoSuchObject) as err:
            errors.append(err.message)
    if template is not None:
        ctx.out("".join(execute(template, item) + "\n" for item in found))
    elif fmt == "json":
        from berth.cli.gotemplate import to_json

        ctx.out(to_json(found) + "\n")
    else:
        ctx.out(pretty_json(found) + "\n")
    for message in errors:
        ctx.err(message + "\n")
    return 1 if errors else 0


def cmd_inspect(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.client import path_quote

    query = {"verbose": "true"} if args.verbose else None
    return inspect_each(ctx, args.networks, lambda ref: ctx.client.get(f"/networks/{path_quote(ref)}", query),
                        args.format)


def cmd_rm(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.client import path_quote
    from berth.cli.errors import DaemonError

    status = 0
    for name in args.networks:
        try:
            ctx.client.delete(f"/networks/{path_quote(name)}")
        except DaemonError as err:
            if args.force and err.status == 404:
                continue
            ctx.err(err.message + "\n")
            status = 1
            continue
        ctx.out(name + "\n")
    return status


def cmd_prune(ctx: "Context", args: argparse.Namespace) -> int:
    if not args.force and not prompt_yes(ctx, PRUNE_WARNING):
        return 0
    report = ctx.client.post("/networks/prune", query=filters_query(args.filter)) or {}
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        ctx.out("Deleted Networks:\n" + "".join(name + "\n" for name in deleted) + "\n")
    return 0


# -- connect / disconnect -------------------------------------------------------------------

def endpoint_config(ip: str = "", ip6: str = "", aliases: list[str] | None = None, links: list[str] | None = None,
                    link_local: list[str] | None = None, driver_opts: dict[str, str] | None = None) -> dict[str, Any]:
    """An EndpointSettings as the docker CLI fills it for connect (and ``run --network``)."""
    return {
        "IPAMConfig": {"IPv4Address": ip, "IPv6Address": ip6, "LinkLocalIPs": list(link_local or [])},
        "Links": list(links) if links else None,
        "Aliases": list(aliases) if aliases else None,
        "MacAddress": "",
        "DriverOpts": dict(driver_opts or {}),
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
    }


def connect_body(args: argparse.Namespace) -> dict[str, Any]:
    return {"Container": args.container,
            "EndpointConfig": endpoint_config(args.ip or "", args.ip6 or "", args.alias, args.link, args.link_local_ip,
                                              key_values(args.driver_opt))}


def cmd_connect(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.client import path_quote

    ctx.client.post(f"/networks/{path_quote(args.network)}/connect", connect_body(args))
    return 0


def cmd_disconnect(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.client import path_quote

    ctx.client.post(f"/networks/{path_quote(args.network)}/disconnect",
                    {"Container": args.container, "Force": args.force})
    return 0


# -- argument parsing ------------------------------------------------------------------------

def register(commands: Any) -> None:
    net = commands.add_parser("network", help="Manage networks", description="Manage networks")
    sub = net.add_subparsers(dest="network_command", metavar="COMMAND", required=True)

    p = sub.add_parser("create", help="Create a network")
    p.add_argument("-d", "--driver", default="bridge", help="Driver to manage the Network")
    p.add_argument("--subnet", action="append", default=[], help="Subnet in CIDR format")
    p.add_argument("--gateway", action="append", default=[], help="IPv4 or IPv6 Gateway for the master subnet")
    p.add_argument("--ip-range", action="append", default=[], help="Allocate container ip from a sub-range")
    p.add_argument("--aux-address", action="append", default=[], help="Auxiliary IPv4 or IPv6 addresses used by Network driver")
    p.add_argument("--ipv6", action="store_true", help="Enable IPv6 networking")
    p.add_argument("--internal", action="store_true", help="Restrict external access to the network")
    p.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    p.add_argument("--ingress", action="store_true", help="Create swarm routing-mesh network")
    p.add_argument("--scope", default="", help="Control the network's scope")
    p.add_argument("--config-only", action="store_true", help="Create a configuration only network")
    p.add_argument("--config-from", default="", help="The network from which to copy the configuration")
    p.add_argument("--label", action="append", default=[], help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    p.add_argument("--ipam-driver", default="default", help="IP Address Management Driver")
    p.add_argument("--ipam-opt", action="append", default=[], help="Set IPAM driver specific options")
    p.add_argument("name", metavar="NETWORK")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("ls", aliases=["list"], help="List networks")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values (e.g. 'driver=bridge')")
    p.add_argument("--format", help="Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="Display detailed information on one or more networks")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("rm", aliases=["remove"], help="Remove one or more networks")
    p.add_argument("-f", "--force", action="store_true", help="Do not error if the network does not exist")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("prune", help="Remove all unused networks")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'until=<timestamp>')")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("connect", help="Connect a container to a network")
    p.add_argument("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    p.add_argument("--alias", action="append", default=[], help="Add network-scoped alias for the container")
    p.add_argument("--link", action="append", default=[], help="Add link to another container")
    p.add_argument("--link-local-ip", action="append", default=[], help="Add a link-local address for the container")
    p.add_argument("--driver-opt", action="append", default=[], help="driver options for the network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("disconnect", help="Disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true", help="Force the container to disconnect from a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_disconnect)
