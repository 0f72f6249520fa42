"""berth side by side with its anchors, interleaved in one run, in a throwaway host.

    python bench/run.py [--rounds N] [--smoke] [--out bench/RESULTS.md]

The machine is shared and noisy, so every figure is reported as min/median/max over N repetitions and,
above all, as a ratio to an anchor measured in the same run. Anchors: the kernel floor (the same netlink
work done directly with berth's kernel layer, in-process), the CNI reference ``bridge`` plugin with
``host-local`` IPAM (Debian's containernetworking-plugins), and ``python -c pass`` for CLI start-up.
Docker and netavark are reported as skipped when not installed.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from berth.testing.images import busybox_rootfs_tar
from berth.testing.sandbox import Sandbox

CNI_DIR = Path("/usr/lib/cni")


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("berth")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api(conn: UnixHTTP, method: str, path: str, body: object = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, "/v1.41" + path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {raw[:200]!r}")
    return json.loads(raw) if raw.strip() else None


def stats(samples: list[float]) -> dict[str, float]:
    return {"n": len(samples), "min": min(samples), "median": statistics.median(samples), "max": max(samples)}


# The kernel floor, measured inside the throwaway host by a separate process (no berthd involved).
FLOOR = textwrap.dedent("""
    import json, os, sys, time
    from ipaddress import ip_interface, ip_address
    from pathlib import Path
    from berth.kernel.host import Kernel
    from berth.firewall import rules
    rounds = int(sys.argv[1]); work = Path(sys.argv[2])
    k = Kernel()
    k.nft(rules.base_ruleset())
    k.bridge_ensure("floorbr0", alias="bench", mtu=1500, addresses=[ip_interface("10.99.0.1/16")])
    ns = work / "floor-ns"; k.netns_create(ns)
    attach, detach, create, remove = [], [], [], []
    for i in range(rounds):
        t = time.perf_counter()
        k.veth_attach(netns=ns, host_name="flv%d" % i, alias="bench", bridge="floorbr0", ifname="eth1",
                      mac="02:42:0a:63:00:02", mtu=1500, addresses=[ip_interface("10.99.0.2/16")],
                      gateway4=ip_address("10.99.0.1"))
        attach.append(time.perf_counter() - t)
        t = time.perf_counter()
        k.netns_link_delete(ns, "eth1")
        detach.append(time.perf_counter() - t)
        name = "flbr%d" % i
        t = time.perf_counter()
        k.bridge_ensure(name, alias="bench", mtu=1500, addresses=[ip_interface("10.98.%d.1/24" % (i % 250))])
        k.nft(rules.network_elements(name, [ip_interface("10.98.%d.0/24" % (i % 250)).network], icc=True,
                                     masquerade=True, internal=False, op="add"))
        create.append(time.perf_counter() - t)
        t = time.perf_counter()
        k.nft(rules.network_elements(name, [ip_interface("10.98.%d.0/24" % (i % 250)).network], icc=True,
                                     masquerade=True, internal=False, op="delete"))
        k.link_delete(name)
        remove.append(time.perf_counter() - t)
    k.netns_delete(ns); k.link_delete("floorbr0")
    print(json.dumps({"attach": attach, "detach": detach, "create": create, "remove": remove}))
""")

# The CNI reference bridge plugin, driven exactly as a runtime drives it (env + config on stdin).
CNI = textwrap.dedent("""
    import json, os, subprocess, sys, time
    rounds = int(sys.argv[1]); work = sys.argv[2]
    conf = {"cniVersion": "1.0.0", "name": "benchnet", "type": "bridge", "bridge": "cnibr0", "isGateway": True,
            "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.97.0.0/16", "dataDir": work + "/ipam"}}
    subprocess.run(["ip", "netns", "add", "cnibench"], check=True)
    env = dict(os.environ, CNI_CONTAINERID="bench", CNI_NETNS="/run/netns/cnibench", CNI_IFNAME="eth1",
               CNI_PATH="/usr/lib/cni")
    add, delete = [], []
    data = json.dumps(conf).encode()
    for i in range(rounds):
        t = time.perf_counter()
        r = subprocess.run(["/usr/lib/cni/bridge"], input=data, env=dict(env, CNI_COMMAND="ADD"), capture_output=True)
        add.append(time.perf_counter() - t)
        assert r.returncode == 0, r.stdout + r.stderr
        t = time.perf_counter()
        r = subprocess.run(["/usr/lib/cni/bridge"], input=data, env=dict(env, CNI_COMMAND="DEL"), capture_output=True)
        delete.append(time.perf_counter() - t)
        assert r.returncode == 0, r.stdout + r.stderr
    print(json.dumps({"add": add, "del": delete}))
