"""A throwaway *host* for tests and demos: new pid, net, mount, uts and ipc namespaces.

Its init (this module run as ``__main__``) is pid 1 of a fresh pid namespace, so when it exits the
kernel kills everything started inside: no berthd, monitor or container can outlive a test. Links, nft
tables, sysctls and netns mounts live in its own network and mount namespaces and vanish with it. State
and run roots sit in a temporary directory on the real filesystem, so the test process reaches
berthd's unix socket directly (a socket on a path works across network namespaces) and runs the
``berth`` CLI like a user would.

Namespaces are made and joined with util-linux ``unshare``/``nsenter`` rather than syscalls: only
``berth.kernel`` may call those, and the harness must not depend on the code it tests.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Sequence

from berth.runtime.forkserver import reap_children
from berth.testing.mountns import private_root

OUTSIDE_HOST = "203.0.113.1"  # TEST-NET-3: documentation addresses, only ever inside a sandbox
OUTSIDE_PEER = "203.0.113.2"
OUTSIDE_NETNS = "outside"
HOSTNAME = "berth-sandbox"
SESSION_ENV = "BERTH_TEST_SESSION"  # set by the pytest plugin: names the temp dirs of one test run
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def default_prefix() -> str:
    """``berth-test-`` plus the test run's tag, so a leftover check can tell this run's dirs from others'."""
    session = os.environ.get(SESSION_ENV, "")
    return f"berth-test-{session}-" if session else "berth-test-"


def _real_netns_inodes() -> set[int]:
    """The machine's own network namespace: the one of its pid 1, and the one the harness runs in.

    The harness always runs on the real host, so its own netns counts too; that also keeps the guard
    working where pid 1's namespace links are unreadable (e.g. a hardened VM init).
    """
    inodes = {os.stat("/proc/self/ns/net").st_ino}
    try:
        inodes.add(os.stat("/proc/1/ns/net").st_ino)
    except PermissionError:
        pass
    return inodes


def in_real_host_netns(pid: int) -> bool:
    """Is ``pid`` in the machine's own network namespace?"""
    return os.stat(f"/proc/{pid}/ns/net").st_ino in _real_netns_inodes()


def ensure_sandboxed(pid: int) -> None:
    """Refuse, loudly, to change anything if ``pid`` is in the machine's own network namespace."""
    if in_real_host_netns(pid):
        raise RuntimeError(f"refusing to act: pid {pid} is in this machine's own network namespace")


def ping_socket(path: Path, timeout: float = 1.0) -> bool:
    """Does an Engine API server answer ``GET /_ping`` with 200 on this unix socket?"""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return False
    status = data.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[0].startswith(b"HTTP/") and status[1] == b"200"


