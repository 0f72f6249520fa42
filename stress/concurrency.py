"""Many clients at once: API clients and CLI processes create, run, connect, disconnect and remove.

Each client works on its own names (its network, its containers, its host port), so every planned
operation must succeed: any failure is an error. Every few cycles a client also asks for something that
must be refused (a network named like the shared one, a second container with a taken static address);
those must come back as a clear 4xx. Afterwards the invariants must hold (``Stage.settle``).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from stress import ops
from stress.api import Api, Reply
from stress.report import cli_problem, reply_problem
from stress.stage import Stage

SCENARIO = "concurrency"
SHARED = ("stress-shared", "10.30.0.0/16")
SHARED2 = ("stress-shared2", "10.31.0.0/16")


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.refused = 0
        self.errors: list[str] = []
        self.unclear: list[str] = []

    def planned(self, what: str, problem: str | None, failed: bool) -> None:
        with self.lock:
            if not failed:
                self.ok += 1
            else:
                self.errors.append(f"{what}: {problem}")

    def refusal(self, what: str, succeeded: bool, problem: str | None) -> None:
        with self.lock:
            if succeeded:
                self.errors.append(f"{what}: accepted, must be refused")
            elif problem:
                self.unclear.append(f"{what}: {problem}")
            else:
                self.refused += 1


def api_client(stage: Stage, i: int, deadline: float, tally: Tally) -> None:
    api = stage.api()
    try:
        cycle = 0
        while time.monotonic() < deadline:
            _api_cycle(api, i, cycle, tally)
            cycle += 1
    finally:
        api.close()


def _api_cycle(api: Api, i: int, cycle: int, tally: Tally) -> None:
    net, name = f"stress-n{i}", f"stress-c{i}-{cycle}"

    def do(what: str, call: Callable[[], Reply]) -> bool:
        reply = call()
        tally.planned(what, reply_problem(reply) or f"HTTP {reply.status}: {reply.message}", not reply.ok)
        return reply.ok

    if not do(f"network create {net}", lambda: ops.create_network(api, net, f"10.64.{i}.0/24")):
        return
    if do(f"run {name}", lambda: ops.run_container(api, name, SHARED[0], host_port=20000 + i)):
        do(f"connect {net} {name}", lambda: ops.connect(api, net, name))
        do(f"connect {SHARED2[0]} {name}", lambda: ops.connect(api, SHARED2[0], name))
        do(f"disconnect {SHARED2[0]} {name}", lambda: ops.disconnect(api, SHARED2[0], name))
        if cycle % 3 == 0:
            reply = ops.create_network(api, SHARED[0], "10.99.0.0/24")
            tally.refusal("network create of a taken name", reply.ok, reply_problem(reply))
        do(f"rm -f {name}", lambda: ops.remove_container(api, name))
    do(f"network rm {net}", lambda: ops.remove_network(api, net))


def _cli_client(stage: Stage, i: int, deadline: float, tally: Tally) -> None:
    host = stage.host
    cycle = 0
    while time.monotonic() < deadline:
        net, name = f"stress-n{i}", f"stress-c{i}-{cycle}"
        steps = [
            ("network", "create", "--subnet", f"10.64.{i}.0/24", net),
            ("run", "-d", "--name", name, "--network", SHARED[0], "-p", f"{20000 + i}:80", ops.IMAGE, "sleep", "600"),
            ("network", "connect", net, name),
            ("network", "connect", SHARED2[0], name),
            ("network", "disconnect", SHARED2[0], name),
            ("rm", "-f", name),
            ("network", "rm", net),
        ]
        for step in steps:
            if time.monotonic() > deadline:
                return
            result = host.berth(*step)
            tally.planned(" ".join(step), cli_problem(result) or result.stderr.strip(), result.returncode != 0)
        if cycle % 3 == 0:
            result = host.berth("network", "create", SHARED[0])
            tally.refusal("berth network create of a taken name", result.returncode == 0, cli_problem(result))
        cycle += 1


def run(stage: Stage, seconds: float | None = None, clients: int | None = None) -> None:
    seconds = seconds or stage.profile.seconds
    clients = clients or stage.profile.clients
    api = stage.api()
    for name, subnet in (SHARED, SHARED2):
        reply = ops.create_network(api, name, subnet)
        if reply.status != 201:
            stage.report.violation(SCENARIO, f"setup: network create {name}: {reply.message}")
            return
    api.close()
    tally = Tally()
    cli_clients = max(1, clients // 5)
    start = time.monotonic()
    deadline = start + seconds
    threads = [threading.Thread(target=_cli_client if i < cli_clients else api_client,
                                args=(stage, i, deadline, tally), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    report = stage.report
    report.figure(SCENARIO, "clients", f"{clients} ({clients - cli_clients} API, {cli_clients} CLI processes)")
    report.figure(SCENARIO, "seconds", round(elapsed, 1))
    report.figure(SCENARIO, "operations", tally.ok)
    report.figure(SCENARIO, "errors", len(tally.errors))
    report.figure(SCENARIO, "clear refusals", tally.refused)
    report.ops_per_second = tally.ok / elapsed
    report.op_errors += len(tally.errors)
    for error in tally.errors + tally.unclear:
        report.violation(SCENARIO, error)
    stage.settle(SCENARIO)