""")


def in_sandbox(box: Sandbox, code: str, *args: str) -> dict:
    result = box.run([sys.executable, "-c", code, *args], timeout=600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def berth_api(box: Sandbox, rounds: int) -> dict[str, list[float]]:
    conn = UnixHTTP(str(box.socket))
    net = api(conn, "POST", "/networks/create", {"Name": "benchnet", "IPAM": {"Config": [{"Subnet": "10.96.0.0/16"}]}})
    c = api(conn, "POST", "/containers/create?name=bench", {"Image": "bb", "Cmd": ["sleep", "100000"],
                                                             "HostConfig": {"NetworkMode": "none"}})
    # a running container on the default bridge, connected to and from benchnet
    api(conn, "DELETE", f"/containers/{c['Id']}?force=1")
    c = api(conn, "POST", "/containers/create?name=bench", {"Image": "bb", "Cmd": ["sleep", "100000"]})
    api(conn, "POST", f"/containers/{c['Id']}/start")
    connect, disconnect, create, remove = [], [], [], []
    for i in range(rounds):
        t = time.perf_counter()
        api(conn, "POST", f"/networks/{net['Id']}/connect", {"Container": c["Id"]})
        connect.append(time.perf_counter() - t)
        t = time.perf_counter()
        api(conn, "POST", f"/networks/{net['Id']}/disconnect", {"Container": c["Id"]})
        disconnect.append(time.perf_counter() - t)
        t = time.perf_counter()
        made = api(conn, "POST", "/networks/create", {"Name": f"n{i}"})
        create.append(time.perf_counter() - t)
        t = time.perf_counter()
        api(conn, "DELETE", f"/networks/{made['Id']}")
        remove.append(time.perf_counter() - t)
    api(conn, "DELETE", f"/containers/{c['Id']}?force=1")
    api(conn, "DELETE", f"/networks/{net['Id']}")
    conn.close()
    return {"connect": connect, "disconnect": disconnect, "create": create, "remove": remove}


AARDVARK = Path("/usr/lib/podman/aardvark-dns")


def dns_bench(box: Sandbox, seconds: int, blocks: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Queries per second of berth's embedded DNS and of aardvark-dns, same load, interleaved.

    dnsperf runs inside a client container's network namespace (both servers answer only known
    containers, identified by source address), 100 queries in flight, for a container name.
    """
    skipped: dict[str, str] = {}
    if not shutil.which("dnsperf"):
        return {}, {"DNS": "dnsperf is not installed (apt-get install dnsperf)"}
    box.berth("network", "create", "--subnet", "10.95.0.0/24", "dnsnet")
    for name in ("web", "client"):
        box.berth("run", "-d", "--name", name, "--network", "dnsnet", "bb", "sleep", "100000")
    client = box.berth("inspect", "-f", "{{.Id}}", "client").stdout.strip()
    queries = box.tmp / "queries.txt"
    queries.write_text("web A\n" * 100)
    targets = {"berth DNS qps": (f"--net={box.run_root}/netns/{client}", "10.95.0.1")}
    if AARDVARK.exists():
        conf = box.tmp / "aardvark"
        conf.mkdir()
        (conf / "aanet").write_text("10.93.0.1\n" + "ab" * 32 + " 10.93.0.2  web\n" + "cd" * 32 + " 10.93.0.3  client\n")
        for argv in (["ip", "link", "add", "aabr", "type", "bridge"], ["ip", "addr", "add", "10.93.0.1/24", "dev", "aabr"],
                     ["ip", "link", "set", "aabr", "up"], ["ip", "netns", "add", "aaclient"],
                     ["ip", "link", "add", "aav0", "type", "veth", "peer", "name", "eth0", "netns", "aaclient"],
                     ["ip", "link", "set", "aav0", "master", "aabr", "up"],
                     ["ip", "-n", "aaclient", "addr", "add", "10.93.0.3/24", "dev", "eth0"],
                     ["ip", "-n", "aaclient", "link", "set", "eth0", "up"],
                     [str(AARDVARK), "--config", str(conf), "-p", "53", "run"]):
            box.run(argv, check=True)
        targets["aardvark-dns qps"] = ("--net=/run/netns/aaclient", "10.93.0.1")
    else:
        skipped["aardvark-dns"] = "not installed (apt-get install aardvark-dns)"
    out: dict[str, list[float]] = {}
    for _ in range(blocks):
        for label, (netns, server) in targets.items():
            result = box.run(["nsenter", netns, "dnsperf", "-s", server, "-d", str(queries), "-l", str(seconds),
                              "-c", "1", "-q", "100"], timeout=seconds + 30)
            qps = [line for line in result.stdout.splitlines() if "Queries per second" in line]
            lost = [line for line in result.stdout.splitlines() if "Queries lost" in line]
            if not qps:
                raise RuntimeError(f"dnsperf against {label}: {result.stdout[-500:]}{result.stderr[-500:]}")
            if lost and not lost[0].split()[2] == "0":
                skipped[f"{label} (lost queries)"] = lost[0].strip()
            out.setdefault(label, []).append(float(qps[0].split()[-1]))
    return out, skipped


