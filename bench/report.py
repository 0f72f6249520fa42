"""The markdown report and PNG charts of one bench run.

Absolute times are context (the machine is shared and noisy); the result is each ratio of medians
taken within the same run, printed next to the anchor it is measured against, and the targets as
met / not met. Nothing is printed for a contender that did not run: its row says why.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

FLOORS = ("floor (berth kernel layer)", "floor (bare pyroute2)")
HAIRPIN = "hairpin: container to its own published port"
DATAPLANE = ["raw bridge, netns to netns", "berth container to container", "host to container, direct",
             "host to published port on 127.0.0.1", "host to published port on the gateway", HAIRPIN]


@dataclass
class Results:
    """Everything one run measured. Times in seconds, rates in Gbit/s or queries/s, memory in MiB."""

    rounds: int
    blocks: int
    smoke: bool
    levels: list[int]
    fill_rounds: int
    times: dict[str, list[float]] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=dict)
    memory: dict[str, list[float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    dns: str | None = None  # bench/dns_bench.py's markdown

    def dns_ratio(self) -> float | None:
        """berth's queries per second over aardvark-dns's, as dns_bench.py printed it first (for container
        names, where it prints more than one workload)."""
        found = re.search(r"berth / aardvark-dns queries per second:? ([0-9.]+)", self.dns or "")
        return float(found.group(1)) if found else None

    def per_container(self, prefix: str, near: int | None = None) -> tuple[str, float] | None:
        """The median of a per-container memory row (``<prefix>, N containers``), with N nearest ``near``
        (or the largest N): rows of two runtimes are compared at similar counts."""
        rows = {int(n.rsplit(", ", 1)[1].split()[0]): n for n in self.memory if n.startswith(prefix + ", ")}
        if not rows:
            return None
        count = min(rows, key=lambda c: abs(c - near)) if near is not None else max(rows)
        return rows[count], statistics.median(self.memory[rows[count]])

    def median(self, name: str) -> float | None:
        for group in (self.times, self.rates, self.memory):
            if group.get(name):
                return statistics.median(group[name])
        return None

    def floor(self, op: str) -> float | None:
        """The floor of an operation: the faster of the two in-process implementations."""
        found = [m for m in (self.median(f"{f} {op}") for f in FLOORS) if m is not None]
        return min(found) if found else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


# -- tables ------------------------------------------------------------------------------------------

def table(group: dict[str, list[float]], names: list[str], unit: str, scale: float,
          baseline: Callable[[str], float | None], baseline_label: str) -> list[str]:
    """One row per measured name: N, min/median/max and, with a ``baseline_label``, the ratio of medians."""
    extra = f" {baseline_label} |" if baseline_label else ""
    lines = [f"| measurement | N | min {unit} | median {unit} | max {unit} |{extra}",
             "|---|---|---|---|---|" + ("---|" if extra else "")]
    for name in names:
        if group.get(name):
            s = group[name]
            cell = f" {fmt_ratio(ratio(statistics.median(s), baseline(name)))} |" if extra else ""
            lines.append(f"| {name} | {len(s)} | {min(s) * scale:.2f} | {statistics.median(s) * scale:.2f} | "
                         f"{max(s) * scale:.2f} |{cell}")
    return lines


def skipped_rows(results: Results, keys: tuple[str, ...]) -> list[str]:
    return [f"| {k} | skipped: {results.skipped[k]} | | | | |" for k in keys if k in results.skipped]


def shown(results: Results, lines: list[str]) -> set[str]:
    """Skip reasons already printed in a section (as a table row or the port-limit line)."""
    text = "\n".join(lines)
    return {k for k in results.skipped if f"| {k} |" in text or results.skipped[k] in text}


def pairs(prefixes: list[str], ops: tuple[str, str]) -> list[str]:
    return [f"{p} {op}" for p in prefixes for op in ops]


def section_attach(r: Results) -> list[str]:
    names = pairs([*FLOORS, "berth API", "berth CLI"], ("attach", "detach")) + \
        ["berth-cni ADD", "berth-cni DEL", "CNI bridge plugin ADD", "CNI bridge plugin DEL", "netavark setup",
         "netavark teardown", "Docker API attach", "Docker API detach"]
    op = lambda n: "attach" if n.endswith(("attach", "ADD", "setup")) else "detach"  # noqa: E731
    lines = ["## 1. Attach and detach of one running container to a bridge network", "",
             "Attach: a veth into the container's namespace, enslaved to the network's bridge, address, up, "
             "default route (CNI ADD, netavark setup); detach the reverse. The floor is the faster of the two "
             "in-process implementations.", ""]
    lines += table(r.times, names, "ms", 1000, lambda n: r.floor(op(n)), "x floor")
    lines += skipped_rows(r, ("floor", "berth", "berth-cni", "CNI bridge plugin", "netavark", "docker API"))
    return lines


def section_fill(r: Results) -> list[str]:
    names = [f"{who} {op} k={k}" for who in ("berth API", f"{FLOORS[0]}") for op in ("attach", "detach")
             for k in r.levels]
    first = lambda n: r.median(n.rsplit(" k=", 1)[0] + f" k={min(r.levels)}")  # noqa: E731
    lines = ["## 2. The k-th attach and detach as a network fills", "",
             "k-1 other endpoints are on the bridge (berth: running containers; floor: bare veths); each k is "
             f"timed {r.fill_rounds}x by connecting and disconnecting one probe container.", ""]
    lines += table(r.times, names, "ms", 1000, first, f"x k={min(r.levels)}")
    lines += skipped_rows(r, ("floor fill",))
    if "fill" in r.skipped:
        lines += ["", f"- berth's fill stopped early: {r.skipped['fill']}"]
    limit = r.notes.get("bridge port limit", r.skipped.get("bridge port limit", "not reached"))
    lines += ["", f"- the 1024th port (Linux bridges take at most 1023): {limit}"]
    return lines


def section_network(r: Results) -> list[str]:
    names = ["floor network create", "floor network rm", "berth API network create", "berth API network rm",
             "Docker API network create", "Docker API network rm", "berth API run -d", "Docker API run -d"]

    def base(n: str) -> float | None:
        if n.endswith("run -d"):
            return r.median("Docker API run -d")
        return r.median("floor network " + n.rsplit(" ", 1)[1])

    lines = ["## 3. network create / rm, and run -d", "",
             "The floor of create / rm: bridge, address, up and the nft set elements of berth's fixed ruleset, "
             "by hand. `run -d`: create + start of a busybox container on the default bridge until it runs, "
             "against Docker's.", ""]
    return lines + table(r.times, names, "ms", 1000, base, "x floor / x Docker") + \
        skipped_rows(r, ("floor", "berth", "docker API"))


def section_cli(r: Results) -> list[str]:
    names = ["/bin/true", "python -c pass", "berth network ls", "berth ps", "docker network ls (berthd)"]
    lines = ["## 4. CLI start-up (fork to exit)", ""]
    lines += table(r.times, names, "ms", 1000, lambda n: r.median("python -c pass"), "x python -c pass")
    return lines + skipped_rows(r, ("CLI start-up", "docker network ls (berthd)"))


def dataplane_base(name: str) -> str:
    """The path a data-plane path is compared with."""
    if name in DATAPLANE[:2]:
        return DATAPLANE[0]
    return DATAPLANE[1] if name == HAIRPIN else DATAPLANE[2]


def paired(r: Results, name: str) -> float | None:
    """The median of the per-round ratios of a path to its baseline. Both ran in the same round, seconds
    apart, so a change of the machine's load between rounds cancels out, unlike in a ratio of medians."""
    a, b = r.rates.get(name), r.rates.get(dataplane_base(name))
    if not a or not b or len(a) != len(b):
        return None
    return statistics.median(x / y for x, y in zip(a, b))


