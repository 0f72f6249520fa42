"""berth itself: attach/detach of a running container through the Engine API (the requests the docker
CLI sends) and through the ``berth`` CLI, network create/rm, and the k-th attach as a network fills up
to the Linux bridge's port limit, with berthd's memory along the way.

Runs in the bench process, outside the throwaway host: it talks to berthd's unix socket, as a client
on the same machine would.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from anchors import Box, Samples, memory, timed

IMAGE = "bb"
PROBE = "probe"
NETWORK = "benchnet"
FILL_NETWORK = "fillnet"
# Linux refuses a bridge's 1024th port (BR_MAX_PORTS); berth must say so clearly.
BRIDGE_PORTS = 1023


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Engine:
    """A keep-alive Engine API v1.41 client over berthd's unix socket (like the docker CLI's)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("localhost")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        conn.sock = sock
        return conn

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, "/v1.41" + path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.status >= 300:
            try:
                message = json.loads(raw)["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace")
            raise ApiError(resp.status, message)
        return json.loads(raw) if raw.strip() else None

    def close(self) -> None:
        self.conn.close()


def cli_argv() -> list[str]:
    """The installed ``berth`` entry point (not a version manager's shim), else the module."""
    script = Path(sys.executable).with_name("berth")
    return [str(script)] if script.exists() else [sys.executable, "-m", "berth.cli.main"]


class Berth:
    """One berthd in a throwaway host, with the image, a bridge network and a running probe container."""

    def __init__(self, box: Box, rootfs_tar: Path) -> None:
        self.box = box
        self.cli("import", str(rootfs_tar), IMAGE)
        self.engine = Engine(box.socket)
        self.memory: dict[str, list[float]] = {}
        self.record_memory()  # idle: no container yet
        self.network = self.engine.call("POST", "/networks/create",
                                        {"Name": NETWORK, "IPAM": {"Config": [{"Subnet": "10.90.0.0/16"}]}})["Id"]
        self.probe = self.start(PROBE, "bridge")
        self.runs: list[str] = []

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*cli_argv(), *args], capture_output=True, text=True, env=self.box.env(), timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"berth {' '.join(args)}: {result.stderr.strip()}")
        return result

    def start(self, name: str, network: str) -> str:
        made = self.engine.call("POST", f"/containers/create?name={name}",
                                {"Image": IMAGE, "Cmd": ["sleep", "1000000"], "HostConfig": {"NetworkMode": network}})
        self.engine.call("POST", f"/containers/{made['Id']}/start")
        return made["Id"]

    def address(self, container: str, network: str) -> str:
        info = self.engine.call("GET", f"/containers/{container}/json")
        return info["NetworkSettings"]["Networks"][network]["IPAddress"]

    def endpoints(self) -> int:
        """Endpoints attached right now, over every network, as the container list reports them."""
        return sum(len(c["NetworkSettings"]["Networks"]) for c in self.engine.call("GET", "/containers/json"))

    def record_memory(self) -> None:
        memory.record(self.box, self.memory, self.endpoints())

    # -- one container, one network --------------------------------------------------------------

    def connect(self, network: str | None = None) -> None:
        self.engine.call("POST", f"/networks/{network or self.network}/connect", {"Container": self.probe})

    def disconnect(self, network: str | None = None) -> None:
        self.engine.call("POST", f"/networks/{network or self.network}/disconnect", {"Container": self.probe})

    def attach_rounds(self, rounds: int) -> Samples:
        out: Samples = {}
        steps: list[tuple[str, Callable[[], object]]] = [
            ("berth API attach", self.connect), ("berth API detach", self.disconnect),
            ("berth CLI attach", lambda: self.cli("network", "connect", NETWORK, PROBE)),
            ("berth CLI detach", lambda: self.cli("network", "disconnect", NETWORK, PROBE)),
        ]
        for _ in range(rounds):
            for label, step in steps:
                out.setdefault(label, []).append(timed(step))
        return out

    def network_rounds(self, rounds: int) -> Samples:
        out: Samples = {"berth API network create": [], "berth API network rm": []}
        for i in range(rounds):
            made: dict[str, str] = {}
            out["berth API network create"].append(
                timed(lambda: made.update(self.engine.call("POST", "/networks/create", {"Name": f"bn{i}"}))))
            out["berth API network rm"].append(timed(lambda: self.engine.call("DELETE", f"/networks/{made['Id']}")))
        return out

    def run_rounds(self, rounds: int) -> Samples:
        """``run -d`` until running (create + start) on the default bridge; the containers keep running
        until :meth:`remove_runs`, so that memory can be read with them."""
        out: Samples = {"berth API run -d": []}
        for _ in range(rounds):
            name = f"run{len(self.runs)}"
            out["berth API run -d"].append(timed(lambda: self.runs.append(self.start(name, "bridge"))))
        return out

    def remove_runs(self) -> None:
        for container in self.runs:
            self.engine.call("DELETE", f"/containers/{container}?force=1")
        self.runs.clear()

    # -- a network filling up --------------------------------------------------------------------

    def fill(self, levels: list[int], rounds: int, limit: bool) -> tuple[Samples, str | None, str | None]:
        """For each k in ``levels``: start containers on a fresh network until it holds k-1 endpoints,
        then time the probe's connect (the k-th attach) and disconnect ``rounds`` times.

        Memory is read at each level into ``self.memory``. With ``limit``, the network is then filled to
        the bridge's 1023 ports and the probe's connect must be refused. Returns the samples, the refusal
        (or a line saying the connect was accepted), and why the fill stopped early if berth could not
        start a container: the levels reached so far are kept.
        """
        net = self.engine.call("POST", "/networks/create",
                               {"Name": FILL_NETWORK, "IPAM": {"Config": [{"Subnet": "10.91.0.0/16"}]}})["Id"]
        samples: Samples = {}
        started = 0

        def grow(target: int) -> None:
            nonlocal started
            while started < target:
                self.start(f"fill{started}", FILL_NETWORK)
                started += 1

        try:
            for k in sorted(levels):
                grow(k - 1)
                for _ in range(rounds):
                    samples.setdefault(f"berth API attach k={k}", []).append(timed(lambda: self.connect(net)))
                    samples.setdefault(f"berth API detach k={k}", []).append(timed(lambda: self.disconnect(net)))
                self.record_memory()
            if not limit:
                return samples, None, None
            grow(BRIDGE_PORTS)
        except ApiError as err:
            return samples, None, f"berth could not start container {started + 1} of the fill: {err.message}"
        try:
            self.connect(net)
            return samples, f"accepted: the probe became endpoint {BRIDGE_PORTS + 1} of {FILL_NETWORK}", None
        except ApiError as err:
            return samples, f"refused with HTTP {err.status}: {err.message}", None

    def close(self) -> None:
        self.engine.close()