def port_bench(box: Sandbox, seconds: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """TCP throughput (Gbit/s, iperf3) to a container: directly, and through a published port."""
    if not shutil.which("iperf3"):
        return {}, {"published ports": "iperf3 is not installed"}
    box.berth("run", "-d", "--name", "iperf", "--network", "dnsnet", "-p", "15201:5201", "bb", "sleep", "100000")
    cid = box.berth("inspect", "-f", "{{.Id}}", "iperf").stdout.strip()
    server = box.popen(["nsenter", f"--net={box.run_root}/netns/{cid}", "iperf3", "-s"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    out: dict[str, list[float]] = {}
    try:
        for _ in range(3):
            for label, (address, port) in (("throughput direct to container", ("10.95.0.4", 5201)),
                                           ("throughput published on 127.0.0.1", ("127.0.0.1", 15201)),
                                           ("throughput published via gateway", ("10.95.0.1", 15201))):
                result = box.run(["iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"],
                                 timeout=seconds + 30)
                data = json.loads(result.stdout)
                out.setdefault(label, []).append(data["end"]["sum_received"]["bits_per_second"] / 1e9)
    finally:
        server.kill()
        server.wait()
    return out, {}


def wall(argv: list[str], rounds: int, env: dict[str, str] | None = None) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="one round of everything: keeps the harness working")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    rounds = 1 if args.smoke else args.rounds
    results: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    with Sandbox(prefix="berth-test-bench-") as box:
        box.start_berthd()
        assert box.berth("import", str(busybox_rootfs_tar(box.tmp / "bb.tar")), "bb").returncode == 0
        # interleave: each block runs a slice of every contender, so drifting load hits all alike
        blocks = 1 if args.smoke else 5
        per = max(1, rounds // blocks)
        raw: dict[str, list[float]] = {}
        for _ in range(blocks):
            for key, value in in_sandbox(box, FLOOR, str(per), str(box.tmp)).items():
                raw.setdefault(f"floor {key}", []).extend(value)
            for key, value in berth_api(box, per).items():
                raw.setdefault(f"berth API {key}", []).extend(value)
            if (CNI_DIR / "bridge").exists():
                for key, value in in_sandbox(box, CNI, str(per), str(box.tmp)).items():
                    raw.setdefault(f"CNI bridge {key}", []).extend(value)
                box.run(["ip", "netns", "del", "cnibench"])
                box.run(["ip", "link", "del", "cnibr0"])
            else:
                skipped["CNI bridge"] = "containernetworking-plugins is not installed"
            raw.setdefault("python -c pass", []).extend(wall([sys.executable, "-c", "pass"], per))
            cli = [shutil.which("berth")] if shutil.which("berth") else [sys.executable, "-m", "berth.cli.main"]
            raw.setdefault("berth network ls", []).extend(wall([*cli, "network", "ls"], per, box.env()))
        extra: dict[str, list[float]] = {}
        if not args.smoke:
            dns, why = dns_bench(box, 3, 3)
            extra.update(dns)
            skipped.update(why)
            ports, why = port_bench(box, 3)
            extra.update(ports)
            skipped.update(why)
        for name, samples in raw.items():
            results[name] = stats(samples)
        rates = {name: stats(samples) for name, samples in extra.items()}
    skipped["docker API"] = "no Docker daemon runs here (only the docker CLI is installed)"
    skipped["netavark"] = "not wired into the harness yet"
    report(results, rates if not args.smoke else {}, skipped, rounds, Path(args.out), args.smoke)
    return 0


def report(results: dict[str, dict[str, float]], rates: dict[str, dict[str, float]], skipped: dict[str, str],
           rounds: int, out: Path, smoke: bool) -> None:
    med = {k: v["median"] for k, v in {**results, **rates}.items()}

    def ratio(a: str, b: str) -> float | None:
        return med[a] / med[b] if a in med and b in med and med[b] else None

    targets = [
        ("attach through the API within 1.5x the floor", ratio("berth API connect", "floor attach"), lambda r: r <= 1.5),
        ("detach through the API within 1.5x the floor", ratio("berth API disconnect", "floor detach"), lambda r: r <= 1.5),
        ("attach at least 3x faster than the CNI bridge plugin", ratio("CNI bridge add", "berth API connect"), lambda r: r >= 3),
        ("network create within 3x its floor", ratio("berth API create", "floor create"), lambda r: r <= 3),
        ("`berth network ls` within 2x of `python -c pass`", ratio("berth network ls", "python -c pass"), lambda r: r <= 2),
        ("DNS: at least 2x aardvark-dns's queries per second", ratio("berth DNS qps", "aardvark-dns qps"), lambda r: r >= 2),
        ("published port on 127.0.0.1 at least 0.95 of direct", ratio("throughput published on 127.0.0.1",
                                                                     "throughput direct to container"), lambda r: r >= 0.95),
        ("published port via the gateway at least 0.95 of direct", ratio("throughput published via gateway",
                                                                         "throughput direct to container"), lambda r: r >= 0.95),
    ]
    lines = [
        "# berth benchmark results", "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.node()}, {os.cpu_count()} cores, kernel {platform.release()}, Python {platform.python_version()}",
        f"- rounds: {rounds}{' (smoke run: figures mean nothing)' if smoke else ''}; contenders interleaved in blocks",
        "- everything ran in a throwaway host (own pid/net/mount namespaces); times in milliseconds", "",
        "| measurement | N | min | median | max |", "|---|---|---|---|---|",
    ]
    for name, s in sorted(results.items()):
        lines.append(f"| {name} | {s['n']} | {s['min']*1000:.2f} | {s['median']*1000:.2f} | {s['max']*1000:.2f} |")
    if rates:
        lines += ["", "| rate (higher is better) | N | min | median | max |", "|---|---|---|---|---|"]
        for name, s in sorted(rates.items()):
            unit = "Gbit/s" if name.startswith("throughput") else "queries/s"
            lines.append(f"| {name} ({unit}) | {s['n']} | {s['min']:.1f} | {s['median']:.1f} | {s['max']:.1f} |")
    lines += ["", "## Targets (ratios of medians in the same run)", "", "| target | ratio | met |", "|---|---|---|"]
    for label, value, ok in targets:
        lines.append(f"| {label} | {'n/a' if value is None else f'{value:.2f}'} | "
                     f"{'n/a' if value is None else ('met' if ok(value) else 'not met')} |")
    if skipped:
        lines += ["", "## Skipped anchors", ""] + [f"- {k}: {v}" for k, v in sorted(skipped.items())]
    lines += ["", "## Not measured yet", "",
              "- the k-th attach as a network fills (k = 100, 500, 1000), container-to-container throughput against a "
              "bare bridge, DNS p99 latency at half load, memory per container, netavark, and charts: still to do."]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
