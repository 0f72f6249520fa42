"""The container runtime against the real kernel, each test inside a throwaway net+mount+pid namespace.

The scenario runs in a forked child that unshares those namespaces and a grandchild that is pid 1 of the
new pid namespace (with its own /proc): nothing a test mounts or spawns is visible on the host, and
every monitor and container dies with the namespace when the test ends.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from berth.config import Paths
from berth.errors import Conflict, KernelError
from berth.kernel import syscalls as sc
from berth.runtime import etcfiles
from berth.runtime.images import Image, ImageStore
from berth.runtime.spawn import ContainerSpec, Runtime
from berth.testing.images import busybox_rootfs_tar
from tests.helpers import in_throwaway_namespaces

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("runtime tests need root", allow_module_level=True)


def isolated(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test`` as pid 1 of new net/mount/pid namespaces; its failure is reported here."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        in_throwaway_namespaces(lambda: test(*args, **kwargs), pid=True)

    return wrapper


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs_tar(tmp_path_factory.mktemp("bb") / "bb.tar")


class Box:
    """A runtime with temp state and run roots, the busybox image, and helpers to make specs."""

    def __init__(self, base: Path, tar: Path) -> None:
        self.paths = Paths(base / "root", base / "run")
        with open(tar, "rb") as f:
            self.image: Image = ImageStore(self.paths.images).import_tar(f, "bb")
        self.rt = Runtime(self.paths)
        self.n = 0

    def spec(self, cmd: list[str], **overrides: Any) -> ContainerSpec:
        self.n += 1
        cid = f"{self.n:02x}" * 32
        state = self.paths.container_dir(cid)
        state.mkdir(parents=True)
        hostname = overrides.pop("hostname", cid[:12])
        (state / "hosts").write_text(etcfiles.hosts_file(hostname, ["10.9.9.9"]))
        (state / "hostname").write_text(hostname + "\n")
        (state / "resolv.conf").write_text(etcfiles.resolv_conf("nameserver 127.0.0.53\n"))
        fields: dict[str, Any] = dict(
            id=cid, rootfs=self.image.rootfs, cmd=cmd, env=["PATH=/bin", f"HOSTNAME={hostname}"], workdir="/",
            hostname=hostname, netns=None, share_uts=False, open_stdin=False, state_dir=state,
            run_dir=self.paths.container_run_dir(cid),
        )
        fields.update(overrides)
        return ContainerSpec(**fields)

    def wait_exit(self, cid: str, timeout: float = 20.0) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while (status := self.rt.exit_status(cid)) is None:
            assert time.monotonic() < deadline, "container did not exit"
            time.sleep(0.01)
        return status

    def run(self, spec: ContainerSpec) -> tuple[bytes, bytes, int]:
        """start, attach, release, collect output to EOF: what a foreground ``run`` does."""
        self.rt.start(spec)
        sock = self.rt.attach(spec.id, stdin=False, stdout=True, stderr=True, logs=False, stream=True)
        self.rt.release(spec.id)
        out, err = demux(sock)
        return out, err, self.wait_exit(spec.id)[0]


def demux(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    streams = {1: b"", 2: b""}
    while data:
        kind, size = struct.unpack(">BxxxI", data[:8])
        streams[kind] += data[8:8 + size]
        data = data[8 + size:]
    return streams[1], streams[2]


@pytest.fixture
def box(tmp_path: Path, busybox_tar: Path) -> Box:
    return Box(tmp_path, busybox_tar)


@isolated
def test_echo_reaches_attach_and_json_log(box: Box) -> None:
    spec = box.spec(["echo", "hi"])
    out, err, code = box.run(spec)
    assert (out, err, code) == (b"hi\n", b"", 0)
    lines = (spec.state_dir / f"{spec.id}-json.log").read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert list(entry) == ["log", "stream", "time"]
    assert entry["log"] == "hi\n" and entry["stream"] == "stdout" and entry["time"].endswith("Z")
    assert b"".join(box.rt.logs(spec.id)) == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    # after the exit, attach with logs replays history; the monitor is gone so live attach is refused
    with pytest.raises(Conflict, match="You cannot attach to a stopped container, start it first"):
        box.rt.attach(spec.id, stdin=False, stdout=True, stderr=True, logs=True, stream=True)


@isolated
def test_exit_code_stderr_and_exit_json(box: Box) -> None:
    spec = box.spec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    out, err, code = box.run(spec)
    assert (out, err, code) == (b"out\n", b"err\n", 3)
    saved = json.loads((spec.state_dir / "exit.json").read_text())
    assert saved["ExitCode"] == 3 and saved["FinishedAt"] == box.rt.exit_status(spec.id)[1]
    assert b"".join(box.rt.logs(spec.id, stdout=False)) == b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    assert b"".join(box.rt.logs(spec.id, tail=1, stderr=False)) == b"\x01\x00\x00\x00\x00\x00\x00\x04out\n"


@isolated
def test_hostname_pid1_etc_files_and_isolation(box: Box) -> None:
    spec = box.spec(["sh", "-c", "hostname; echo $$; cat /etc/hostname /etc/resolv.conf; grep 10.9.9.9 /etc/hosts;"
                                 " ls /proc | grep -c '^[0-9]'; ls /dev; pwd"], hostname="web1", workdir="/srv/app")
    out, err, code = box.run(spec)
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[:6] == ["web1", "1", "web1", "nameserver 8.8.8.8", "nameserver 8.8.4.4", "10.9.9.9\tweb1"]
    assert lines[6] in ("2", "3")  # sh, ls (and grep): only the container's own processes
    for dev in ("null", "zero", "urandom", "tty", "pts", "shm", "stdout", "fd"):
        assert dev in lines
    assert lines[-1] == "/srv/app"  # a missing working directory is created
    assert socket.gethostname() != "web1"


@isolated
def test_image_rootfs_is_never_modified(box: Box) -> None:
    before = sorted(str(p.relative_to(box.image.rootfs)) for p in box.image.rootfs.rglob("*"))
    spec = box.spec(["sh", "-c", "echo x > /bin/new && rm /etc/passwd && mkdir /root/d && echo done"])
    assert box.run(spec)[:2] == (b"done\n", b"")
    assert sorted(str(p.relative_to(box.image.rootfs)) for p in box.image.rootfs.rglob("*")) == before
    assert (box.image.rootfs / "etc" / "passwd").exists()
    assert (spec.state_dir / "upper" / "bin" / "new").read_text() == "x\n"
    other = box.spec(["sh", "-c", "ls /bin/new; cat /etc/passwd | head -1"])
    out, err, code = box.run(other)
    assert b"root:x:0:0" in out and b"No such file" in err


@isolated
def test_command_not_found_is_127_with_dockers_message(box: Box) -> None:
    out, err, code = box.run(box.spec(["nosuch"]))
    assert (out, code) == (b"", 127)
    assert err == b'exec: "nosuch": executable file not found in $PATH\n'


@isolated
def test_stdin_is_the_attached_clients_until_shutdown(box: Box) -> None:
    spec = box.spec(["tr", "a-z", "A-Z"], open_stdin=True)
    box.rt.start(spec)
    sock = box.rt.attach(spec.id, stdin=True, stdout=True, stderr=True, logs=False, stream=True)
    box.rt.release(spec.id)
    sock.sendall(b"shout\n")
    sock.shutdown(socket.SHUT_WR)
    assert demux(sock) == (b"SHOUT\n", b"")
    assert box.wait_exit(spec.id)[0] == 0


@isolated
def test_follow_logs_streams_until_exit(box: Box) -> None:
    spec = box.spec(["sh", "-c", "echo one; read x; echo two $x"], open_stdin=True)
    box.rt.start(spec)
    box.rt.release(spec.id)
    frames = box.rt.logs(spec.id, follow=True, timestamps=True)
    first = next(frames)
    assert first[8:].endswith(b"Z one\n")
    stdin = box.rt.attach(spec.id, stdin=True, stdout=False, stderr=False, logs=False, stream=True)
    stdin.sendall(b"ok\n")
    stdin.shutdown(socket.SHUT_WR)
    rest = list(frames)  # ends by itself when the container exits
    assert len(rest) == 1 and rest[0][8:].endswith(b"Z two ok\n")
    stdin.close()


def _finish(proc: Any) -> tuple[bytes, bytes, int]:
    """Close the exec's stdin, read its output to the end (small: one pipe, then the other), wait."""
    if proc.stdin is not None:
        proc.stdin.close()
    return proc.stdout.read(), proc.stderr.read(), proc.wait(20)


