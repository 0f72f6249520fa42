"""Container commands: run, exec, ps, start, stop, kill, rm, logs, wait, port."""

from __future__ import annotations

import argparse
import time
from typing import IO, TYPE_CHECKING, Any, Iterator

from berth.cli.client import path_quote
from berth.cli.errors import CLIError, DaemonError
from berth.cli.render import Row, ellipsis, format_rows
from berth.units import human_duration

if TYPE_CHECKING:
    from berth.cli.client import Client, Connection
    from berth.cli.context import Context

PS_FIELDS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
             "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Names": "NAMES",
             "Labels": "LABELS", "Networks": "NETWORKS", "Mounts": "MOUNTS"}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def _binary(stream: IO[str]) -> IO[bytes]:
    stream.flush()
    return getattr(stream, "buffer", stream)  # type: ignore[return-value]


def _demux_connection(ctx: "Context", conn: "Connection") -> None:
    from berth.cli.streams import demux

    assert conn.rfile is not None
    demux(conn.rfile.read1, _binary(ctx.stdout), _binary(ctx.stderr))  # type: ignore[attr-defined]


# -- run ------------------------------------------------------------------------------------

class _SignalProxy:
    """docker's sig-proxy: SIGINT/SIGTERM received while attached are forwarded to the container."""

    def __init__(self, client: "Client", container_id: str) -> None:
        import signal

        self._client, self._id, self._signal = client, container_id, signal
        self._old = {s: signal.signal(s, self._forward) for s in (signal.SIGINT, signal.SIGTERM)}

    def _forward(self, signum: int, frame: object) -> None:
        try:
            self._client.post(f"/containers/{self._id}/kill", query={"signal": self._signal.Signals(signum).name})
        except CLIError:
            pass

    def restore(self) -> None:
        for signum, handler in self._old.items():
            self._signal.signal(signum, handler)


def cmd_run(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.runconfig import RunError, create_request, start_failure_code

    body = create_request(args)
    client = ctx.client
    try:
        created = client.post("/containers/create", body, {"name": args.name} if args.name else None)
    except DaemonError as err:
        raise RunError(err.message) from None
    for warning in created.get("Warnings") or []:
        ctx.err(f"WARNING: {warning}\n")
    cid = created["Id"]
    if args.detach:
        try:
            client.post(f"/containers/{cid}/start")
        except DaemonError as err:
            raise CLIError(err.message, start_failure_code(err.detail)) from None
        ctx.out(cid + "\n")
        return 0
    attach = client.dedicated()
    query = {"stream": 1, "stdout": 1, "stderr": 1, **({"stdin": 1} if args.interactive else {})}
    client.send("POST", f"/containers/{cid}/attach", query, conn=attach, upgrade=True)
    waiter = client.dedicated()
    wait = client.send("POST", f"/containers/{cid}/wait", {"condition": "removed" if args.rm else "next-exit"},
                       conn=waiter)
    try:
        client.post(f"/containers/{cid}/start")
    except DaemonError as err:
        raise CLIError(err.message, start_failure_code(err.detail)) from None
    proxy = _SignalProxy(client, cid)
    try:
        if args.interactive:
            from berth.cli.streams import pump_stdin

            assert attach.sock is not None
            pump_stdin(attach.sock, ctx.stdin.fileno())
        _demux_connection(ctx, attach)
        return _exit_status(wait.json())
    finally:
        proxy.restore()
        attach.close()
        waiter.close()


def _exit_status(result: Any) -> int:
    result = result or {}
    error = result.get("Error")
    if error and error.get("Message"):
        raise CLIError(f"Error response from daemon: {error['Message']}", 125)
    return int(result.get("StatusCode", 0))


# -- exec -----------------------------------------------------------------------------------

def exec_body(args: argparse.Namespace) -> dict[str, Any]:
    from berth.cli.runconfig import parse_env

    return {"User": args.user or "", "Privileged": args.privileged, "Tty": False,
            "AttachStdin": args.interactive and not args.detach, "AttachStderr": not args.detach,
            "AttachStdout": not args.detach, "Detach": args.detach, "DetachKeys": "",
            "Env": parse_env(args.env) or None, "WorkingDir": args.workdir or "", "Cmd": list(args.command)}


def cmd_exec(ctx: "Context", args: argparse.Namespace) -> int:
    if args.tty:
        raise CLIError("the -t/--tty option is not supported: berth has no TTY support yet; run without -t")
    if not args.command:
        raise CLIError('"berth exec" requires at least 2 arguments')
    client = ctx.client
    ref = path_quote(args.container)
    client.get(f"/containers/{ref}/json")
    exec_id = client.post(f"/containers/{ref}/exec", exec_body(args))["Id"]
    if args.detach:
        client.post(f"/exec/{exec_id}/start", {"Detach": True, "Tty": False})
        return 0
    conn = client.dedicated()
    try:
        client.send("POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False}, conn=conn, upgrade=True)
        if args.interactive:
            from berth.cli.streams import pump_stdin

            assert conn.sock is not None
            pump_stdin(conn.sock, ctx.stdin.fileno())
        _demux_connection(ctx, conn)
    finally:
        conn.close()
    return _exec_exit_code(client, exec_id)


def _exec_exit_code(client: "Client", exec_id: str, timeout: float = 10.0) -> int:
    """The exit code is recorded when the daemon reaps the process, just after the output ends."""
    deadline = time.monotonic() + timeout
    while True:
        info = client.get(f"/exec/{exec_id}/json")
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        if time.monotonic() > deadline:
            raise CLIError(f"exec {exec_id[:12]} ended its output but the daemon reports no exit code")
        time.sleep(0.02)


# -- ps -------------------------------------------------------------------------------------

def displayable_ports(ports: list[dict[str, Any]]) -> str:
    """docker's DisplayablePorts: consecutive ports grouped into ranges, then explicit host mappings."""
    groups: dict[str, list[int]] = {}
    result: list[str] = []
    mappings: list[str] = []

    def form(key: str, first: int, last: int) -> str:
        ip, _, proto = key.rpartition("/")
        text = str(first) if first == last else f"{first}-{last}"
        if ip:
            text = f"[{ip}]:{text}->{text}" if ":" in ip else f"{ip}:{text}->{text}"
        return f"{text}/{proto}"

    ordered = sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""), p.get("PublicPort", 0),
                                           p.get("Type", "")))
    for port in ordered:
        current = port.get("PrivatePort", 0)
        key = port.get("Type", "tcp")
        ip = port.get("IP", "")
        if ip:
            if port.get("PublicPort", 0) != current:
                host = f"[{ip}]" if ":" in ip else ip
                mappings.append(f"{host}:{port.get('PublicPort', 0)}->{current}/{port.get('Type', 'tcp')}")
                continue
            key = f"{ip}/{key}"
        group = groups.get(key)
        if group is None:
            groups[key] = [current, current]
        elif current == group[1] + 1:
            group[1] = current
        else:
            result.append(form(key, *group))
            groups[key] = [current, current]
    result += [form(key, *group) for key, group in groups.items()]
    return ", ".join(result + mappings)


