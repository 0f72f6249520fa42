"""CLI start-up: what a user waits for at the prompt. ``berth network ls`` and ``berth ps`` against the
interpreter's own start (``python -c pass``), a bare exec (``/bin/true``), and the docker CLI talking to
berthd (``DOCKER_HOST=unix://<berthd's socket>``), all wall-clock from fork to exit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from anchors import Box, Samples, timed
from anchors.berthd import cli_argv


def commands(box: Box) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    berth = cli_argv()
    found = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "/bin/true": (["/bin/true"], None),
        "berth network ls": ([*berth, "network", "ls"], box.env()),
        "berth ps": ([*berth, "ps"], box.env()),
    }
    docker = shutil.which("docker")
    if docker:
        found["docker network ls (berthd)"] = ([docker, "network", "ls"],
                                               {**box.env(), "DOCKER_HOST": f"unix://{box.socket}"})
    return found


def skipped() -> dict[str, str]:
    return {} if shutil.which("docker") else {"docker network ls (berthd)": "the docker CLI is not installed"}


def measure(box: Box, rounds: int) -> Samples:
    out: Samples = {}
    for _ in range(rounds):
        for label, (argv, env) in commands(box).items():
            def run() -> None:
                result = subprocess.run(argv, capture_output=True, env=env, timeout=60)
                if result.returncode != 0:
                    raise RuntimeError(f"{label}: {result.stderr.decode()[-500:]}")
            out.setdefault(label, []).append(timed(run))
    return out