@isolated
def test_exec_into_a_running_container(box: Box) -> None:
    spec = box.spec(["sleep", "600"], hostname="svc")
    started = box.rt.start(spec)
    box.rt.release(spec.id)
    proc = box.rt.exec(started.pid, ["sh", "-c", "hostname; echo $PWD $FOO; ls /proc | grep -c '^[0-9]'"],
                       env=["PATH=/bin", "FOO=bar"], workdir="/tmp", stdin=False)
    out, err, code = _finish(proc)
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[:2] == ["svc", "/tmp bar"]
    assert int(lines[2]) <= 5  # sleep, sh, ls, grep: the container's pid namespace, not the host's
    code = box.rt.exec(started.pid, ["sh", "-c", "exit 7"], env=["PATH=/bin"], workdir="/", stdin=False).wait(20)
    assert code == 7
    proc = box.rt.exec(started.pid, ["nosuch"], env=["PATH=/bin"], workdir="/", stdin=True)
    assert _finish(proc)[1:] == (b'exec: "nosuch": executable file not found in $PATH\n', 127)
    box.rt.kill(started.pid, signal.SIGKILL)
    assert box.wait_exit(spec.id)[0] == 137


@isolated
def test_kill_and_monitor_exit(box: Box) -> None:
    spec = box.spec(["sleep", "600"])
    started = box.rt.start(spec)
    box.rt.release(spec.id)
    assert box.rt.monitor_alive(spec.id, started.monitor_pid)
    assert not box.rt.monitor_alive("f" * 64, started.monitor_pid)
    pidfd = box.rt.pidfd(started.monitor_pid)
    box.rt.kill(started.pid, signal.SIGTERM)  # pid 1 without a handler ignores it, as in Docker
    box.rt.kill(started.pid, signal.SIGKILL)
    assert box.wait_exit(spec.id)[0] == 137
    import select

    assert select.select([pidfd], [], [], 20)[0] == [pidfd]  # the monitor exits after the container
    os.close(pidfd)
    assert not box.rt.monitor_alive(spec.id, started.monitor_pid)
    box.rt.kill(started.pid, signal.SIGKILL)  # already gone: not an error
    box.rt.remove(spec.id)
    assert not spec.state_dir.exists() and not spec.run_dir.exists()


