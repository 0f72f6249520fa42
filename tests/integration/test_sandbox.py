"""The throwaway host: what happens inside stays inside, and nothing survives it."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from berth.testing.sandbox import HOSTNAME, OUTSIDE_HOST, OUTSIDE_PEER, Sandbox, ensure_sandboxed, ping_socket
from tests.helpers import ok, poll

CHECK_LEFTOVERS = Path(__file__).resolve().parents[2] / "scripts" / "check-leftovers"
OTHER_TEST_NET = "198.51.100.1"  # TEST-NET-2: no route to it exists anywhere in a sandbox

FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode(), end='')"

integration = pytest.mark.integration


def real_links() -> set[str]:
    """Interface names of the network namespace this test process runs in: the machine's own."""
    return {name for _index, name in socket.if_nameindex()}


def real_nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def pids_in_pid_namespace_of(pid: int) -> set[int]:
    """Host pids of every process sharing ``pid``'s pid namespace (``pid`` included)."""
    inode = os.stat(f"/proc/{pid}/ns/pid").st_ino
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.stat(entry / "ns" / "pid").st_ino == inode:
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Does ``pid`` exist as a process that has not exited (zombies count as gone)?"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def mounts_under(path: Path) -> list[str]:
    points = (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


@integration
def test_links_netns_nft_tables_and_hostname_stay_inside(bare_host: Sandbox) -> None:
    ok(bare_host.run(["ip", "link", "add", "berth-probe0", "type", "bridge"]))
    ok(bare_host.run(["ip", "netns", "add", "berth-probe"]))
    ok(bare_host.run(["nft", "add", "table", "inet", "berth"]))

    assert "berth-probe0" in ok(bare_host.run(["ls", "/sys/class/net"])).split()  # the sandbox's own sysfs
    assert "berth-probe" in ok(bare_host.run(["ip", "netns", "list"]))
    assert "table inet berth" in ok(bare_host.run(["nft", "list", "tables"]))
    assert ok(bare_host.run(["hostname"])).strip() == HOSTNAME

    assert "berth-probe0" not in real_links()
    assert not Path("/run/netns/berth-probe").exists()
    assert "table inet berth" not in real_nft_tables()
    assert socket.gethostname() != HOSTNAME


@integration
def test_processes_inside_see_only_the_sandbox(bare_host: Sandbox) -> None:
    sleeper = bare_host.popen(["sleep", "300"])

    def table() -> dict[str, str]:
        rows = ok(bare_host.run(["ps", "-eo", "pid=,comm="])).strip().splitlines()
        listed = dict(row.split(None, 1) for row in rows)
        return listed if "sleep" in listed.values() else {}

    rows = poll(table)
    init = rows.pop("1")
    assert init.startswith("python")  # the sandbox init is pid 1
    assert sorted(rows.values()) == ["ps", "sleep"]  # nothing of the real machine is visible

    sleep_pid = poll(lambda: Path(f"/proc/{sleeper.pid}/task/{sleeper.pid}/children").read_text().split())[0]
    assert os.stat(f"/proc/{sleep_pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino


@integration
def test_the_guard_refuses_the_machines_own_network_namespace(bare_host: Sandbox) -> None:
    with pytest.raises(RuntimeError, match="refusing to act: pid .* own network namespace"):
        ensure_sandboxed(os.getpid())
    ensure_sandboxed(bare_host.pid)


def test_a_sandbox_that_is_not_running_refuses_commands() -> None:
    box = Sandbox()
    try:
        with pytest.raises(RuntimeError, match="not running"):
            box.run(["true"])
    finally:
        box.stop()
    assert not box.tmp.exists()


@integration
def test_after_stop_nothing_is_left() -> None:
    tag = secrets.token_hex(4)
    box = Sandbox(prefix=f"berth-test-{tag}-")
    try:
        box.start()
        box.start_berthd()
        box.outside()
        ok(box.run(["ip", "netns", "add", "berth-probe"]))
        box.popen(["sleep", "300"])
        box.popen_outside(["sleep", "300"])
        processes = poll(lambda: found if len(found := pids_in_pid_namespace_of(box.pid)) >= 4 else set())
    finally:
        box.stop()  # init, berthd, two sleeps: all must go

    assert not [pid for pid in processes if alive(pid)]
    assert not box.tmp.exists()
    assert mounts_under(box.tmp) == []
    check = subprocess.run([str(CHECK_LEFTOVERS), "--session", tag], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    box.stop()  # idempotent


@integration
def test_two_sandboxes_run_side_by_side_independently() -> None:
    with Sandbox() as one, Sandbox() as two:
        assert os.stat(f"/proc/{one.pid}/ns/net").st_ino != os.stat(f"/proc/{two.pid}/ns/net").st_ino
        for box, address in ((one, "10.99.0.1/24"), (two, "10.99.0.2/24")):
            ok(box.run(["ip", "link", "add", "br0", "type", "bridge"]))  # same name: no clash
            ok(box.run(["ip", "addr", "add", address, "dev", "br0"]))
        assert "10.99.0.1/24" in ok(one.run(["ip", "-o", "addr", "show", "br0"]))
        assert "10.99.0.2" not in ok(one.run(["ip", "-o", "addr", "show", "br0"]))
        assert "10.99.0.2/24" in ok(two.run(["ip", "-o", "addr", "show", "br0"]))

        one.stop()
        assert "10.99.0.2/24" in ok(two.run(["ip", "-o", "addr", "show", "br0"]))
        assert "br0" not in real_links()


@integration
def test_outside_is_reachable_from_the_sandbox_host_and_nothing_else(bare_host: Sandbox) -> None:
    bare_host.outside()
    ok(bare_host.run(["ping", "-c", "1", "-W", "2", OUTSIDE_PEER]))
    ok(bare_host.run_outside(["ping", "-c", "1", "-W", "2", OUTSIDE_HOST]))
    assert "default via 203.0.113.2 dev uplink0" in ok(bare_host.run(["ip", "route"]))

    # Off the documentation net, egress goes to "outside", which routes nowhere.
    assert bare_host.run(["ping", "-c", "1", "-W", "1", OTHER_TEST_NET]).returncode != 0
    unreachable = bare_host.run_outside(["ping", "-c", "1", "-W", "1", OTHER_TEST_NET])
    assert unreachable.returncode != 0 and "unreachable" in unreachable.stderr.lower()

    real = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    assert not [a for link in real for a in link.get("addr_info", []) if a.get("local", "").startswith("203.0.113.")]


@integration
def test_a_server_outside_answers_the_sandbox_host(bare_host: Sandbox) -> None:
    bare_host.outside()
    site = bare_host.tmp / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from outside\n")
    bare_host.popen_outside(["busybox", "httpd", "-f", "-p", "8080", "-h", str(site)])
    fetch = [sys.executable, "-c", FETCH, f"http://{OUTSIDE_PEER}:8080/index.html"]
    page = poll(lambda: bare_host.run(fetch).stdout)
    assert page == "hello from outside\n"


@integration
def test_host_fixture_runs_berthd_inside(host: Sandbox) -> None:
    assert ping_socket(host.socket)
    names = ok(host.berth("network", "ls", "--format", "{{.Name}}")).split()
    assert {"bridge", "host", "none"} <= set(names)
    assert "berth0" in ok(host.run(["ls", "/sys/class/net"])).split()
    assert "berth0" not in real_links()

    host.stop_berthd()
    assert not ping_socket(host.socket)


@pytest.fixture
def api_socket(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A one-shot HTTP server on a unix socket answering with the reply the test puts in the list."""
    path = tmp_path / "api.sock"
    reply: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(reply[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, reply
    thread.join(timeout=5)
    server.close()


def test_ping_socket_needs_a_200_answer(api_socket: tuple[Path, list[bytes]], tmp_path: Path) -> None:
    path, reply = api_socket
    assert not ping_socket(tmp_path / "nobody.sock")
    reply.append(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    assert not ping_socket(path)


def test_ping_socket_accepts_an_engine_ping(api_socket: tuple[Path, list[bytes]]) -> None:
    path, reply = api_socket
    reply.append(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK")
    assert ping_socket(path)


LEAKY_TEST = """
import os
from pathlib import Path

def test_leaks_a_directory():
    Path("/tmp/berth-test-" + os.environ["BERTH_TEST_SESSION"] + "-leaked").mkdir()
"""


def test_the_run_fails_when_a_test_leaves_something_behind(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY_TEST)
    result = pytester.runpytest_subprocess("-p", "berth.testing.plugin", "-p", "no:cacheprovider")
    leaked = [line.split("directory ", 1)[1] for line in result.outlines if "left behind: directory" in line]
    for path in leaked:
        Path(path).rmdir()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    assert len(leaked) == 1 and leaked[0].endswith("-leaked")


def test_a_clean_run_passes_the_leftover_check(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_clean="def test_nothing_to_leave():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "berth.testing.plugin", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    assert "left behind" not in result.stdout.str()