def poll(check: Callable[[], object], timeout: float, what: str) -> None:
    """Wait until ``check()`` is truthy; ``TimeoutError`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f}s")
        time.sleep(0.02)


def _children(pid: int) -> list[int]:
    """Host pids of ``pid``'s children (empty once it is gone)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory`` in this process's mount namespace, deepest first."""
    prefix = str(directory)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


class Sandbox:
    """One throwaway host. Use as a context manager, or ``start()`` and always ``stop()``.

    ``tmp`` (created at construction) holds ``root`` (berthd's state root), ``run_root`` (its run root,
    with ``socket``) and ``log`` (berthd's output); ``pid`` is the sandbox init's host pid once started.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix or default_prefix()))
        self.root = self.tmp / "root"
        self.run_root = self.tmp / "run"
        self.socket = self.run_root / "berth.sock"
        self.log = self.tmp / "berthd.log"
        self.pid = 0
        self._unshare: subprocess.Popen[bytes] | None = None
        self._daemon: subprocess.Popen[bytes] | None = None
        self._started: list[subprocess.Popen[Any]] = []  # nsenter wrappers to reap at stop()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "Sandbox":
        """Spawn the init and wait until it reports its namespaces ready."""
        # The sandbox's resolver is the "outside" peer: nothing a test resolves can reach a real server.
        resolv = self.tmp / "resolv.conf"
        resolv.write_text(f"nameserver {OUTSIDE_PEER}\nsearch example.test\n")
        init_log = self.tmp / "init.log"
        with open(init_log, "wb") as errors:
            # --kill-child: if unshare itself is killed, so is the init (and with it the whole sandbox).
            self._unshare = subprocess.Popen(
                ["unshare", "--pid", "--net", "--mount", "--uts", "--ipc", "--fork", "--kill-child",
                 "--propagation", "unchanged", "--mount-proc",
                 sys.executable, "-m", "berth.testing.sandbox", str(resolv)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, start_new_session=True,
            )
        assert self._unshare.stdout is not None
        ready, _, _ = select.select([self._unshare.stdout], [], [], START_TIMEOUT)
        line = self._unshare.stdout.readline() if ready else b""
        if line != b"ready\n":
            reason = init_log.read_text().strip() or f"no answer within {START_TIMEOUT:.0f}s"
            self.stop()
            raise RuntimeError(f"sandbox failed to start: {reason}")
        children = _children(self._unshare.pid)
        self.pid = children[0]
        try:
            ensure_sandboxed(self.pid)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop_init(self) -> None:
        """Ask the init to stop (stdin closed, SIGTERM); SIGKILL after a deadline. Everything inside dies."""
        proc = self._unshare
        if proc is None:
            return
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            if self.pid:
                self._signal_init(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal_init(signal.SIGKILL)
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        self._unshare = None

    def _signal_init(self, sig: signal.Signals) -> None:
        if self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Kill everything inside, reap it, and remove the temp dir (unmounting leftovers first). Idempotent."""
        self.stop_init()
        # The kernel has killed every process of the pid namespace: their nsenter wrappers exit now.
        for proc in self._started:
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._started.clear()
        self._daemon = None
        self.pid = 0
        if self.tmp.exists():
            for point in _mounts_under(self.tmp):
                subprocess.run(["umount", "--lazy", point], check=False)
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- running things inside -------------------------------------------------------------------

    def _enter(self, cwd: str | os.PathLike[str] | None) -> list[str]:
        """``nsenter`` into every namespace of the init; root and working directory follow."""
        if not self.pid:
            raise RuntimeError("the sandbox is not running")
        ensure_sandboxed(self.pid)
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", "--pid", "--uts", "--ipc",
                "--root", f"--wd={os.fspath(cwd or os.getcwd())}", "--"]

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the sandbox without waiting (``subprocess.Popen`` keywords)."""
        proc: subprocess.Popen[Any] = subprocess.Popen([*self._enter(kw.get("cwd")), *argv], **kw)
        self._started.append(proc)
        return proc

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = False, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the sandbox and capture its text output."""
        return subprocess.run([*self._enter(None), *argv], input=input, capture_output=True, text=True,
                              check=check, timeout=timeout, env=env)

    def env(self) -> dict[str, str]:
        """This process's environment, pointed at the sandbox's berthd."""
        return {**os.environ, "BERTH_ROOT": str(self.root), "BERTH_RUN": str(self.run_root)}

    def berth(self, *args: str, input: str | None = None, check: bool = False,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The berth CLI as a user runs it (from the test process), talking to this sandbox's berthd."""
        return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], input=input, capture_output=True,
                              text=True, check=check, timeout=timeout, env=self.env())

    def _pids_inside(self) -> list[int]:
        """Host pids of every process in the sandbox's pid namespace except its init."""
        if not self.pid:
            return []
        inode = os.stat(f"/proc/{self.pid}/ns/pid").st_ino
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.pid:
                try:
                    if os.stat(entry / "ns" / "pid").st_ino == inode:
                        pids.append(int(entry.name))
                except OSError:
                    continue  # exited meanwhile
        return pids

    # -- berthd ----------------------------------------------------------------------------------

    def start_berthd(self, timeout: float = 20) -> None:
        """Start berthd inside the sandbox and wait until its socket answers ``/_ping``."""
        with open(self.log, "ab") as log:
            daemon = self.popen(
                [sys.executable, "-m", "berth.api.daemon", "--root", str(self.root), "--run-root", str(self.run_root)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        self._daemon = daemon

        def up() -> bool:
            if daemon.poll() is not None:
                raise RuntimeError(f"berthd exited ({daemon.returncode}): {self.log.read_text()[-2000:]}")
            return ping_socket(self.socket)

        poll(up, timeout, "berthd did not answer /_ping")

    def stop_berthd(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> None:
        """Signal berthd (SIGTERM: a clean stop) and wait until it has exited."""
        daemon = self._daemon
        if daemon is None:
            raise RuntimeError("berthd was not started by this sandbox")
        for pid in _children(daemon.pid):  # nsenter's child is berthd itself
            try:
                os.kill(pid, sig)
            except ProcessLookupError:  # it died (a fault's crash) and nsenter reaped it since the listing
                pass
        daemon.wait(timeout=timeout)
        self._started.remove(daemon)
        self._daemon = None

    def kill_berthd(self) -> None:
        """A crash: SIGKILL, no clean-up of its socket or pidfile."""
        self.stop_berthd(signal.SIGKILL)

    def simulate_reboot(self) -> None:
        """Everything volatile gone, as after a reboot: processes, links, netns, nft tables, the run root."""
        for pid in self._pids_inside():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        poll(lambda: not self._pids_inside(), STOP_TIMEOUT, "processes did not die")
        for proc in self._started:
            proc.wait(timeout=STOP_TIMEOUT)
        self._started.clear()
        self._daemon = None
        for link in json.loads(self.run(["ip", "-j", "link"], check=True).stdout):
            if link["ifname"] != "lo":
                self.run(["ip", "link", "del", link["ifname"]])
        self.run(["nft", "flush", "ruleset"], check=True)
        for netns_dir in (self.run_root / "netns", Path("/run/netns")):
            self.run(["sh", "-c", f'for f in "{netns_dir}"/*; do [ -e "$f" ] && umount -l "$f" && rm -f "$f"; done; true'])
        shutil.rmtree(self.run_root, ignore_errors=True)

    # -- the "internet" --------------------------------------------------------------------------

    def outside(self) -> None:
        """A namespace ``outside`` that plays the internet: reachable only through the sandbox host.

        A veth pair joins the sandbox host (203.0.113.1/24, default route via the peer) to ``outside``
        (203.0.113.2/24): egress from containers ends there, and nowhere real.
        """
        for argv in (
            ["ip", "netns", "add", OUTSIDE_NETNS],
            ["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1", "netns", OUTSIDE_NETNS],
            ["ip", "addr", "add", f"{OUTSIDE_HOST}/24", "dev", "uplink0"],
            ["ip", "link", "set", "uplink0", "up"],
            ["ip", "-n", OUTSIDE_NETNS, "addr", "add", f"{OUTSIDE_PEER}/24", "dev", "uplink1"],
            ["ip", "-n", OUTSIDE_NETNS, "link", "set", "uplink1", "up"],
            ["ip", "-n", OUTSIDE_NETNS, "link", "set", "lo", "up"],
            ["ip", "route", "add", "default", "via", OUTSIDE_PEER],
        ):
            result = self.run(argv)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")

    def run_outside(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the ``outside`` namespace (``run`` keywords)."""
        return self.run(["ip", "netns", "exec", OUTSIDE_NETNS, *argv], **kw)

    def popen_outside(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a server such as ``busybox httpd -f`` in the ``outside`` namespace (``popen`` keywords)."""
        return self.popen(["ip", "netns", "exec", OUTSIDE_NETNS, *argv], **kw)


# -- the sandbox's init (pid 1) --------------------------------------------------------------------


def _terminate(_sig: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _init_main(resolv_conf: str) -> int:
    """pid 1 of a sandbox; unshare already mounted a fresh /proc.

    Makes the mount namespace's root private (and a mount point, under a chroot), mounts the new netns's sysfs (so ``ip`` and /sys/class/net see the sandbox's links), a private
    /run/netns and resolv.conf, raises lo, names the host, then reaps orphans until its stdin closes or
    SIGTERM arrives. Its exit makes the kernel kill everything else in the sandbox.
    """
    private_root(Path(resolv_conf).parent / "root-bind")
    os.makedirs("/run/netns", exist_ok=True)  # ip(8) makes it too; the tmpfs on it stays in the sandbox
    for argv in (
        ["mount", "-t", "sysfs", "sysfs", "/sys"],
        ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run/netns"],
        ["mount", "--bind", resolv_conf, "/etc/resolv.conf"],
        ["ip", "link", "set", "lo", "up"],
    ):
        subprocess.run(argv, check=True)
    socket.sethostname(HOSTNAME)
    signal.signal(signal.SIGCHLD, lambda signum, frame: reap_children())  # as pid 1, every orphan is ours
    signal.signal(signal.SIGTERM, _terminate)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.read(0, 1024):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_init_main(sys.argv[1]))