@isolated
def test_joins_the_given_network_namespace(box: Box, tmp_path: Path) -> None:
    nsfile = tmp_path / "netns"
    nsfile.touch()
    subprocess.run(["unshare", f"--net={nsfile}", "true"], check=True)
    try:
        out, err, code = box.run(box.spec(["readlink", "/proc/self/ns/net"], netns=nsfile))
        assert code == 0, err
        assert out.decode().strip() == f"net:[{os.stat(nsfile).st_ino}]"
    finally:
        sc.umount2(str(nsfile), sc.MNT_DETACH)


@isolated
def test_monitor_survives_the_process_that_started_it(box: Box) -> None:
    spec = box.spec(["sh", "-c", "read x; echo got $x"], open_stdin=True)
    starter = (
        "import sys, pickle\n"
        "from berth.runtime.spawn import Runtime\n"
        "spec = pickle.loads(sys.stdin.buffer.read())\n"
        "s = Runtime().start(spec)\n"
        "print(s.pid, s.monitor_pid)\n"
    )
    import pickle

    result = subprocess.run([sys.executable, "-c", starter], input=pickle.dumps(spec), capture_output=True, check=True)
    pid, monitor_pid = map(int, result.stdout.split())
    assert box.rt.monitor_alive(spec.id, monitor_pid)  # its starter (a stand-in daemon) is gone
    sock = box.rt.attach(spec.id, stdin=True, stdout=True, stderr=True, logs=True, stream=True)
    box.rt.release(spec.id)
    sock.sendall(b"it\n")
    assert demux(sock) == (b"got it\n", b"")
    assert box.wait_exit(spec.id)[0] == 0


