"""Crashes and restarts: kill -9 of berthd at every named step and at random moments under load, of a
container's monitor and of a container's process, of the fork server, and a reboot-like loss of all
kernel state.

Two witness containers run on their own network from the start. After every fault berthd is started
again without it and must reconcile by itself: the invariants hold, the witnesses still run with the
same pids and still reach each other (after the reboot-like loss, once started again).
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Callable

from berth.testing.sandbox import poll

from stress import concurrency, invariants, ops
from stress.api import Api, Reply
from stress.stage import Stage

SCENARIO = "crashes"
WITNESS_NET = ("stress-witness", "10.50.0.0/24")
WITNESSES = ("stress-w1", "stress-w2")
KEEP = (WITNESS_NET[0], *WITNESSES)
VICTIM = "stress-victim"
CRASH_NET = "stress-crashnet"


def _run_victim(api: Api, network: str = WITNESS_NET[0], port: int | None = None) -> Reply:
    return ops.run_container(api, VICTIM, network, host_port=port)


def _connect_victim(api: Api) -> Reply:
    _run_victim(api, "bridge")
    return ops.connect(api, WITNESS_NET[0], VICTIM)


def _disconnect_victim(api: Api) -> Reply:
    _run_victim(api)
    return ops.disconnect(api, WITNESS_NET[0], VICTIM)


def _rm_network(api: Api) -> Reply:
    ops.create_network(api, CRASH_NET)
    return ops.remove_network(api, CRASH_NET)


# every named fault step (engine/txn.py ``fault``) and the operation that passes through it
STEPS: dict[str, Callable[[Api], Reply]] = {
    "network-create-reserved": lambda api: ops.create_network(api, CRASH_NET),
    "network-create-applied": lambda api: ops.create_network(api, CRASH_NET),
    "network-rm-marked": _rm_network,
    "network-rm-applied": _rm_network,
    "endpoint-reserved": _run_victim,
    "endpoint-plugged": _run_victim,
    "connect-recorded": _connect_victim,
    "disconnect-marked": _disconnect_victim,
    "start-netns": _run_victim,
    "start-network-ready": _run_victim,
    "start-published": lambda api: _run_victim(api, port=18080),
    "start-spawned": _run_victim,
}


class Witnesses:
    """Two containers that must outlive every berthd crash, and keep talking."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.pids: dict[str, int] = {}
        self.ips: dict[str, str] = {}

    def start(self, api: Api) -> list[str]:
        problems = []
        for name in WITNESSES:
            reply = ops.run_container(api, name, WITNESS_NET[0])
            if not reply.ok:
                reply = api.call("POST", f"/containers/{name}/start")
            if not reply.ok:
                problems.append(f"witness {name} did not start: {reply.message}")
        self.pids, self.ips = self._observe(api)
        return problems

    def _observe(self, api: Api) -> tuple[dict[str, int], dict[str, str]]:
        pids, ips = {}, {}
        for name in WITNESSES:
            data = ops.inspect(api, name)
            state = data.get("State") or {}
            pids[name] = state.get("Pid", 0) if state.get("Running") else 0
            net = (data.get("NetworkSettings") or {}).get("Networks", {}).get(WITNESS_NET[0]) or {}
            ips[name] = net.get("IPAddress", "")
        return pids, ips

    def check(self, api: Api) -> list[str]:
        """Still running with the same pids and addresses, and w1 reaches w2 with real packets."""
        pids, ips = self._observe(api)
        problems = [f"witness {n} pid {self.pids[n]} -> {pids[n]}" for n in WITNESSES if pids[n] != self.pids[n]]
        problems += [f"witness {n} address {self.ips[n]} -> {ips[n]}" for n in WITNESSES if ips[n] != self.ips[n]]
        if not problems:
            ping = self.stage.host.berth("exec", WITNESSES[0], "ping", "-c", "1", "-W", "2", ips[WITNESSES[1]])
            if ping.returncode != 0:
                problems.append(f"witness {WITNESSES[0]} cannot reach {WITNESSES[1]}: {ping.stdout}{ping.stderr}")
        return problems


def _start(stage: Stage, fault: str | None = None) -> None:
    """Start berthd (the previous one is dead and reaped), with ``BERTH_FAULT`` or without."""
    if fault:
        os.environ["BERTH_FAULT"] = fault
    try:
        stage.host.start_berthd()
    finally:
        os.environ.pop("BERTH_FAULT", None)


def _survived(stage: Stage, witnesses: Witnesses, what: str) -> bool:
    """After a fault: invariants, witnesses, then clean-up of everything else; True if all held."""
    report = stage.report
    api = stage.api()
    try:
        problems = witnesses.check(api)
    finally:
        api.close()
    for p in problems:
        report.violation(SCENARIO, f"{what}: {p}")
    found = stage.settle(f"{SCENARIO} {what}", keep=KEEP, recheck=False)  # the next fault's check covers it
    return not problems and not found


