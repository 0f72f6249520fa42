"""The Engine API routes berthd serves, mapped onto the engine."""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import re
import selectors
import signal
import socket
import struct
import threading
from typing import Any, BinaryIO, Callable, Iterator

from berth import API_VERSION, MIN_API_VERSION, __version__
from berth.api import descriptors, shapes, views
from berth.api.http import Request, Response
from berth.engine import Engine
from berth.engine.containers import _signal_number
from berth.engine.external import AddRequest
from berth.errors import BerthError, InvalidParameter, NotFound, NotModified

log = logging.getLogger("berth.api")

Handler = Callable[[Engine, Request], Response]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, re.compile("^" + pattern + "$"), fn))
        return fn

    return register


# Requests that add networks, endpoints, containers, processes or images: refused up front when berthd
# is short of file descriptors (descriptors.py). Removals and reads are always served.
GROWS = re.compile(r"^(/networks/create|/networks/[^/]+/connect|/containers/create|/containers/[^/]+/(start|restart|exec)"
                   r"|/exec/[^/]+/start|/images/(create|load))$")


def make_router(engine: Engine) -> Callable[[Request], Response]:
    def router(req: Request) -> Response:
        method = "GET" if req.method == "HEAD" else req.method
        path = req.path.rstrip("/") or "/"
        known_path = False
        for m, pattern, fn in ROUTES:
            match = pattern.match(path)
            if match:
                known_path = True
                if m == method:
                    req.params = {k: v for k, v in match.groupdict().items()}
                    try:
                        if method == "POST" and GROWS.match(path):
                            descriptors.ensure_headroom()
                        return fn(engine, req)
                    except NotModified:
                        return Response(304)
                    except BerthError as err:
                        return Response(err.status, {"message": err.message})
                    except Exception as err:  # noqa: BLE001 - a bug must answer 500, never kill the daemon
                        log.exception("%s %s failed", req.method, req.path)
                        return Response(500, {"message": failure_message(err)})
        if known_path:
            return Response(405, {"message": f"method {req.method} not allowed on {req.path}"})
        return Response(404, {"message": f"page not found"})

    return router


# A full or read-only disk under berthd's state is the machine's condition, not a bug: say so plainly.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def failure_message(err: Exception) -> str:
    """The one line a client sees for an unexpected failure (the undo stack has already run)."""
    if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
        where = f": {err.filename}" if err.filename else ""
        return f"berthd cannot write its state ({err.strerror}{where})"
    return f"internal error: {err}"