@isolated
def test_failed_start_is_a_clear_error_and_leaves_nothing_running(box: Box, tmp_path: Path) -> None:
    spec = box.spec(["true"], rootfs=tmp_path / "no-such-rootfs")
    with pytest.raises(KernelError, match=r"^cannot start container \w{12}: cannot mount the container's root"):
        box.rt.start(spec)
    leftover = [p for p in Path("/proc").iterdir() if p.name.isdigit() and p.name != str(os.getpid())
                and (p / "cmdline").read_bytes().startswith(b"berth-monitor\0")]
    assert leftover == []


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def _gone(pid: int) -> bool:
    """Exited (a zombie no longer has a command line) or reaped."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == b""
    except OSError:
        return True


def _poll(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@isolated
def test_monitors_come_from_one_fork_server_and_show_their_container(box: Box) -> None:
    specs = [box.spec(["sleep", "600"]) for _ in range(2)]
    monitors = [box.rt.start(spec).monitor_pid for spec in specs]
    server = _parent(monitors[0])
    assert _parent(monitors[1]) == server != os.getpid()
    assert Path(f"/proc/{server}/cmdline").read_bytes().rstrip(b"\0") == b"berth-forkserver"
    for spec, pid in zip(specs, monitors):
        assert Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0") == [b"berth-monitor", spec.id.encode()]
        assert Path(f"/proc/{pid}/comm").read_text() == "berth-monitor\n"


@isolated
def test_a_killed_fork_server_is_replaced_and_its_monitors_live_on(box: Box) -> None:
    first = box.spec(["sh", "-c", "echo first"])
    started = box.rt.start(first)
    server = _parent(started.monitor_pid)
    os.kill(server, signal.SIGKILL)
    _poll(lambda: _gone(server))
    assert box.rt.monitor_alive(first.id, started.monitor_pid)
    assert box.run(box.spec(["echo", "second"]))[0] == b"second\n"
    sock = box.rt.attach(first.id, stdin=False, stdout=True, stderr=True, logs=True, stream=True)
    box.rt.release(first.id)
    assert demux(sock) == (b"first\n", b"")


@isolated
def test_closing_the_runtime_stops_the_fork_server_not_the_containers(box: Box) -> None:
    spec = box.spec(["sleep", "600"])
    started = box.rt.start(spec)
    server = _parent(started.monitor_pid)
    box.rt.close()
    _poll(lambda: _gone(server))
    assert box.rt.monitor_alive(spec.id, started.monitor_pid)
    box.rt.release(spec.id)
    box.rt.kill(started.pid, signal.SIGKILL)
    assert box.wait_exit(spec.id)[0] == 137


@isolated
def test_a_stuck_fork_server_fails_one_start_clearly_and_is_replaced(box: Box) -> None:
    from berth.runtime import forkserver

    started = box.rt.start(box.spec(["sleep", "600"]))
    server = _parent(started.monitor_pid)
    os.kill(server, signal.SIGSTOP)
    patience, forkserver.ANSWER_TIMEOUT = forkserver.ANSWER_TIMEOUT, 0.5  # this process only (a throwaway child)
    with pytest.raises(KernelError, match="^the fork server stopped answering while starting a container monitor$"):
        box.rt.start(box.spec(["true"]))
    forkserver.ANSWER_TIMEOUT = patience  # the next server gets the time it needs to load
    _poll(lambda: _gone(server))
    assert box.run(box.spec(["echo", "next"]))[0] == b"next\n"


@isolated
def test_an_exec_is_a_forked_berth_exec_that_can_be_killed(box: Box) -> None:
    spec = box.spec(["sleep", "600"])
    started = box.rt.start(spec)
    box.rt.release(spec.id)
    proc = box.rt.exec(started.pid, ["sleep", "600"], env=["PATH=/bin"], workdir="/", stdin=False)
    title = [b"berth-exec", str(started.pid).encode()]
    _poll(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0") == title)
    assert _parent(proc.pid) == _parent(started.monitor_pid)  # the fork server
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    proc.kill()
    assert proc.wait(20) == 137
    box.rt.kill(started.pid, signal.SIGKILL)
    assert box.wait_exit(spec.id)[0] == 137
