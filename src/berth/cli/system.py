"""``berth version`` and the generic ``berth inspect`` (container, then image, then network, like docker)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from berth.cli.client import path_quote
from berth.cli.errors import DaemonError, NoSuchObject

if TYPE_CHECKING:
    from berth.cli.context import Context

KINDS = {"container": "/containers/{}/json", "image": "/images/{}/json", "network": "/networks/{}"}


def inspect_object(ctx: "Context", ref: str, kind: str | None) -> Any:
    """The first object of the given (or any) kind with this name; docker's "No such object" otherwise."""
    kinds = [kind] if kind else list(KINDS)
    for candidate in kinds:
        try:
            return ctx.client.get(KINDS[candidate].format(path_quote(ref)))
        except DaemonError as err:
            if err.status != 404:
                raise
    if kind:
        raise NoSuchObject(f"Error: No such {kind}: {ref}")
    raise NoSuchObject(f"Error: No such object: {ref}")


def cmd_inspect(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.networks import inspect_each

    return inspect_each(ctx, args.names, lambda ref: inspect_object(ctx, ref, args.type), args.format)


def cmd_version(ctx: "Context", args: argparse.Namespace) -> int:
    import platform

    from berth import API_VERSION, __version__

    ctx.out(f"Client:\n Version:           {__version__}\n API version:       {API_VERSION}\n"
            f" Python version:    {platform.python_version()}\n"
            f" OS/Arch:           {platform.system().lower()}/{_arch(platform.machine())}\n\n")
    server = ctx.client.call("GET", "/version")
    ctx.out(f"Server:\n Engine:\n  Version:          {server.get('Version', '')}\n"
            f"  API version:      {server.get('ApiVersion', '')} (minimum version {server.get('MinAPIVersion', '')})\n"
            f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}\n"
            f"  Kernel version:   {server.get('KernelVersion', '')}\n")
    return 0


def cmd_reconcile(ctx: "Context", args: argparse.Namespace) -> int:
    """Ask berthd to bring the kernel and its records back into agreement, and say what it changed."""
    report = ctx.client.post("/berth/reconcile") or {}
    labels = {
        "removed_networks": "removed interrupted network", "exited_containers": "container found exited",
        "adopted_containers": "running container kept", "removed_links": "removed stale link",
        "removed_netns": "removed stale network namespace", "restored_networks": "network checked",
        "released_external": "released CNI endpoint",
    }
    for key, label in labels.items():
        for name in report.get(key) or []:
            ctx.out(f"{label}: {name}\n")
    for line in report.get("errors") or []:
        ctx.err(f"error: {line}\n")
    return 1 if report.get("errors") else 0


def _arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def register(commands: Any) -> None:
    p = commands.add_parser("inspect", help="Return low-level information on berth objects")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("--type", choices=sorted(KINDS), help="Return JSON for specified type")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
    p.set_defaults(func=cmd_inspect)

    p = commands.add_parser("version", help="Show the berth version information")
    p.set_defaults(func=cmd_version)

    p = commands.add_parser("system", help="Manage berthd's state")
    sub = p.add_subparsers(dest="system_command", metavar="COMMAND", required=True)
    r = sub.add_parser("reconcile", help="Repair kernel state and records after a crash (also done at every start)")
    r.set_defaults(func=cmd_reconcile)
