"""berth's embedded DNS against aardvark-dns, side by side in one run, in a throwaway network namespace.

    python bench/dns_bench.py [--seconds 5] [--rounds 3]

Re-runs itself under ``unshare --net``: the namespace has only ``lo`` with addresses assigned here,
so no query can leave the machine. Both servers hold the same 1,001 containers and answer the same
queries (A records of 1,000 container names, from a client container's address), interleaved round
by round. Measured with dnsperf: the most queries per second with 100 in flight, then the latency
percentiles at half of that rate (of answered queries; lost ones are counted apart); and how long a server restart leaves names unanswered.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import ip_address
from pathlib import Path

BERTH, AARDVARK, CLIENT = "10.53.0.1", "10.53.0.2", "10.53.1.2"
AARDVARK_BIN = Path("/usr/lib/podman/aardvark-dns")
NAMES = 1000
HERE = Path(__file__).resolve()


def container_address(i: int) -> str:
    return f"10.53.{2 + i // 250}.{1 + i % 250}"


def container_id(i: int) -> str:
    return f"{i:064x}"


# -- the berth server process ---------------------------------------------------------------------

def serve() -> None:
    """A DNS server as berthd runs it, with the benchmark's containers; prints the time to serve."""
    started = time.perf_counter()
    sys.path.insert(0, str(HERE.parent.parent / "src"))
    from berth.dns.server import DnsServer
    from berth.dns.table import NameTable

    table = NameTable()
    table.set_network("bench", "bench", internal=False)
    table.set_endpoint("bench", "bench", "c" * 64, ["client"], ip_address(CLIENT), None)
    for i in range(NAMES):
        table.set_endpoint("bench", "bench", container_id(i), [f"web{i}"], ip_address(container_address(i)), None)
    server = DnsServer(table)
    server.start()
    server.listen("bench", ip_address(BERTH))
    print(f"ready {time.perf_counter() - started:.4f}", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or kills us)
    server.stop()


def start_berth() -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(HERE), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError(f"berth DNS did not start: {line!r}")
    return proc