class ContainerRow(Row):
    FIELDS = PS_FIELDS
    type_name = "formatter.ContainerContext"

    def __init__(self, c: dict[str, Any], trunc: bool, now: float) -> None:
        self._c, self._trunc, self._now = c, trunc, now

    @property
    def ID(self) -> str:
        return self._c.get("Id", "")[:12] if self._trunc else self._c.get("Id", "")

    @property
    def Image(self) -> str:
        image = self._c.get("Image", "")
        if self._trunc and image.startswith("sha256:"):
            return image[len("sha256:"):][:12]
        return image

    @property
    def Command(self) -> str:
        import json

        command = self._c.get("Command", "")
        return json.dumps(ellipsis(command, 20) if self._trunc else command, ensure_ascii=False)

    @property
    def CreatedAt(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(self._c.get("Created", 0)))

    @property
    def RunningFor(self) -> str:
        return human_duration(self._now - self._c.get("Created", 0)) + " ago"

    @property
    def Ports(self) -> str:
        return displayable_ports(self._c.get("Ports") or [])

    @property
    def State(self) -> str:
        return self._c.get("State", "")

    @property
    def Status(self) -> str:
        return self._c.get("Status", "")

    @property
    def Names(self) -> str:
        names = [n[1:] if n.startswith("/") else n for n in self._c.get("Names") or []]
        if self._trunc:
            names = [n for n in names if "/" not in n][:1] or names[:1]
        return ",".join(names)

    @property
    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted((self._c.get("Labels") or {}).items()))

    def Label(self, name: str) -> str:
        return (self._c.get("Labels") or {}).get(name, "")

    @property
    def Networks(self) -> str:
        return ",".join(sorted(((self._c.get("NetworkSettings") or {}).get("Networks") or {})))

    @property
    def Mounts(self) -> str:
        return ",".join(m.get("Name") or m.get("Source", "") for m in self._c.get("Mounts") or [])


