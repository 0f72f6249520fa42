"""Assertions and probes shared by the whole-system tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable


def ok(result: Any) -> str:
    """The stdout of a command that must succeed (the assertion shows stderr when it does not)."""
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}{result.stdout}"
    return result.stdout


def fails(result: Any, message: str) -> None:
    """A command that must fail with exactly one clear line on stderr containing ``message``."""
    assert result.returncode != 0, f"unexpectedly succeeded: {result.stdout}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def poll(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until ``check()`` is truthy; fail with its last value at the deadline."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout}s"
    return value


def inspect(host: Any, *args: str) -> Any:
    return json.loads(ok(host.berth(*args)))


def kernel_snapshot(host: Any, root_run: Path) -> dict[str, Any]:
    """Links, addresses, routes, nft ruleset and netns files of the throwaway host, for before/after checks."""
    links = json.loads(ok(host.run(["ip", "-j", "addr"])))
    compact = sorted(
        (l["ifname"], l.get("master", ""), l.get("operstate", ""),
         tuple(sorted(f'{a["local"]}/{a["prefixlen"]}' for a in l.get("addr_info", []) if a.get("scope") != "link")))
        for l in links
    )
    routes = ok(host.run(["ip", "route"]))
    ruleset = ok(host.run(["nft", "list", "ruleset"]))
    netns_dir = root_run / "netns"
    files = sorted(p.name for p in netns_dir.iterdir()) if netns_dir.is_dir() else []
    return {"links": compact, "routes": routes, "nft": ruleset, "netns": files}


def tcp_probe(address: str, port: int) -> list[str]:
    """A TCP connect probe for busybox (its nc has no -z): connected means exit status 0."""
    return ["sh", "-c", f"nc -w 1 {address} {port} </dev/null"]


def serving_addresses(host: Any, layout: dict[str, str], field: str, loopback: str,
                      port: int) -> dict[str, dict[str, str]]:
    """Each container of ``layout`` but those on ``none``, with its ``field`` address (``IPAddress``,
    ``GlobalIPv6Address``) on every network it has, once its server answers on ``loopback``:``port``."""
    address = {}
    for name, net in layout.items():
        if net != "none":
            nets = inspect(host, "inspect", name)[0]["NetworkSettings"]["Networks"]
            address[name] = {n: ep[field] for n, ep in nets.items()}
            assert all(address[name].values()), (name, nets)
    for name in address:
        poll(lambda: host.berth("exec", name, *tcp_probe(loopback, port)).returncode == 0)
    return address


def unexpected_reachability(host: Any, layout: dict[str, str], address: dict[str, dict[str, str]], port: int,
                            icc_off: set[str]) -> dict[tuple[str, str, str, str], bool]:
    """Probe every ordered pair of containers with ICMP and TCP (to ``port``) on each of the target's
    addresses, and return the probes whose outcome differs from the rules: reachable exactly when the
    source shares that network, except on ICC-off networks; a container without addresses (``none``)
    reaches nothing."""
    from concurrent.futures import ThreadPoolExecutor

    networks_of = {name: set(address.get(name, {})) for name in layout}

    def expected(src: str, dst: str, net: str) -> bool:
        return net in networks_of[src] and net not in icc_off

    probes = [(src, dst, net, ip, proto) for src in layout for dst, nets in address.items() if src != dst
              for net, ip in nets.items() for proto in ("icmp", "tcp")]

    def probe(item: tuple[str, str, str, str, str]) -> tuple[tuple[str, str, str, str], bool]:
        src, dst, net, ip, proto = item
        argv = ["ping", "-c", "1", "-W", "2", ip] if proto == "icmp" else tcp_probe(ip, port)
        return (src, dst, net, proto), host.berth("exec", src, *argv).returncode == 0

    with ThreadPoolExecutor(max_workers=12) as pool:
        observed = dict(pool.map(probe, probes))
    return {k: v for k, v in observed.items() if v != expected(k[0], k[1], k[2])}


def in_throwaway_namespaces(body: Callable[[], None], *, pid: bool = False) -> None:
    """Run ``body`` in a forked child in new network and (private) mount namespaces, so kernel tests never
    touch this machine's own networking; the child's traceback fails the calling test.

    With ``pid``, ``body`` runs as pid 1 of a new pid namespace with its own /proc: every process it
    starts dies with it, and nothing it spawned is visible on the host.
    """
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from berth.kernel import syscalls as sc
    from berth.testing.mountns import private_root
    from berth.testing.sandbox import default_prefix

    scratch = Path(tempfile.mkdtemp(prefix=default_prefix()))  # holds the root's bind under a chroot

    def isolated() -> None:
        outer_netns = os.stat("/proc/self/ns/net").st_ino
        sc.unshare(sc.CLONE_NEWNET | sc.CLONE_NEWNS)
        assert os.stat("/proc/self/ns/net").st_ino != outer_netns, "still in the machine's own netns"
        private_root(scratch / "root-bind")  # before the pid namespace: its first fork is the namespace's init
        if not pid:
            body()
            return

        def as_init() -> None:
            sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
            body()

        sc.unshare(sc.CLONE_NEWPID)
        _in_child(as_init)  # the first child after unshare(CLONE_NEWPID) is the namespace's pid 1

    try:
        _in_child(isolated)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _in_child(body: Callable[[], None]) -> None:
    """Run ``body`` in a forked child that never returns into pytest; its traceback fails the caller."""
    import os
    import traceback

    import pytest

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        report, code = b"", 0
        try:
            body()
        except BaseException:  # noqa: BLE001 - everything is reported to the parent
            report, code = traceback.format_exc().encode(), 1
        finally:
            with os.fdopen(write_end, "wb") as out:
                out.write(report)
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        report = inp.read()
    _, status = os.waitpid(pid, 0)
    if report:
        pytest.fail(report.decode(errors="replace"), pytrace=False)
    assert os.waitstatus_to_exitcode(status) == 0, f"child ended with status {status}"