def section_dataplane(r: Results) -> list[str]:
    lines = ["## 5. Data plane (iperf3 TCP)", "",
             "Container to container is compared with the raw bridge; published ports with the direct path; "
             "hairpin with container to container. Every round runs each path once; the ratio is the median of "
             "the per-round ratios.", ""]
    lines += table(r.rates, DATAPLANE, "Gbit/s", 1, lambda n: None, "") + skipped_rows(r, ("data plane",))
    ratios = [f"| {n} | {dataplane_base(n)} | {paired(r, n):.2f} |" for n in DATAPLANE[1:]
              if dataplane_base(n) != n and paired(r, n) is not None]
    if ratios:
        lines += ["", "| path | compared with | ratio (median of per-round ratios) |", "|---|---|---|", *ratios]
    return lines


def section_memory(r: Results) -> list[str]:
    def order(n: str) -> tuple[str, int]:
        return n.split(",")[0], int(n.split(", ")[1].split()[0])

    names = sorted(r.memory, key=order)
    lines = ["## 6. Memory", "",
             "berthd's RSS (its monitor fork server included); per berth container: its monitor process and the container's processes together; per "
             "Docker container: its containerd-shim and the container's processes (PSS shares common pages "
             "fairly, RSS counts them in every process).", ""]
    return lines + table(r.memory, names, "MiB", 1, lambda n: None, "") + skipped_rows(r, ("berth", "docker API"))