def _named_steps(stage: Stage, witnesses: Witnesses) -> None:
    report = stage.report
    for step, operation in STEPS.items():
        stage.host.kill_berthd()
        _start(stage, f"{step}:crash")
        report.faults_injected += 1
        api = stage.api()
        try:
            reply = operation(api)
        finally:
            api.close()
        if reply.status != 0:
            report.violation(SCENARIO, f"kill -9 at {step}: the step was not reached ({reply.status} {reply.message})")
        stage.host.kill_berthd()  # reaps the berthd the fault killed (or kills it, if the step was missed)
        _start(stage)
        if _survived(stage, witnesses, f"kill -9 at {step}"):
            report.faults_survived += 1


def _random_kills(stage: Stage, witnesses: Witnesses, rng: random.Random) -> None:
    """kill -9 of berthd while clients create, run, connect and remove; the clients' failures are expected."""
    report = stage.report
    for _ in range(stage.profile.random_kills):
        tally = concurrency.Tally()
        deadline = time.monotonic() + 3.0
        clients = [threading.Thread(target=concurrency.api_client, args=(stage, 100 + i, deadline, tally), daemon=True)
                   for i in range(8)]
        for t in clients:
            t.start()
        time.sleep(rng.uniform(0.2, 1.5))  # a random moment under load (the fault itself, not a synchronisation)
        stage.host.kill_berthd()
        report.faults_injected += 1
        for t in clients:
            t.join()
        _start(stage)
        if _survived(stage, witnesses, "kill -9 under load"):
            report.faults_survived += 1


def _container_state(stage: Stage, name: str) -> dict[str, object]:
    for c in invariants.read_store(stage.host).containers:
        if c["name"] == name:
            return c["state"]
    return {}


def _kill_inside(stage: Stage, what: str, witnesses: Witnesses) -> None:
    """kill -9 of the victim's monitor or of its process: it must end up exited, its network gone."""
    report = stage.report
    api = stage.api()
    try:
        started = _run_victim(api, port=18081)
        if not started.ok:
            report.violation(SCENARIO, f"kill -9 of a container's {what}: run failed: {started.message}")
            return
        pid = _container_state(stage, VICTIM)["monitor_pid" if what == "monitor" else "pid"]
        stage.host.run(["kill", "-9", str(pid)], check=True)
        report.faults_injected += 1
        try:
            poll(lambda: (ops.inspect(api, VICTIM).get("State") or {}).get("Status") == "exited", 15,
                 f"the container was not reported exited after kill -9 of its {what}")
        except TimeoutError as err:
            report.violation(SCENARIO, str(err))
            return
    finally:
        api.close()
    if _survived(stage, witnesses, f"kill -9 of a container's {what}"):
        report.faults_survived += 1


def _kill_forkserver(stage: Stage, witnesses: Witnesses) -> None:
    """kill -9 of the process monitors and exec helpers are forked from: running containers go on (the
    witnesses' check execs into one), and the next run gets a new fork server."""
    report = stage.report
    found = stage.host.run(["pgrep", "-f", f"^{invariants.FORKSERVER}"])
    if found.returncode != 0:
        report.violation(SCENARIO, "kill -9 of the fork server: no fork server runs")
        return
    stage.host.run(["kill", "-9", *found.stdout.split()], check=True)
    report.faults_injected += 1
    api = stage.api()
    try:
        started = _run_victim(api)
        if not started.ok:
            report.violation(SCENARIO, f"kill -9 of the fork server: the next run failed: {started.message}")
            return
    finally:
        api.close()
    if _survived(stage, witnesses, "kill -9 of the fork server"):
        report.faults_survived += 1


def _reboot(stage: Stage, witnesses: Witnesses) -> None:
    """All processes, links, namespaces and nft tables gone: berthd restores the networks by itself."""
    report = stage.report
    stage.host.kill_berthd()
    stage.host.simulate_reboot()
    report.faults_injected += 1
    _start(stage)
    found = invariants.check(stage.host).violations
    report.leaks(f"{SCENARIO} reboot-like loss", found)
    api = stage.api()
    try:
        states = {n: (ops.inspect(api, n).get("State") or {}).get("Status") for n in WITNESSES}
        problems = [f"after the loss {n} is {s}, not exited" for n, s in states.items() if s != "exited"]
        problems += witnesses.start(api)
        problems += witnesses.check(api)
    finally:
        api.close()
    for p in problems:
        report.violation(SCENARIO, f"reboot-like loss: {p}")
    if not found and not problems and _survived(stage, witnesses, "reboot-like loss"):
        report.faults_survived += 1


def run(stage: Stage) -> None:
    api = stage.api()
    try:
        ops.create_network(api, *WITNESS_NET)
        witnesses = Witnesses(stage)
        problems = witnesses.start(api)
    finally:
        api.close()
    if problems:
        for p in problems:
            stage.report.violation(SCENARIO, p)
        return
    before = (stage.report.faults_injected, stage.report.faults_survived)
    _named_steps(stage, witnesses)
    _random_kills(stage, witnesses, random.Random(6))
    _kill_inside(stage, "monitor", witnesses)
    _kill_inside(stage, "process", witnesses)
    _kill_forkserver(stage, witnesses)
    _reboot(stage, witnesses)
    stage.report.figure(SCENARIO, "faults injected", stage.report.faults_injected - before[0])
    stage.report.figure(SCENARIO, "faults survived", stage.report.faults_survived - before[1])
    stage.settle(SCENARIO)
