"""pytest plugin: throwaway hosts as fixtures, the ``integration`` marker, and a leftover check.

Registered from tests/conftest.py. Integration tests get a fresh ``Sandbox`` each (``host`` with
berthd running, ``bare_host`` without) and are skipped with a reason when not root. At the end of a
run the controller (never an xdist worker) runs ``scripts/check-leftovers`` and fails the run if this
suite left anything of berth's on the machine.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import berth
from berth.testing.sandbox import SESSION_ENV, Sandbox

LEFTOVER_PREFIX = "left behind: "
_baseline = pytest.StashKey[list[str]]()  # what the check saw before this run: not this run's doing


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _check_script() -> Path:
    """scripts/check-leftovers of the checkout this berth runs from (berth is installed editable)."""
    return Path(berth.__file__).resolve().parents[2] / "scripts" / "check-leftovers"


def leftovers(session_tag: str) -> list[str]:
    """What the leftover check reports; temp dirs and processes only of the run tagged ``session_tag``."""
    result = subprocess.run([str(_check_script()), "--session", session_tag], capture_output=True, text=True,
                            timeout=60)
    found = [line[len(LEFTOVER_PREFIX):] for line in result.stdout.splitlines() if line.startswith(LEFTOVER_PREFIX)]
    if result.returncode not in (0, 1) or (result.returncode == 1 and not found):
        raise RuntimeError(f"check-leftovers failed ({result.returncode}): {result.stderr.strip()}")
    return found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs root and a real kernel (runs in a throwaway host namespace)")
    if not _is_worker(config):
        # Inherited by xdist workers: every sandbox of this run carries the tag in its temp dir's name,
        # so the final check can tell this run's leftovers from a concurrent run's live sandboxes.
        os.environ[SESSION_ENV] = secrets.token_hex(4)
        config.stash[_baseline] = leftovers(os.environ[SESSION_ENV]) if _check_script().exists() else []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: it builds a throwaway host with namespaces")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if it left links, netns, nft tables, mounts, processes or temp dirs behind."""
    config = session.config
    if _is_worker(config):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not _check_script().exists():
        if reporter is not None:
            reporter.write_line(f"leftover check skipped: {_check_script()} not found", yellow=True)
        return
    before = set(config.stash.get(_baseline, []))
    new = [item for item in leftovers(os.environ[SESSION_ENV]) if item not in before]
    if not new:
        return
    if reporter is not None:
        reporter.write_line("")
        for item in new:
            reporter.write_line(f"{LEFTOVER_PREFIX}{item}", red=True, bold=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def bare_host() -> Iterator[Sandbox]:
    """A throwaway host (own pid/net/mount/uts/ipc namespaces) without berthd."""
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def host(bare_host: Sandbox) -> Sandbox:
    """A throwaway host with berthd running inside it (stopped with the host)."""
    bare_host.start_berthd()
    return bare_host