def section_dns(r: Results) -> list[str]:
    lines = ["## 7. DNS (bench/dns_bench.py)", ""]
    if r.dns:
        return lines + r.dns.strip().splitlines()
    return lines + [f"- skipped: {r.skipped.get('DNS', 'not run')}"]


# -- targets -----------------------------------------------------------------------------------------

def targets(r: Results) -> list[tuple[str, float | None, bool | None, str]]:
    """(target, ratio, met, context): the context is what the floor itself does where it bounds the target."""
    top, first = max(r.levels), min(r.levels)
    api_attach, api_detach = r.median("berth API attach"), r.median("berth API detach")
    floor_fill = ratio(r.median(f"{FLOORS[0]} attach k={top}"), r.median(f"{FLOORS[0]} attach k={first}"))
    berth_mem = r.per_container("per container PSS")
    docker_mem = r.per_container("Docker per container PSS")
    if berth_mem and docker_mem:  # compare at similar numbers of running containers
        near = int(docker_mem[0].rsplit(", ", 1)[1].split()[0])
        berth_mem = r.per_container("per container PSS", near)
    rows: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        ("attach through the API within 1.5x the floor", ratio(api_attach, r.floor("attach")), lambda x: x <= 1.5, ""),
        ("attach through the API >= 3x faster than the CNI bridge plugin",
         ratio(r.median("CNI bridge plugin ADD"), api_attach), lambda x: x >= 3, ""),
        ("attach through the API >= 3x faster than Docker's API",
         ratio(r.median("Docker API attach"), api_attach), lambda x: x >= 3, ""),
        ("detach through the API within 1.5x the floor", ratio(api_detach, r.floor("detach")), lambda x: x <= 1.5,
         ""),
        (f"the k={top} attach within 1.2x the k={first} attach",
         ratio(r.median(f"berth API attach k={top}"), r.median(f"berth API attach k={first}")), lambda x: x <= 1.2,
         "" if floor_fill is None else f"the kernel floor itself: {floor_fill:.2f}x"),
        ("network create within 3x its floor",
         ratio(r.median("berth API network create"), r.median("floor network create")), lambda x: x <= 3, ""),
        ("`berth network ls` within 2x of `python -c pass`",
         ratio(r.median("berth network ls"), r.median("python -c pass")), lambda x: x <= 2, ""),
        ("container-to-container throughput >= 0.95 of the raw bridge",
         paired(r, "berth container to container"), lambda x: x >= 0.95, ""),
        ("published port on 127.0.0.1 >= 0.95 of the direct path",
         paired(r, "host to published port on 127.0.0.1"), lambda x: x >= 0.95, ""),
        ("published port on the gateway >= 0.95 of the direct path",
         paired(r, "host to published port on the gateway"), lambda x: x >= 0.95, ""),
        ("DNS: container names, queries per second >= 2x aardvark-dns", r.dns_ratio(), lambda x: x >= 2, ""),
        ("memory per container (PSS) <= Docker's", ratio(berth_mem and berth_mem[1], docker_mem and docker_mem[1]),
         lambda x: x <= 1, ""),
    ]
    return [(label, value, None if value is None else check(value), context)
            for label, value, check, context in rows]


def section_targets(r: Results) -> list[str]:
    lines = ["## Targets (ratios of medians within this run)", "", "| target | ratio | verdict |", "|---|---|---|"]
    for label, value, ok, context in targets(r):
        verdict = "n/a (not measured in this run)" if ok is None else ("met" if ok else "not met")
        lines.append(f"| {label} | {'' if value is None else f'{value:.2f}'} | {verdict}"
                     f"{f' ({context})' if context else ''} |")
    return lines


