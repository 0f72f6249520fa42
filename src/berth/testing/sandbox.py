"""A throwaway *host* for tests and demos: new pid, net, mount, uts and ipc namespaces.

Its init (this module run as ``__main__``) is pid 1 of a fresh pid namespace, so when it exits the
kernel kills everything started inside: no berthd, monitor or container can outlive a test. Links, nft
tables, sysctls and netns mounts live in its own network and mount namespaces and vanish with it. State
and run roots sit in a temporary directory on the real filesystem, so the test process reaches
berthd's unix socket directly and runs the ``berth`` CLI like a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

OUTSIDE_HOST = "203.0.113.1"  # TEST-NET-3: documentation addresses, only ever inside a sandbox
OUTSIDE_PEER = "203.0.113.2"


def in_real_host_netns(pid: int | str = "self") -> bool:
    """Is ``pid`` in the machine's own network namespace (the one pid 1 of the machine uses)?"""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return False


def ping_socket(path: Path, timeout: float = 1.0) -> bool:
    """Does an Engine API server answer ``GET /_ping`` on this unix socket?"""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.startswith(b"HTTP/1.1 200") and data.endswith(b"OK")
    except OSError:
        return False


def _poll(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f}s")
        time.sleep(0.02)


class Sandbox:
    def __init__(self, prefix: str = "berth-test-") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.root = self.tmp / "root"
        self.run_root = self.tmp / "run"
        self.socket = self.run_root / "berth.sock"
        self.log = self.tmp / "berthd.log"
        self._init: subprocess.Popen[bytes] | None = None
        self._daemon: subprocess.Popen[bytes] | None = None
        self.pid = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "Sandbox":
        # The sandbox's resolver is the "outside" peer: nothing a test resolves can reach a real server.
        resolv = self.tmp / "resolv.conf"
        resolv.write_text(f"nameserver {OUTSIDE_PEER}\nsearch example.test\n")
        self._init = subprocess.Popen(
            ["unshare", "--pid", "--net", "--mount", "--uts", "--ipc", "--fork", "--mount-proc",
             "--propagation", "private", sys.executable, "-m", "berth.testing.sandbox", str(resolv)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self._init.stdout is not None
        line = self._init.stdout.readline()
        if not line.startswith(b"ready"):
            err = self._init.stderr.read().decode() if self._init.stderr else ""
            self.stop()
            raise RuntimeError(f"sandbox failed to start: {line!r} {err}")
        self.pid = self._find_init()
        if in_real_host_netns(self.pid):
            self.stop()
            raise RuntimeError("refusing to use the machine's own network namespace as a sandbox")
        return self

    def _find_init(self) -> int:
        """The host pid of the sandbox's init: the child of ``unshare`` (which forked into the new pid ns)."""
        assert self._init is not None
        children = Path(f"/proc/{self._init.pid}/task/{self._init.pid}/children").read_text().split()
        return int(children[0])

    def stop(self) -> None:
        if self._init is not None:
            if self._init.poll() is None:
                try:
                    assert self._init.stdin is not None
                    self._init.stdin.close()
                except OSError:
                    pass
                try:
                    self._init.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._init.kill()
                    self._init.wait()
            for stream in (self._init.stdout, self._init.stderr):
                if stream:
                    stream.close()
            self._init = None
        if self._daemon is not None:
            self._daemon.wait()
            self._daemon = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- running things inside -------------------------------------------------------------------

    def _enter(self) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "--net", "--mount", "--pid", "--uts", "--ipc", "--"]

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        return subprocess.Popen([*self._enter(), *argv], **kw)

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = False, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._enter(), *argv], input=input, capture_output=True, text=True, check=check,
                              timeout=timeout, env=env)

    def env(self) -> dict[str, str]:
        return {**os.environ, "BERTH_ROOT": str(self.root), "BERTH_RUN": str(self.run_root)}

    def berth(self, *args: str, input: str | None = None, check: bool = False,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The berth CLI as a user runs it, talking to this sandbox's berthd."""
        return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], input=input, capture_output=True,
                              text=True, check=check, timeout=timeout, env=self.env())

    # -- berthd ----------------------------------------------------------------------------------

    def start_berthd(self, timeout: float = 20) -> None:
        log = open(self.log, "ab")
        self._daemon = self.popen(
            [sys.executable, "-m", "berth.api.daemon", "--root", str(self.root), "--run-root", str(self.run_root)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
        log.close()

        def up() -> bool:
            if self._daemon is not None and self._daemon.poll() is not None:
                raise RuntimeError(f"berthd exited: {self.log.read_text()[-2000:]}")
            return ping_socket(self.socket)

        _poll(up, timeout, "berthd did not answer")

    def _daemon_pid(self) -> str:
        return (self.run_root / "berthd.pid").read_text().strip()

    def stop_berthd(self, sig: str = "TERM", timeout: float = 20) -> None:
        pid = self._daemon_pid()
        self.run(["kill", f"-{sig}", pid], check=True)
        _poll(lambda: self.run(["kill", "-0", pid]).returncode != 0, timeout, "berthd did not exit")
        if self._daemon is not None:
            self._daemon.wait(timeout=timeout)
            self._daemon = None

    def kill_berthd(self) -> None:
        """A crash: SIGKILL, no clean-up of its socket or pidfile."""
        self.stop_berthd("KILL")

    def simulate_reboot(self) -> None:
        """Everything volatile gone, as after a reboot: processes, links, netns, nft tables, the run root."""
        self.run(["sh", "-c", "kill -9 -1; true"])
        _poll(lambda: self.run(["sh", "-c", "ls /proc | grep -c '^[0-9]'"]).stdout.strip() in ("1", "2", "3"),
              10, "processes did not die")
        links = json.loads(self.run(["ip", "-j", "link"], check=True).stdout)
        for link in links:
            if link["ifname"] != "lo":
                self.run(["ip", "link", "del", link["ifname"]])
        self.run(["nft", "flush", "ruleset"], check=True)
        netns = self.run_root / "netns"
        if netns.is_dir():
            for path in netns.iterdir():
                self.run(["umount", "-l", str(path)])
        shutil.rmtree(self.run_root, ignore_errors=True)

    # -- the "internet" --------------------------------------------------------------------------

    def outside(self) -> None:
        """A namespace ``outside`` that plays the internet: reachable only through the sandbox host."""
        for argv in (
            ["ip", "netns", "add", "outside"],
            ["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1", "netns", "outside"],
            ["ip", "addr", "add", f"{OUTSIDE_HOST}/24", "dev", "uplink0"],
            ["ip", "link", "set", "uplink0", "up"],
            ["ip", "-n", "outside", "addr", "add", f"{OUTSIDE_PEER}/24", "dev", "uplink1"],
            ["ip", "-n", "outside", "link", "set", "uplink1", "up"],
            ["ip", "-n", "outside", "link", "set", "lo", "up"],
            ["ip", "route", "add", "default", "via", OUTSIDE_PEER],
        ):
            result = self.run(argv)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")

    def run_outside(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["ip", "netns", "exec", "outside", *argv], **kw)


def _reap(*_: Any) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _init_main(resolv_conf: str) -> int:
    """pid 1 of a sandbox: private /run/netns, /sys and resolv.conf, lo up, then reap orphans until stdin closes."""
    os.makedirs("/run/netns", exist_ok=True)
    subprocess.run(["mount", "--bind", resolv_conf, "/etc/resolv.conf"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/netns"], check=True)
    subprocess.run(["mount", "-t", "sysfs", "sysfs", "/sys"], check=False, stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["hostname", "berth-sandbox"], check=False)
    signal.signal(signal.SIGCHLD, _reap)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.read(0, 1024):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_init_main(sys.argv[1]))