def start_aardvark(conf: Path) -> int:
    """aardvark-dns daemonizes itself; returns the pid from its pidfile."""
    lines = [AARDVARK, "c" * 64 + f" {CLIENT}  client"]
    lines += [f"{container_id(i)} {container_address(i)}  web{i}" for i in range(NAMES)]
    (conf / "bench").write_text("\n".join(lines) + "\n")
    subprocess.run([str(AARDVARK_BIN), "--config", str(conf), "-p", "53", "run"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_answer(AARDVARK, deadline=10)
    return int((conf / "aardvark.pid").read_text().split()[0])


# -- probes and load ------------------------------------------------------------------------------

def query(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"


def wait_for_answer(server: str, deadline: float, interval: float = 0.001) -> float:
    """Ask for web0 every ``interval`` seconds until an answer arrives; returns when it did (monotonic)."""
    end = time.monotonic() + deadline
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((CLIENT, 0))
        s.settimeout(interval)
        qid = 0
        while time.monotonic() < end:
            qid = (qid + 1) & 0xFFFF
            try:
                s.sendto(query("web0", qid), (server, 53))
                while True:
                    reply = s.recv(512)
                    if reply[:2] == qid.to_bytes(2, "big") and reply[3] & 0x0F == 0 and reply[7]:
                        return time.monotonic()
            except (TimeoutError, ConnectionRefusedError):
                continue
    raise RuntimeError(f"{server} did not answer within {deadline}s")


def dnsperf(server: str, queries: Path, seconds: int, rate: int | None = None) -> tuple[float, list[float], int]:
    """(queries per second, latencies in ms when rate-limited, queries lost); any answer but NOERROR fails."""
    argv = ["dnsperf", "-s", server, "-a", CLIENT, "-d", str(queries), "-l", str(seconds), "-c", "1", "-q", "100"]
    if rate:
        argv += ["-Q", str(rate), "-v"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    qps = float(next(line for line in out.splitlines() if "Queries per second" in line).split()[-1])
    codes = next(line for line in out.splitlines() if "Response codes" in line).split(":", 1)[1].strip()
    lost = next(line for line in out.splitlines() if "Queries lost" in line).split()[2]
    if not codes.startswith("NOERROR") or "," in codes:
        raise RuntimeError(f"dnsperf against {server}: response codes {codes}")
    latencies = [float(line.split()[-1]) * 1000 for line in out.splitlines() if line.startswith("> ")]
    return qps, latencies, int(lost)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def restart_gap(proc: subprocess.Popen[str]) -> tuple[float, float, subprocess.Popen[str]]:
    """Kill the server and start a new one at once: (seconds without answers, the new one's own set-up time)."""
    killed = time.monotonic()
    proc.kill()
    proc.wait()
    fresh = subprocess.Popen([sys.executable, str(HERE), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    answered = wait_for_answer(BERTH, deadline=30)
    assert fresh.stdout is not None
    setup = float(fresh.stdout.readline().split()[1])
    return answered - killed, setup, fresh


# -- the run --------------------------------------------------------------------------------------

def inside(seconds: int, rounds: int) -> int:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout.splitlines()
    if len(links) != 1 or ": lo:" not in links[0]:
        raise SystemExit("refusing to run: this network namespace has more than lo")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in (BERTH, AARDVARK, CLIENT):
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    work = Path(tempfile.mkdtemp(prefix="dns-bench-"))
    queries = work / "queries.txt"
    names = [f"web{i} A" for i in range(NAMES)]
    random.Random(7).shuffle(names)
    queries.write_text("\n".join(names) + "\n")

    start_load = os.getloadavg()[0]
    skipped: dict[str, str] = {}
    servers = {"berth": BERTH}
    berth = start_berth()
    pids = {"berth": berth.pid}
    aardvark_pid = None
    if not shutil.which("dnsperf"):
        raise SystemExit("dnsperf is not installed (apt-get install dnsperf)")
    if AARDVARK_BIN.exists():
        conf = work / "aardvark"
        conf.mkdir()
        aardvark_pid = start_aardvark(conf)
        servers["aardvark-dns"] = AARDVARK
        pids["aardvark-dns"] = aardvark_pid
    else:
        skipped["aardvark-dns"] = f"{AARDVARK_BIN} not installed (apt-get install aardvark-dns)"
    try:
        qps: dict[str, list[float]] = {k: [] for k in servers}
        per_cpu: dict[str, list[float]] = {k: [] for k in servers}
        lat: dict[str, list[float]] = {k: [] for k in servers}
        lost = {k: 0 for k in servers}
        for _ in range(rounds):
            for label, address in servers.items():
                before = cpu_seconds(pids[label])
                rate, _, dropped = dnsperf(address, queries, seconds)
                qps[label].append(rate)
                lost[label] += dropped
                per_cpu[label].append(rate * seconds / max(cpu_seconds(pids[label]) - before, 0.01))
        for _ in range(rounds):
            for label, address in servers.items():
                half = int(statistics.median(qps[label]) / 2)
                _, latencies, dropped = dnsperf(address, queries, seconds, rate=half)
                lat[label] += latencies
                lost[label] += dropped
        gaps, setups = [], []
        for _ in range(rounds):
            gap, setup, berth = restart_gap(berth)
            gaps.append(gap * 1000)
            setups.append(setup * 1000)
    finally:
        berth.stdin.close()  # type: ignore[union-attr]
        berth.wait(timeout=10)
        if aardvark_pid:
            os.kill(aardvark_pid, signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)

    print(f"DNS benchmark: {NAMES} container names, dnsperf -c 1 -q 100, {seconds}s x {rounds} rounds, interleaved; "
          f"{os.cpu_count()} CPUs, load average {start_load:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    print("| server | qps (median of rounds) | all rounds | queries per CPU second | p50 ms at half load "
          "| p99 ms at half load | queries timed | queries lost |")
    print("|---|---|---|---|---|---|---|---|")
    for label in servers:
        print(f"| {label} | {statistics.median(qps[label]):,.0f} | {', '.join(f'{q:,.0f}' for q in qps[label])} "
              f"| {statistics.median(per_cpu[label]):,.0f} "
              f"| {percentile(lat[label], 50):.3f} | {percentile(lat[label], 99):.3f} | {len(lat[label]):,} | {lost[label]} |")
    if "aardvark-dns" in servers:
        ratio = statistics.median(qps["berth"]) / statistics.median(qps["aardvark-dns"])
        cpu = statistics.median(per_cpu["berth"]) / statistics.median(per_cpu["aardvark-dns"])
        print(f"\nberth / aardvark-dns queries per second: {ratio:.2f} (target >= 2); per CPU second: {cpu:.2f}")
    print(f"berth p99 at half load: {percentile(lat['berth'], 99):.3f} ms (target < 2 ms)")
    print(f"\nrestart (kill -9, start a new server process): names unanswered for "
          f"{', '.join(f'{g:.0f}' for g in gaps)} ms; the server's own set-up (imports, table of "
          f"{NAMES + 1}, bind) {', '.join(f'{s:.1f}' for s in setups)} ms")
    for what, why in skipped.items():
        print(f"skipped {what}: {why}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    if args.inside:
        return inside(args.seconds, args.rounds)
    if os.geteuid() != 0:
        raise SystemExit("needs root (it creates a throwaway network namespace)")
    return subprocess.call(["unshare", "--net", "--", sys.executable, str(HERE), "--inside",
                            "--seconds", str(args.seconds), "--rounds", str(args.rounds)])


if __name__ == "__main__":
    sys.exit(main())