# -- charts ------------------------------------------------------------------------------------------

def charts(r: Results, directory: Path) -> tuple[list[Path], str | None]:
    """PNG charts next to the report; (paths, None) or ([], why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (bench/setup.sh installs it)"
    directory.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []

    def bars(path: str, title: str, group: dict[str, list[float]], names: list[str], unit: str, scale: float) -> None:
        names = [n for n in names if group.get(n)]
        if not names:
            return
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.4))
        med = [statistics.median(group[n]) * scale for n in names]
        lo = [m - min(group[n]) * scale for m, n in zip(med, names)]
        hi = [max(group[n]) * scale - m for m, n in zip(med, names)]
        ax.barh(names, med, xerr=[lo, hi], color="#4c72b0", ecolor="#444", capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(f"{unit} (bar: median, whiskers: min-max)")
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(directory / path, dpi=110)
        plt.close(fig)
        made.append(directory / path)

    attach = pairs([*FLOORS, "berth API", "berth CLI"], ("attach",)) + \
        ["berth-cni ADD", "CNI bridge plugin ADD", "netavark setup", "Docker API attach"]
    detach = pairs([*FLOORS, "berth API", "berth CLI"], ("detach",)) + \
        ["berth-cni DEL", "CNI bridge plugin DEL", "netavark teardown", "Docker API detach"]
    bars("attach.png", "Attach one running container", r.times, attach, "ms", 1000)
    bars("detach.png", "Detach one running container", r.times, detach, "ms", 1000)
    bars("startup.png", "CLI start-up", r.times,
         ["/bin/true", "python -c pass", "berth network ls", "berth ps", "docker network ls (berthd)"], "ms", 1000)
    bars("lifecycle.png", "network create / rm, run -d", r.times,
         ["floor network create", "berth API network create", "Docker API network create", "floor network rm",
          "berth API network rm", "Docker API network rm", "berth API run -d", "Docker API run -d"], "ms", 1000)
    bars("throughput.png", "Data plane throughput (iperf3)", r.rates, DATAPLANE, "Gbit/s", 1)

    fill = {f"{who} {op}": [r.median(f"{who} {op} k={k}") for k in r.levels]
            for who in ("berth API", FLOORS[0]) for op in ("attach", "detach")}
    if any(v is not None for series in fill.values() for v in series):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for label, series in fill.items():
            points = [(k, v * 1000) for k, v in zip(r.levels, series) if v is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("k (endpoints on the bridge including this one)")
        ax.set_ylabel("median ms")
        ax.set_ylim(bottom=0)
        ax.set_title("The k-th attach and detach as a network fills")
        ax.legend()
        fig.tight_layout()
        fig.savefig(directory / "fill.png", dpi=110)
        plt.close(fig)
        made.append(directory / "fill.png")
    return made, None


# -- the whole report --------------------------------------------------------------------------------

def write(r: Results, out: Path) -> str:
    made, no_charts = charts(r, out.parent / "charts")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# berth benchmark results", "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {os.cpu_count()} cores, kernel {platform.release()}, Python {platform.python_version()}; "
        f"load average at the end: {load}",
        f"- {r.rounds} rounds in {r.blocks} interleaved blocks: every contender runs a slice of its rounds in "
        "each block, so drifting load hits all alike"
        + (" — **smoke run: one round, small k; the figures mean nothing**" if r.smoke else ""),
        "- everything ran in a throwaway host (own pid/net/mount namespaces) and was gone with it",
        "- the machine is shared and noisy: the ratios within this run are the result, absolute times context",
        "",
    ]
    for section in (section_targets, section_attach, section_fill, section_network, section_cli,
                    section_dataplane, section_memory, section_dns):
        lines += section(r) + [""]
    other = [k for k in r.skipped if k not in shown(r, lines)]
    if other:
        lines += ["## Also skipped", ""] + [f"- {k}: {r.skipped[k]}" for k in other] + [""]
    lines += ["## Charts", ""]
    if made:
        lines += [f"![{p.stem}]({p.relative_to(out.parent)})" for p in made]
    else:
        lines.append(f"- none: {no_charts or 'nothing was measured'}")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text
