"""The berth CLI end to end, as a subprocess, against a scripted fake Engine API on a unix socket.

The fake records every request (method, path, query, JSON body, headers) and answers from a script,
including streamed ``wait`` answers and ``101 UPGRADED`` hijacks for ``run``/``exec``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest

NET_ID = "a94e097a03dc" + "0" * 52
NET2_ID = "c49c88cd15ae" + "1" * 52
CID = "16059a3272dc" + "2" * 52


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        url = urlsplit(target)
        self.method, self.path, self.headers, self.raw = method, url.path, headers, body
        self.query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw.strip() else None


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeAPI:
    """Routes are (METHOD, regex on the path without /v1.41) → handler(request, conn, rfile) or a fixed answer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[Request] = []
        self.routes: list[tuple[str, re.Pattern[str], Any]] = []
        self.exited = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def route(self, method: str, pattern: str, answer: Any) -> None:
        self.routes.insert(0, (method, re.compile(pattern + "$"), answer))

    def close(self) -> None:
        self.sock.close()

    def find(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while True:
                line = rfile.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := rfile.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if "chunked" in headers.get("transfer-encoding", ""):
                    body = b""
                    while (size := int(rfile.readline().split(b";")[0], 16)):
                        body += rfile.read(size)
                        rfile.readline()
                    rfile.readline()
                else:
                    body = rfile.read(int(headers.get("content-length", 0)))
                req = Request(method, target, headers, body)
                self.requests.append(req)
                path = req.path[len("/v1.41"):] if req.path.startswith("/v1.41/") else req.path
                for m, pattern, answer in self.routes:
                    if m == method and pattern.match(path):
                        break
                else:
                    answer = (404, {"message": f"page not found: {path}"})
                if callable(answer):
                    if answer(req, conn, rfile) == "close":
                        return
                    continue
                status, payload = answer
                data = b"" if payload is None else (payload if isinstance(payload, bytes) else
                                                    (json.dumps(payload) + "\n").encode())
                conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        except OSError:
            return
        finally:
            rfile.close()
            conn.close()


def hijack(frames: list[bytes], echo_stdin: bool = False, on_done: Callable[[], None] | None = None) -> Callable:
    def handler(req: Request, conn: socket.socket, rfile: Any) -> str:
        assert req.headers.get("connection") == "Upgrade" and req.headers.get("upgrade") == "tcp"
        conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                     b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        for f in frames:
            conn.sendall(f)
        if echo_stdin:
            data = b""
            while chunk := rfile.read1(65536):
                data += chunk
            conn.sendall(frame(1, data.upper()))
        conn.shutdown(socket.SHUT_WR)
        if on_done:
            on_done()
        return "close"
    return handler


def streamed_wait(api: FakeAPI, code: int) -> Callable:
    def handler(req: Request, conn: socket.socket, rfile: Any) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        api.exited.wait(10)
        body = json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"
        conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    return handler


@pytest.fixture
def api(tmp_path: Path) -> Any:
    server = FakeAPI(str(tmp_path / "berth.sock"))
    yield server
    server.close()


def berth(api: FakeAPI, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return subprocess.run([sys.executable, "-m", "berth.cli.main", "-H", f"unix://{api.path}", *args],
                          input=stdin, capture_output=True, env=env, timeout=30)


NETS = [
    {"Name": "bridge", "Id": NET_ID, "Created": "2026-11-28T17:38:28.190586690Z", "Scope": "local", "Driver": "bridge",
     "EnableIPv6": False, "Internal": False, "Labels": {}},
    {"Name": "net10", "Id": NET2_ID, "Created": "2026-11-28T17:40:00Z", "Scope": "local", "Driver": "bridge",
     "EnableIPv6": True, "Internal": True, "Labels": {"rs.team": "net"}},
    {"Name": "net9", "Id": "f" * 64, "Created": "2026-11-28T17:40:00Z", "Scope": "local", "Driver": "bridge",
     "EnableIPv6": False, "Internal": False, "Labels": {}},
]


def test_network_ls_table_sorted_naturally(api: FakeAPI) -> None:
    api.route("GET", "/networks", (200, NETS))
    r = berth(api, "network", "ls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (
        "NETWORK ID     NAME      DRIVER    SCOPE\n"
        "a94e097a03dc   bridge    bridge    local\n"
        "ffffffffffff   net9      bridge    local\n"
        "c49c88cd15ae   net10     bridge    local\n")
    assert api.requests[0].headers["user-agent"].startswith("berth-cli/")
    assert api.requests[0].path == "/v1.41/networks"


def test_network_ls_filters_quiet_and_format(api: FakeAPI) -> None:
    api.route("GET", "/networks", (200, NETS[1:2]))
    r = berth(api, "network", "ls", "-q", "-f", "name=net1", "--filter", "label=rs.team")
    assert r.stdout.decode() == "c49c88cd15ae\n"
    assert json.loads(api.requests[0].query["filters"]) == {"name": {"net1": True}, "label": {"rs.team": True}}
    r = berth(api, "network", "ls", "--format", "table {{.Name}}\\t{{.IPv6}}\\t{{.Label \"rs.team\"}}")
    assert r.stdout.decode() == "NAME      IPV6      LABEL\nnet10     true      net\n"
    r = berth(api, "network", "ls", "--format", "json")
    assert json.loads(r.stdout) == {"CreatedAt": "2026-11-28 17:40:00 +0000 UTC", "Driver": "bridge",
                                    "ID": "c49c88cd15ae", "IPv4": "false", "IPv6": "true", "Internal": "true",
                                    "Labels": "rs.team=net", "Name": "net10", "Scope": "local"}


def test_network_create_sends_docker_body_and_prints_id(api: FakeAPI) -> None:
    api.route("POST", "/networks/create", (201, {"Id": NET2_ID, "Warning": ""}))
    r = berth(api, "network", "create", "--subnet", "10.77.0.0/16", "--gateway", "10.77.0.254", "--ip-range",
              "10.77.5.0/24", "--aux-address", "host1=10.77.0.5", "--ipv6", "--subnet", "fd77::/64",
              "-o", "com.docker.network.bridge.name=rs-br77", "--label", "rs.team=net", "--attachable", "rs-full")
    assert r.returncode == 0 and r.stdout.decode() == NET2_ID + "\n"
    body = api.find("POST", "/v1.41/networks/create")[0].body
    assert body["Name"] == "rs-full" and body["CheckDuplicate"] is True and body["EnableIPv6"] is True
    assert body["IPAM"] == {"Driver": "default", "Options": {}, "Config": [
        {"Subnet": "10.77.0.0/16", "IPRange": "10.77.5.0/24", "Gateway": "10.77.0.254",
         "AuxiliaryAddresses": {"host1": "10.77.0.5"}},
        {"Subnet": "fd77::/64", "IPRange": "", "Gateway": "", "AuxiliaryAddresses": {}}]}
    assert body["Options"] == {"com.docker.network.bridge.name": "rs-br77"} and body["Labels"] == {"rs.team": "net"}


def test_client_side_validation_sends_nothing(api: FakeAPI) -> None:
    r = berth(api, "network", "create", "--subnet", "10.1.0.0/16", "--aux-address", "a=10.2.0.1", "n")
    assert (r.returncode, r.stderr.decode()) == (1, "no matching subnet for aux-address 10.2.0.1\n")
    assert api.requests == []


def test_daemon_error_is_one_line(api: FakeAPI) -> None:
    api.route("POST", "/networks/create", (409, {"message": "network with name n already exists"}))
    r = berth(api, "network", "create", "n")
    assert (r.returncode, r.stdout, r.stderr.decode()) == (
        1, b"", "Error response from daemon: network with name n already exists\n")


def test_no_daemon_message(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", "--run-root", str(tmp_path), "ps"],
                       capture_output=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.decode() == (f"Cannot connect to the berth daemon at unix://{tmp_path}/berth.sock. "
                                 "Is berthd running? Start it with: berth daemon start\n")


def test_network_inspect_found_and_missing(api: FakeAPI) -> None:
    api.route("GET", "/networks/bridge", (200, {"Name": "bridge", "Id": NET_ID, "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}}))
    api.route("GET", "/networks/nope", (404, {"message": "network nope not found"}))
    r = berth(api, "network", "inspect", "bridge", "nope")
    assert r.returncode == 1
    assert json.loads(r.stdout) == [{"Name": "bridge", "Id": NET_ID, "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}}]
    assert r.stdout.decode().startswith('[\n    {\n        "Name": "bridge",')
    assert r.stderr.decode() == "Error response from daemon: network nope not found\n"
    r = berth(api, "network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}} {{.Name}}", "bridge")
    assert r.stdout.decode() == "172.17.0.16/16\n".replace("172.17.0.16/16", "172.17.0.0/16 bridge")
    r = berth(api, "network", "inspect", "-f", "{{.Nope}}", "bridge")
    assert r.returncode == 1 and b"map has no entry for key" in r.stderr and b"Traceback" not in r.stderr


def test_network_rm_reports_each(api: FakeAPI) -> None:
    api.route("DELETE", "/networks/a", (204, None))
    api.route("DELETE", "/networks/bridge", (403, {"message": "bridge is a pre-defined network and cannot be removed"}))
    r = berth(api, "network", "rm", "a", "bridge")
    assert r.returncode == 1 and r.stdout == b"a\n"
    assert r.stderr.decode() == "Error response from daemon: bridge is a pre-defined network and cannot be removed\n"


def test_network_prune_asks_first(api: FakeAPI) -> None:
    api.route("POST", "/networks/prune", (200, {"NetworksDeleted": ["rs-py"]}))
    r = berth(api, "network", "prune", stdin=b"n\n")
    assert r.returncode == 0 and api.requests == []
    assert r.stdout.decode().startswith("WARNING! This will remove all custom networks not used by at least one container.")
    r = berth(api, "network", "prune", stdin=b"y\n")
    assert r.stdout.decode().endswith("[y/N] Deleted Networks:\nrs-py\n\n")


def test_network_connect_body(api: FakeAPI) -> None:
    api.route("POST", "/networks/n1/connect", (200, None))
    r = berth(api, "network", "connect", "--ip", "10.99.0.50", "--alias", "zz", "n1", "c1")
    assert r.returncode == 0, r.stderr
    body = api.requests[0].body
    assert body["Container"] == "c1"
    assert body["EndpointConfig"]["IPAMConfig"] == {"IPv4Address": "10.99.0.50", "IPv6Address": "", "LinkLocalIPs": []}
    assert body["EndpointConfig"]["Aliases"] == ["zz"]


def test_run_foreground_sequence_output_and_exit_code(api: FakeAPI) -> None:
    api.route("POST", "/containers/create", (201, {"Id": CID, "Warnings": []}))
    api.route("POST", f"/containers/{CID}/attach",
              hijack([frame(1, b"hello\n"), frame(2, b"oops\n")], on_done=api.exited.set))
    api.route("POST", f"/containers/{CID}/wait", streamed_wait(api, 3))
    api.route("POST", f"/containers/{CID}/start", (204, None))
    r = berth(api, "run", "--rm", "--name", "web", "--network", "n1", "--ip", "10.99.0.50", "--network-alias", "web",
              "-p", "127.0.0.1:8099:80", "-e", "A=1", "img", "sh", "-c", "echo hello")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"hello\n", b"oops\n")
    sequence = [(q.method, q.path.split("/")[-1]) for q in api.requests]
    assert sequence == [("POST", "create"), ("POST", "attach"), ("POST", "wait"), ("POST", "start")]
    create, attach, wait = api.requests[0], api.requests[1], api.requests[2]
    assert create.query == {"name": "web"}
    body = create.body
    assert body["Image"] == "img" and body["Cmd"] == ["sh", "-c", "echo hello"] and body["Env"] == ["A=1"]
    assert body["ExposedPorts"] == {"80/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8099"}]}
    assert body["HostConfig"]["NetworkMode"] == "n1" and body["HostConfig"]["AutoRemove"] is True
    endpoint = body["NetworkingConfig"]["EndpointsConfig"]["n1"]
    assert endpoint["IPAMConfig"] == {"IPv4Address": "10.99.0.50"} and endpoint["Aliases"] == ["web"]
    assert attach.query == {"stream": "1", "stdout": "1", "stderr": "1"}
    assert wait.query == {"condition": "removed"}


def test_run_interactive_copies_stdin(api: FakeAPI) -> None:
    api.route("POST", "/containers/create", (201, {"Id": CID, "Warnings": []}))
    api.route("POST", f"/containers/{CID}/attach", hijack([], echo_stdin=True, on_done=api.exited.set))
    api.route("POST", f"/containers/{CID}/wait", streamed_wait(api, 0))
    api.route("POST", f"/containers/{CID}/start", (204, None))
    r = berth(api, "run", "-i", "--rootfs", "/srv/root", "cat", stdin=b"abc\n")
    assert (r.returncode, r.stdout) == (0, b"ABC\n")
    body = api.requests[0].body
    assert body["Image"] == "" and body["Cmd"] == ["cat"] and body["HostConfig"]["BerthRootfs"] == "/srv/root"
    assert body["OpenStdin"] and body["AttachStdin"] and body["StdinOnce"]
    assert api.requests[1].query["stdin"] == "1"


def test_run_detached_and_refused(api: FakeAPI) -> None:
    api.route("POST", "/containers/create", (201, {"Id": CID, "Warnings": []}))
    api.route("POST", f"/containers/{CID}/start", (204, None))
    r = berth(api, "run", "-d", "img", "sleep", "9")
    assert (r.returncode, r.stdout.decode()) == (0, CID + "\n")
    assert [q.path.split("/")[-1] for q in api.requests] == ["create", "start"]
    api.route("POST", "/containers/create", (404, {"message": "No such image: nope"}))
    r = berth(api, "run", "nope")
    assert (r.returncode, r.stderr.decode()) == (125, "Error response from daemon: No such image: nope\n")


def test_exec_exit_code(api: FakeAPI) -> None:
    api.route("GET", "/containers/c1/json", (200, {"Id": CID}))
    api.route("POST", "/containers/c1/exec", (201, {"Id": "e" * 64}))
    api.route("POST", f"/exec/{'e' * 64}/start", hijack([frame(1, b"hi\n")]))
    api.route("GET", f"/exec/{'e' * 64}/json", (200, {"Running": False, "ExitCode": 7}))
    r = berth(api, "exec", "c1", "sh", "-c", "echo hi; exit 7")
    assert (r.returncode, r.stdout) == (7, b"hi\n")
    body = api.find("POST", "/v1.41/containers/c1/exec")[0].body
    assert body["Cmd"] == ["sh", "-c", "echo hi; exit 7"] and body["AttachStdout"] and not body["AttachStdin"]
    assert api.find("POST", f"/v1.41/exec/{'e' * 64}/start")[0].body == {"Detach": False, "Tty": False}


def test_ps_table(api: FakeAPI) -> None:
    import time

    api.route("GET", "/containers/json", (200, [{
        "Id": CID, "Names": ["/web"], "Image": "bb:latest", "Command": "sh -c 'sleep 1000; echo done'",
        "Created": int(time.time()) - 150, "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
        "State": "running", "Status": "Up 2 minutes"}]))
    r = berth(api, "ps", "-a")
    assert api.requests[0].query == {"all": "1"}
    assert r.stdout.decode() == (
        "CONTAINER ID   IMAGE       COMMAND                  CREATED         STATUS         PORTS                  NAMES\n"
        "16059a3272dc   bb:latest   \"sh -c 'sleep 1000; …\"   2 minutes ago   Up 2 minutes   0.0.0.0:8080->80/tcp   web\n")


def test_images_import_and_load(api: FakeAPI, tmp_path: Path) -> None:
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(b"x" * 200000)
    received: list[bytes] = []

    def create(req: Request, conn: socket.socket, rfile: Any) -> None:
        received.append(req.raw)
        data = b'{"status":"sha256:abc"}\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))

    api.route("POST", "/images/create", create)
    r = berth(api, "import", str(tar), "bb:latest")
    assert (r.returncode, r.stdout) == (0, b"sha256:abc\n")
    assert received == [b"x" * 200000]
    assert api.requests[0].query == {"fromSrc": "-", "repo": "bb:latest"}
    api.route("POST", "/images/load", (200, b'{"stream":"Loaded image: bb:latest\\n"}\n'))
    r = berth(api, "load", "-i", str(tar))
    assert r.stdout == b"Loaded image: bb:latest\n"
    api.route("GET", "/images/json", (200, [{"Id": "sha256:" + "d" * 64, "RepoTags": ["bb:latest"],
                                             "Created": 0, "Size": 1982340}]))
    r = berth(api, "images")
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "REPOSITORY   TAG       IMAGE ID       CREATED        SIZE"
    assert lines[1].startswith("bb           latest    dddddddddddd   ") and lines[1].endswith("   1.98MB")


def test_inspect_falls_back_from_container_to_network(api: FakeAPI) -> None:
    api.route("GET", "/networks/n1", (200, {"Name": "n1"}))
    r = berth(api, "inspect", "-f", "{{.Name}}", "n1", "ghost")
    assert r.returncode == 1 and r.stdout == b"n1\n"
    assert r.stderr.decode() == "Error: No such object: ghost\n"
    assert [q.path for q in api.requests[:3]] == ["/v1.41/containers/n1/json", "/v1.41/images/n1/json", "/v1.41/networks/n1"]


def test_keepalive_one_connection_per_command(api: FakeAPI) -> None:
    api.route("DELETE", "/networks/.*", (204, None))
    connections: list[int] = []
    original = api._handle

    def counting(conn: socket.socket) -> None:
        connections.append(1)
        original(conn)

    api._handle = counting  # type: ignore[method-assign]
    r = berth(api, "network", "rm", "a", "b", "c")
    assert r.stdout == b"a\nb\nc\n" and len(api.requests) == 3 and len(connections) == 1


def test_inspect_without_daemon_says_only_that(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", "--run-root", str(tmp_path), "network", "inspect",
                        "a", "b"], capture_output=True, timeout=30)
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode().count("Cannot connect to the berth daemon") == 1


def test_cli_imports_stay_light() -> None:
    code = ("import sys; from berth.cli.main import build_parser; build_parser(); "
            "import berth.cli.client, berth.cli.render; "
            "print(sorted(m for m in ('pyroute2', 'asyncio', 'http.client', 'ssl', 'dataclasses', 'berth.config', "
            "'berth.errors', 'berth.engine', 'berth.api') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert r.stdout.decode().strip() == "[]", r.stderr