def cmd_ps(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.options import filters_query

    query: dict[str, Any] = {"all": 1} if args.all else {}
    query.update(filters_query(args.filter) or {})
    containers = ctx.client.get("/containers/json", query or None) or []
    now = time.time()
    rows = [ContainerRow(c, not args.no_trunc, now) for c in containers]
    fmt = "{{.ID}}" if args.quiet else args.format
    ctx.out(format_rows(rows, fmt, PS_TABLE, PS_FIELDS))
    return 0


# -- simple per-container verbs ---------------------------------------------------------------

def _each(ctx: "Context", refs: list[str], method: str, suffix: str, query: dict[str, Any] | None = None) -> int:
    """Apply one request per container, print each name done and each error; exit 1 if any failed."""
    status = 0
    for ref in refs:
        try:
            ctx.client.call(method, f"/containers/{path_quote(ref)}{suffix}", query)
        except DaemonError as err:
            ctx.err(err.message + "\n")
            status = 1
            continue
        ctx.out(ref + "\n")
    return status


def cmd_start(ctx: "Context", args: argparse.Namespace) -> int:
    return _each(ctx, args.containers, "POST", "/start")


def cmd_stop(ctx: "Context", args: argparse.Namespace) -> int:
    return _each(ctx, args.containers, "POST", "/stop", {"t": args.time} if args.time is not None else None)


def cmd_kill(ctx: "Context", args: argparse.Namespace) -> int:
    return _each(ctx, args.containers, "POST", "/kill", {"signal": args.signal} if args.signal else None)


def cmd_rm(ctx: "Context", args: argparse.Namespace) -> int:
    return _each(ctx, args.containers, "DELETE", "", {"force": 1} if args.force else None)


def cmd_wait(ctx: "Context", args: argparse.Namespace) -> int:
    status = 0
    for ref in args.containers:
        try:
            result = ctx.client.post(f"/containers/{path_quote(ref)}/wait")
        except DaemonError as err:
            ctx.err(err.message + "\n")
            status = 1
            continue
        ctx.out(f"{(result or {}).get('StatusCode', 0)}\n")
    return status


class _ChunkReader:
    """``read(n)`` over a streamed response body, for the frame demultiplexer."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._pending = chunks, b""

    def read(self, n: int) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        out, self._pending = self._pending[:n], self._pending[n:]
        return out


def cmd_logs(ctx: "Context", args: argparse.Namespace) -> int:
    from berth.cli.streams import demux

    query = {"stdout": 1, "stderr": 1, "follow": 1 if args.follow else None,
             "tail": args.tail, "timestamps": 1 if args.timestamps else None}
    conn = ctx.client.dedicated()
    try:
        resp = ctx.client.send("GET", f"/containers/{path_quote(args.container)}/logs", query, conn=conn)
        demux(_ChunkReader(resp.chunks()).read, _binary(ctx.stdout), _binary(ctx.stderr))
    finally:
        conn.close()
    return 0


def cmd_port(ctx: "Context", args: argparse.Namespace) -> int:
    info = ctx.client.get(f"/containers/{path_quote(args.container)}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    wanted = args.port
    if wanted and "/" not in wanted:
        wanted += "/tcp"
    lines = []
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        if wanted and key != wanted:
            continue
        for binding in ports[key] or []:
            ip = binding.get("HostIp", "")
            host = f"[{ip}]" if ":" in ip else ip
            lines.append(f"{host}:{binding.get('HostPort', '')}" if wanted else f"{key} -> {host}:{binding.get('HostPort', '')}")
    if wanted and not lines:
        raise CLIError(f"Error: No public port '{wanted}' published for {args.container}")
    ctx.out("".join(line + "\n" for line in lines))
    return 0


# -- argument parsing ------------------------------------------------------------------------

def register(commands: Any) -> None:
    from berth.cli.runconfig import add_run_arguments

    p = commands.add_parser("run", help="Create and run a new container", add_help=False)
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("exec", help="Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY (not supported)")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("-u", "--user", help="Username or UID")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the command")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=cmd_exec)

    p = commands.add_parser("ps", help="List containers")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.set_defaults(func=cmd_ps)

    for name, func, help_text in (("start", cmd_start, "Start one or more stopped containers"),
                                  ("stop", cmd_stop, "Stop one or more running containers"),
                                  ("kill", cmd_kill, "Kill one or more running containers"),
                                  ("rm", cmd_rm, "Remove one or more containers"),
                                  ("wait", cmd_wait, "Block until containers stop, then print their exit codes")):
        p = commands.add_parser(name, help=help_text)
        if name == "stop":
            p.add_argument("-t", "--time", type=int, help="Seconds to wait before killing the container")
        elif name == "kill":
            p.add_argument("-s", "--signal", help="Signal to send to the container")
        elif name == "rm":
            p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.set_defaults(func=func)

    p = commands.add_parser("logs", help="Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", help='Number of lines to show from the end of the logs (default "all")')
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_logs)

    p = commands.add_parser("port", help="List port mappings or a specific mapping for the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    p.set_defaults(func=cmd_port)

