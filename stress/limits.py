"""Limits with clear errors: a network's addresses, the default subnet pools, berthd's open files.

Each limit is reached through the CLI: the refusal is one line with Docker's message (or one naming the
limit and what to do), and nothing changed in the kernel; afterwards berthd still serves. The Linux
bridge's 1023-port ceiling is proven at the kernel layer by tests/integration/test_limits.py (a
thousand containers are beyond a stress run's budget).
"""

from __future__ import annotations

import ipaddress
import subprocess
from typing import Any

from stress import invariants, ops
from stress.report import cli_problem
from stress.stage import Stage

SCENARIO = "limits"
NOFILE = 128  # berthd's descriptor limit (soft and hard) in the open-files case: a dozen networks reach it


def _kernel(stage: Stage) -> dict[str, Any]:
    k = invariants.probe(stage.host)
    return {"links": sorted((l["name"], l["master"]) for l in k["links"]), "nft": k["nft"], "netns": k["netns"],
            "processes": sorted(" ".join(p["argv"]) for p in k["processes"] if "probe.py" not in " ".join(p["argv"]))}


def _refused(stage: Stage, what: str, argv: tuple[str, ...], expected: str) -> None:
    """``argv`` must fail with one line containing ``expected``, leaving the kernel as it was."""
    before = _kernel(stage)
    _judge_refusal(stage, what, stage.host.berth(*argv), before, expected)


def _judge_refusal(stage: Stage, what: str, result: subprocess.CompletedProcess[str], before: dict[str, Any],
                   expected: str) -> None:
    report = stage.report
    after = _kernel(stage)
    line = result.stderr.strip()
    report.figure(SCENARIO, what, line[:200] or "(accepted)")
    if result.returncode == 0:
        report.violation(SCENARIO, f"{what}: accepted")
        return
    problem = cli_problem(result)
    if problem:
        report.violation(SCENARIO, f"{what}: {problem}")
    elif expected not in line:
        report.violation(SCENARIO, f"{what}: {line!r} does not say {expected!r}")
    changed = [k for k in before if before[k] != after[k]]
    if changed:
        report.violation(SCENARIO, f"{what}: refused but changed {', '.join(changed)}")


def _address_pool(stage: Stage) -> None:
    subnet = ipaddress.ip_network(f"10.77.0.0/{stage.profile.pool_prefix}")
    usable = subnet.num_addresses - 3  # network, broadcast, gateway
    api = stage.api()
    try:
        replies = [ops.create_network(api, "stress-small", str(subnet))]
        replies += [ops.run_container(api, f"stress-fill{i}", "stress-small") for i in range(usable)]
        replies.append(ops.run_container(api, "stress-other", "bridge"))
    finally:
        api.close()
    refused = [r.message for r in replies if not r.ok]
    if refused:
        stage.report.violation(SCENARIO, f"filling {subnet}: {refused[0]}")
        return
    stage.report.figure(SCENARIO, "addresses filled", f"{usable} on {subnet}")
    _refused(stage, "address pool exhausted (run)",
             ("run", "-d", "--name", "stress-one-more", "--network", "stress-small", ops.IMAGE, "sleep", "600"),
             "no available IPv4 addresses on this network's address pools")
    stage.host.berth("rm", "-f", "stress-one-more")
    _refused(stage, "address pool exhausted (connect)", ("network", "connect", "stress-small", "stress-other"),
             "no available IPv4 addresses on this network's address pools")
    stage.settle(f"{SCENARIO} address pool")


def _default_pools(stage: Stage) -> None:
    created = 0
    api = stage.api()
    try:
        while created < 100 and ops.create_network(api, f"stress-auto{created}").ok:
            created += 1
    finally:
        api.close()
    stage.report.figure(SCENARIO, "networks from the default pools", created)
    _refused(stage, "default pools exhausted", ("network", "create", "stress-auto-one-more"),
             "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
    stage.settle(f"{SCENARIO} default pools")


def _open_files(stage: Stage) -> None:
    """berthd with few descriptors: the run that needs one more fails clearly; berthd keeps serving."""
    host = stage.host
    daemon = [p["pid"] for p in invariants.probe(host)["processes"] if invariants.DAEMON in p["argv"]]
    host.run(["prlimit", "--pid", str(daemon[0]), f"--nofile={NOFILE}:{NOFILE}"], check=True)
    report = stage.report
    made = 0
    api = stage.api()
    try:  # fill through the API until the next network and container would not fit
        while made < NOFILE and ops.create_network(api, f"stress-fd{made}", f"10.78.{made}.0/24").ok:
            if not ops.run_container(api, f"stress-fd{made}", f"stress-fd{made}").ok:
                break
            made += 1
    finally:
        api.close()
    for extra in range(20):  # the CLI's own connection frees one descriptor the API client held: go on
        before = _kernel(stage)
        result = host.berth("network", "create", "--subnet", f"10.79.{extra}.0/24", f"stress-fd-more{extra}")
        if result.returncode != 0:
            _judge_refusal(stage, "too many open files", result, before, "too many open files")
            break
    else:
        report.violation(SCENARIO, f"{NOFILE} descriptors were never exhausted")
    report.figure(SCENARIO, f"berthd with {NOFILE} descriptors: networks with a container", made)
    if host.berth("network", "ls").returncode != 0:
        report.violation(SCENARIO, "berthd stopped serving after running out of descriptors")
    stage.settle(f"{SCENARIO} open files")
    host.stop_berthd()  # the next berthd has the usual limit again
    host.start_berthd()


def run(stage: Stage) -> None:
    _address_pool(stage)
    _default_pools(stage)
    _open_files(stage)
