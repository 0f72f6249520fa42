"""berth side by side with its anchors, interleaved in one run, in a throwaway host.

    python3 bench/run.py [--rounds N] [--smoke] [--out bench/RESULTS.md]

Anchors: the kernel floor (the same netlink work in-process: berth's kernel layer and bare pyroute2),
the CNI reference bridge plugin, berth-cni, netavark, Docker's API (a Docker daemon started inside the
throwaway host), aardvark-dns (bench/dns_bench.py), and for the CLI ``python -c pass`` and ``/bin/true``.
Each measurement is repeated and reported as min/median/max, N and ratios of medians within this run;
charts go to ``charts/`` next to the report. ``--smoke`` runs one round of everything with small fills
in about a minute, to keep the harness working.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Measure this tree's berth (daemon, CLI and workers alike), whichever copy is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), str(BENCH), os.environ.get("PYTHONPATH")]))
sys.path[:0] = [str(REPO / "src"), str(BENCH)]

import dns_bench  # noqa: E402
from anchors import Samples, Skipped, cli, cni, floor, netavark  # noqa: E402
from anchors.berthd import Berth  # noqa: E402
from anchors.dataplane import Dataplane  # noqa: E402
from anchors.docker import Docker  # noqa: E402
from report import Results, write  # noqa: E402

from berth.testing.images import busybox_rootfs_tar  # noqa: E402
from berth.testing.sandbox import Sandbox  # noqa: E402


@dataclass(frozen=True)
class Plan:
    """How much of everything one run measures."""

    rounds: int  # per contender, split over the blocks
    blocks: int
    levels: list[int]  # k of the k-th attach
    fill_rounds: int  # connect/disconnect pairs per k
    limit: bool  # fill to the bridge's 1023 ports and show the refusal
    seconds: int  # per iperf3 run (a round runs every path once)
    rate_rounds: int
    dns: tuple[int, int]  # dns_bench.py --seconds, --rounds

    @classmethod
    def of(cls, args: argparse.Namespace) -> "Plan":
        if args.smoke:
            return cls(rounds=1, blocks=1, levels=[1, 3], fill_rounds=1, limit=False, seconds=1, rate_rounds=1,
                       dns=(1, 1))
        return cls(rounds=args.rounds, blocks=min(5, args.rounds), levels=[1, 100, 500, 1000], fill_rounds=10,
                   limit=True, seconds=4, rate_rounds=16, dns=(5, 3))


class Runner:
    """Runs contenders, turning any that cannot run into a 'skipped: reason' instead of a number."""

    def __init__(self, results: Results) -> None:
        self.results = results
        self.broken: set[str] = set()

    def __call__(self, key: str, fn: Callable[[], Samples | None], into: dict[str, list[float]] | None = None) -> None:
        if key in self.broken:
            return
        try:
            samples = fn()
        except Skipped as why:
            self.skip(key, str(why))
            return
        except Exception as err:  # a broken contender must not take the other rows down with it
            traceback.print_exc()
            self.skip(key, f"failed: {str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}")
            return
        for name, values in (samples or {}).items():
            (self.results.times if into is None else into).setdefault(name, []).extend(values)

    def skip(self, key: str, why: str) -> None:
        self.broken.add(key)
        self.results.skipped[key] = why


def start_docker(run: Runner, box: Sandbox, rootfs: Path) -> Docker | None:
    try:
        return Docker(box, rootfs)
    except Skipped as why:
        run.skip("docker API", str(why))
    except Exception as err:
        traceback.print_exc()
        run.skip("docker API", f"failed: {str(err).strip().splitlines()[-1]}")
    return None


def measure(plan: Plan, results: Results, box: Sandbox) -> None:
    run = Runner(results)
    rootfs = busybox_rootfs_tar(box.tmp / "bb.tar")
    berth: Berth | None = None
    try:
        box.start_berthd()
        berth = Berth(box, rootfs)
    except Exception as err:
        traceback.print_exc()
        for key in ("berth", "berth-cni", "fill", "data plane"):
            run.skip(key, f"berth does not run yet: {str(err).strip().splitlines()[-1]}")
    docker = start_docker(run, box, rootfs)
    results.skipped.update(cli.skipped())
    per = max(1, plan.rounds // plan.blocks)
    try:
        for _ in range(plan.blocks):  # every contender gets a slice of its rounds in each block
            run("floor", lambda: floor.measure(box, per))
            run("CNI bridge plugin", lambda: cni.measure(box, per))
            run("netavark", lambda: netavark.measure(box, per))
            if docker is not None:
                run("docker API", lambda: {**docker.attach_rounds(per), **docker.network_rounds(per),
                                           **docker.run_rounds(per)})
            if berth is not None:
                run("berth", lambda: {**berth.attach_rounds(per), **berth.network_rounds(per),
                                      **berth.run_rounds(per)})
                run("berth-cni", lambda: cni.measure_berth(box, per))
                run("CLI start-up", lambda: cli.measure(box, per))
        if docker is not None:  # memory beside berth's, each with the containers its run -d rounds left
            run("docker API", lambda: docker.record_memory(results.memory))
    finally:
        if docker is not None:
            docker.close()
    if berth is not None:
        berth.record_memory()
        berth.remove_runs()
    run("floor fill", lambda: floor.measure_fill(box, plan.levels, plan.fill_rounds))
    if berth is None:
        return

    def dataplane() -> Samples:
        plane = Dataplane(box, berth)
        try:
            return plane.rounds(plan.rate_rounds, plan.seconds)
        finally:
            plane.close()

    run("data plane", dataplane, into=results.rates)

    def fill() -> Samples:  # last: it leaves a thousand containers behind
        samples, refusal, stopped = berth.fill(plan.levels, plan.fill_rounds, plan.limit)
        if stopped:
            results.skipped["fill"] = stopped
        elif refusal is None:
            results.skipped["bridge port limit"] = "not run in a smoke run (it starts 1023 containers)"
        else:
            results.notes["bridge port limit"] = refusal
        return samples

    run("fill", fill)
    results.memory.update(berth.memory)
    berth.close()


def dns(plan: Plan, results: Results) -> None:
    """bench/dns_bench.py (berth's resolver against aardvark-dns, in a network namespace of its own), its
    markdown kept whole for the report."""
    seconds, rounds = plan.dns
    missing = dns_bench.missing_tool()
    if missing:
        results.skipped["DNS"] = missing
        return
    result = subprocess.run([sys.executable, str(BENCH / "dns_bench.py"), "--seconds", str(seconds),
                             "--rounds", str(rounds)], capture_output=True, text=True, timeout=1200)
    if result.returncode == 0:
        results.dns = result.stdout
    else:
        why = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()[-1]
        results.skipped["DNS"] = f"failed: {why}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="repetitions per measurement (default 50)")
    parser.add_argument("--smoke", action="store_true", help="one round of everything, small fills: under a minute")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md", help="the markdown report to write")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the bench builds a throwaway host with namespaces")
    plan = Plan.of(args)
    results = Results(rounds=max(1, plan.rounds // plan.blocks) * plan.blocks, blocks=plan.blocks, smoke=args.smoke,
                      levels=plan.levels, fill_rounds=plan.fill_rounds)
    with Sandbox(prefix="berth-bench-") as box:
        measure(plan, results, box)
    dns(plan, results)
    print(write(results, args.out.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