def parse_filters(req: Request) -> dict[str, list[str]]:
    """Both forms clients send: ``{"k": {"v": true}}`` (docker CLI) and ``{"k": ["v"]}`` (docker-py)."""
    raw = req.q("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"invalid filters: {raw}") from None
    if not isinstance(data, dict):
        raise InvalidParameter(f"invalid filters: {raw}")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = [k for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


# -- system -------------------------------------------------------------------------------------

@route("GET", "/_ping")
def ping(engine: Engine, req: Request) -> Response:
    return Response(200, b"OK", content_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"})


def _version_body() -> dict[str, Any]:
    details = {"ApiVersion": API_VERSION, "Arch": "amd64", "BuildTime": "", "Experimental": "false",
               "GitCommit": "", "GoVersion": "", "KernelVersion": platform.release(), "MinAPIVersion": MIN_API_VERSION,
               "Os": "linux"}
    return {
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
        "GoVersion": "", "Os": "linux", "Arch": "amd64", "KernelVersion": platform.release(), "BuildTime": "",
    }


@route("GET", "/version")
def version(engine: Engine, req: Request) -> Response:
    return Response(200, _version_body())


@route("GET", "/info")
def info(engine: Engine, req: Request) -> Response:
    cs = engine.ctx.store.containers()
    running = sum(1 for c in cs if c.state.running)
    return Response(200, {
        "ID": "", "Containers": len(cs), "ContainersRunning": running, "ContainersPaused": 0,
        "ContainersStopped": len(cs) - running, "Images": len(engine.ctx.images.list()), "Driver": "overlay2",
        "Name": platform.node(), "ServerVersion": __version__, "OperatingSystem": "linux", "OSType": "linux",
        "Architecture": platform.machine(), "KernelVersion": platform.release(),
        "DockerRootDir": str(engine.ctx.paths.root), "Swarm": {"LocalNodeState": "inactive"},
    })


@route("POST", "/swarm/leave")
def swarm_leave(engine: Engine, req: Request) -> Response:
    return Response(503, {"message": "This node is not part of a swarm"})


@route("POST", "/berth/reconcile")
def berth_reconcile(engine: Engine, req: Request) -> Response:
    return Response(200, engine.reconcile().as_dict())


# -- berth-cni: endpoints in namespaces berth does not own ------------------------------------------

def _cni_call(req: Request, fn: Callable[[dict[str, Any]], Any]) -> Response:
    """berth-cni's calls: JSON in and out; an error carries its CNI code beside the message."""
    body = req.json()
    try:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid berth-cni request: a JSON object is expected")
        return Response(200, fn(body))
    except BerthError as err:
        return Response(err.status, {"message": err.message, "cniCode": err.cni_code})


def _attachment_key(body: dict[str, Any]) -> tuple[str, str, str]:
    return str(body.get("containerID") or ""), str(body.get("ifname") or ""), str(body.get("cniNetwork") or "")


@route("POST", "/berth/cni/add")
def cni_add(engine: Engine, req: Request) -> Response:
    return _cni_call(req, lambda body: engine.external.add(AddRequest.from_json(body)))


@route("POST", "/berth/cni/del")
def cni_del(engine: Engine, req: Request) -> Response:
    return _cni_call(req, lambda body: engine.external.delete(*_attachment_key(body)) or {})


@route("POST", "/berth/cni/check")
def cni_check(engine: Engine, req: Request) -> Response:
    return _cni_call(req, lambda body: engine.external.check(*_attachment_key(body)) or {})


@route("POST", "/berth/cni/gc")
def cni_gc(engine: Engine, req: Request) -> Response:
    def gc(body: dict[str, Any]) -> dict[str, Any]:
        valid = [(str(v.get("containerID") or ""), str(v.get("ifname") or ""))
                 for v in body.get("validAttachments") or [] if isinstance(v, dict)]
        return {"Released": engine.external.gc(str(body.get("cniNetwork") or ""), valid)}

    return _cni_call(req, gc)


@route("GET", "/berth/cni/status")
def cni_status(engine: Engine, req: Request) -> Response:
    return Response(200, {})


# -- networks -----------------------------------------------------------------------------------

@route("GET", "/networks")
def network_list(engine: Engine, req: Request) -> Response:
    nets = engine.networks.list(parse_filters(req))
    return Response(200, [views.network_json(engine, n) for n in nets])


@route("GET", "/networks/(?P<id>[^/]+)")
def network_inspect(engine: Engine, req: Request) -> Response:
    net = engine.networks.resolve(req.params["id"])
    scope = req.q("scope")
    if scope and scope != net.scope:
        raise NotFound(f"network {req.params['id']} not found")
    return Response(200, views.network_json(engine, net))


@route("POST", "/networks/create")
def network_create(engine: Engine, req: Request) -> Response:
    body = req.json()
    if not isinstance(body, dict):
        raise InvalidParameter("invalid network create request")
    net = engine.networks.create(shapes.checked(body, shapes.NETWORK_CREATE))
    return Response(201, {"Id": net.id, "Warning": ""})


@route("DELETE", "/networks/(?P<id>[^/]+)")
def network_remove(engine: Engine, req: Request) -> Response:
    engine.networks.remove(req.params["id"])
    return Response(204)


@route("POST", "/networks/(?P<id>[^/]+)/connect")
def network_connect(engine: Engine, req: Request) -> Response:
    body = shapes.checked(req.json(), shapes.CONNECT)
    engine.containers.connect(req.params["id"], body.get("Container") or "", body.get("EndpointConfig") or {})
    return Response(200)


@route("POST", "/networks/(?P<id>[^/]+)/disconnect")
def network_disconnect(engine: Engine, req: Request) -> Response:
    body = shapes.checked(req.json(), shapes.DISCONNECT)
    engine.containers.disconnect(req.params["id"], body.get("Container") or "", bool(body.get("Force")))
    return Response(200)


@route("POST", "/networks/prune")
def network_prune(engine: Engine, req: Request) -> Response:
    deleted = engine.networks.prune(parse_filters(req))
    return Response(200, {"NetworksDeleted": deleted or None})


# -- containers ---------------------------------------------------------------------------------

@route("POST", "/containers/create")
def container_create(engine: Engine, req: Request) -> Response:
    body = shapes.checked(req.json(), shapes.CONTAINER_CREATE)
    c = engine.containers.create(req.q("name") or None, body)
    warnings = []
    if c.network_mode == "host" and (c.host_config.get("PortBindings") or c.host_config.get("PublishAllPorts")):
        warnings.append("Published ports are discarded when using host network mode")
    return Response(201, {"Id": c.id, "Warnings": warnings})


@route("GET", "/containers/json")
def container_list(engine: Engine, req: Request) -> Response:
    show_all = req.flag("all")
    filters = parse_filters(req)
    out = []
    for c in engine.containers.all():
        if not show_all and not c.state.running:
            continue
        if not _container_matches(c, filters):
            continue
        out.append(views.container_summary(engine, c))
    out.sort(key=lambda item: item["Created"], reverse=True)
    limit = req.integer("limit") or -1
    return Response(200, out[:limit] if limit > 0 else out)


def _container_matches(c: Any, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v.lstrip("/") in c.name for v in values):
            return False
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "status" and c.state.status not in values:
            return False
        if key == "network" and not any(v in (c.network_mode,) for v in values):
            return False
        if key not in ("name", "id", "status", "network", "label"):
            raise InvalidParameter(f"Invalid filter '{key}'")
    return True


@route("GET", "/containers/(?P<id>[^/]+)/json")
def container_inspect(engine: Engine, req: Request) -> Response:
    return Response(200, views.container_json(engine, engine.containers.resolve(req.params["id"])))


@route("POST", "/containers/(?P<id>[^/]+)/start")
def container_start(engine: Engine, req: Request) -> Response:
    engine.containers.start(req.params["id"])
    return Response(204)


@route("POST", "/containers/(?P<id>[^/]+)/stop")
def container_stop(engine: Engine, req: Request) -> Response:
    t = req.integer("t")
    engine.containers.stop(req.params["id"], None if t is None else float(t))
    return Response(204)


@route("POST", "/containers/(?P<id>[^/]+)/restart")
def container_restart(engine: Engine, req: Request) -> Response:
    t = req.integer("t")
    try:
        engine.containers.stop(req.params["id"], None if t is None else float(t))
    except NotModified:
        pass
    engine.containers.start(req.params["id"])
    return Response(204)


@route("POST", "/containers/(?P<id>[^/]+)/kill")
def container_kill(engine: Engine, req: Request) -> Response:
    engine.containers.kill(req.params["id"], _signal_number(req.q("signal") or "SIGKILL"))
    return Response(204)


@route("DELETE", "/containers/(?P<id>[^/]+)")
def container_remove(engine: Engine, req: Request) -> Response:
    engine.containers.remove(req.params["id"], force=req.flag("force"))
    return Response(204)


@route("POST", "/containers/(?P<id>[^/]+)/wait")
def container_wait(engine: Engine, req: Request) -> Response:
    ref = req.params["id"]
    condition = req.q("condition") or "not-running"
    engine.containers.resolve(ref)  # 404 before the streamed 200

    def body() -> Iterator[bytes]:
        yield b""
        try:
            code = engine.containers.wait(ref, condition)
            yield (json.dumps({"StatusCode": code or 0, "Error": None}) + "\n").encode()
        except BerthError as err:
            yield (json.dumps({"StatusCode": -1, "Error": {"Message": err.message}}) + "\n").encode()

    return Response(200, stream=body())


@route("POST", "/containers/(?P<id>[^/]+)/attach")
def container_attach(engine: Engine, req: Request) -> Response:
    ref = req.params["id"]
    c = engine.containers.resolve(ref)
    flags = {"stdin": req.flag("stdin"), "stdout": req.flag("stdout"), "stderr": req.flag("stderr"),
             "logs": req.flag("logs"), "stream": req.flag("stream")}
    if not c.state.running and c.state.status != "created":
        frames = engine.ctx.runtime.logs(c.id, stdout=flags["stdout"], stderr=flags["stderr"]) if flags["logs"] else iter(())

        def replay(client: socket.socket, rfile: BinaryIO) -> None:
            for frame in frames:
                client.sendall(frame)

        return Response(hijack=replay)

    pending = engine.containers.attach(c.id, flags)

    def pipe(client: socket.socket, rfile: BinaryIO) -> None:
        monitor = engine.containers.attached(pending)
        if monitor is None:
            return
        _splice(client, rfile, monitor, flags["stdin"])

    return Response(hijack=pipe)


def _pump(rfile: BinaryIO, write: Callable[[bytes], Any], close: Callable[[], Any]) -> None:
    """Copy a hijacked client's bytes to a container's stdin in a thread; its EOF closes that stdin."""
    def run() -> None:
        try:
            while data := rfile.read1(65536):  # type: ignore[attr-defined]
                write(data)
        except (OSError, ValueError):
            pass
        finally:
            try:
                close()
            except OSError:
                pass

    threading.Thread(target=run, daemon=True).start()


def _splice(client: socket.socket, rfile: BinaryIO, monitor: socket.socket, stdin: bool) -> None:
    """Copy monitor output to the client and, when attached, the client's bytes to the container's stdin."""
    if stdin:
        _pump(rfile, monitor.sendall, lambda: monitor.shutdown(socket.SHUT_WR))
    try:
        while True:
            data = monitor.recv(65536)
            if not data:
                break
            client.sendall(data)
    finally:
        monitor.close()
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@route("GET", "/containers/(?P<id>[^/]+)/logs")
def container_logs(engine: Engine, req: Request) -> Response:
    c = engine.containers.resolve(req.params["id"])
    tail = None if req.q("tail") in ("", "all") else req.integer("tail")
    frames = engine.ctx.runtime.logs(
        c.id, stdout=req.flag("stdout"), stderr=req.flag("stderr"), follow=req.flag("follow"),
        tail=tail, timestamps=req.flag("timestamps"),
    )
    return Response(200, stream=frames, content_type="application/vnd.docker.raw-stream")


# -- exec ---------------------------------------------------------------------------------------

@route("POST", "/containers/(?P<id>[^/]+)/exec")
def exec_create(engine: Engine, req: Request) -> Response:
    record = engine.containers.exec_create(req.params["id"], shapes.checked(req.json(), shapes.EXEC_CREATE))
    return Response(201, {"Id": record.id})


@route("POST", "/exec/(?P<id>[^/]+)/start")
def exec_start(engine: Engine, req: Request) -> Response:
    body = req.json()
    exec_id = req.params["id"]
    record = engine.containers.exec_get(exec_id)
    proc = engine.containers.exec_start(exec_id)
    if body.get("Detach"):
        threading.Thread(target=lambda: engine.containers.exec_finished(exec_id, proc.wait()), daemon=True).start()
        return Response(200)

    def run(client: socket.socket, rfile: BinaryIO) -> None:
        try:
            _stream_process(proc, client, rfile, record.attach_stdin, record.attach_stdout, record.attach_stderr)
        finally:
            engine.containers.exec_finished(exec_id, proc.wait())

    return Response(hijack=run)


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed stream frame: stream id, three zero bytes, big-endian length, payload."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def _stream_process(proc: Any, client: socket.socket, rfile: BinaryIO, stdin: bool, stdout: bool, stderr: bool) -> None:
    if stdin and proc.stdin is not None:
        def write(data: bytes) -> None:
            proc.stdin.write(data)
            proc.stdin.flush()

        _pump(rfile, write, proc.stdin.close)
    sel = selectors.DefaultSelector()
    for pipe, sid in ((proc.stdout, 1), (proc.stderr, 2)):
        if pipe is not None:
            sel.register(pipe, selectors.EVENT_READ, sid)
    wanted = {1: stdout, 2: stderr}
    while sel.get_map():
        for key, _ in sel.select():
            data = os.read(key.fd, 65536)
            if not data:
                sel.unregister(key.fileobj)
                continue
            if wanted[key.data]:
                try:
                    client.sendall(frame(key.data, data))
                except OSError:
                    proc.kill()
                    return
    try:
        client.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@route("GET", "/exec/(?P<id>[^/]+)/json")
def exec_inspect(engine: Engine, req: Request) -> Response:
    r = engine.containers.exec_get(req.params["id"])
    return Response(200, {
        "ID": r.id, "Running": r.running, "ExitCode": r.exit_code,
        "ProcessConfig": {"tty": False, "entrypoint": r.cmd[0], "arguments": r.cmd[1:], "privileged": False},
        "OpenStdin": r.attach_stdin, "OpenStderr": r.attach_stderr, "OpenStdout": r.attach_stdout,
        "CanRemove": False, "ContainerID": r.container_id, "DetachKeys": "", "Pid": r.pid,
    })


@route("POST", "/exec/(?P<id>[^/]+)/resize")
def exec_resize(engine: Engine, req: Request) -> Response:
    engine.containers.exec_get(req.params["id"])
    return Response(200)


# -- images -------------------------------------------------------------------------------------

@route("GET", "/images/json")
def image_list(engine: Engine, req: Request) -> Response:
    refs = parse_filters(req).get("reference", [])
    out = []
    for image in engine.ctx.images.list():
        if refs and not any(_ref_matches(t, r) for t in image.repo_tags for r in refs):
            continue
        out.append(views.image_summary(image))
    return Response(200, out)


def _ref_matches(tag: str, ref: str) -> bool:
    import fnmatch

    if ":" not in ref:
        return fnmatch.fnmatch(tag.rsplit(":", 1)[0], ref)
    return fnmatch.fnmatch(tag, ref)


@route("GET", "/images/(?P<name>.+)/json")
def image_inspect(engine: Engine, req: Request) -> Response:
    return Response(200, views.image_json(engine.ctx.images.get(req.params["name"])))


@route("POST", "/images/create")
def image_create(engine: Engine, req: Request) -> Response:
    if req.q("fromSrc") != "-":
        image = req.q("fromImage")
        raise NotFound(f"pull access denied for {image}: berth does not pull from registries; use berth import or berth load")
    repo = req.q("repo")
    tag = req.q("tag")
    reference = f"{repo}:{tag}" if repo and tag else repo
    image = engine.ctx.images.import_tar(req.body, reference)
    return Response(200, (json.dumps({"status": image.id}) + "\n").encode())


@route("POST", "/images/load")
def image_load(engine: Engine, req: Request) -> Response:
    images = engine.ctx.images.load(req.body)
    lines = []
    for image in images:
        for tag in image.repo_tags or (image.id,):
            label = "Loaded image" if image.repo_tags else "Loaded image ID"
            lines.append(json.dumps({"stream": f"{label}: {tag}\n"}))
    return Response(200, ("\n".join(lines) + "\n").encode())


@route("DELETE", "/images/(?P<name>.+)")
def image_remove(engine: Engine, req: Request) -> Response:
    def in_use(image_id: str) -> str | None:
        for c in engine.containers.all():
            if c.image_id == image_id:
                return c.id
        return None

    return Response(200, engine.ctx.images.remove(req.params["name"], in_use_by=in_use))
