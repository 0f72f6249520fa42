"""The stress suite's quick profile (stress/run.py --profile quick): zero violations, figures printed.

Concurrency, kill -9 at every named step, hostile input through the API and the CLI, the Engine API
fuzzed from Docker's description, escaping archives, limits and a full disk, all in one throwaway host.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]


def test_quick_stress_profile_finds_no_violation():
    result = subprocess.run([sys.executable, str(REPO / "stress" / "run.py"), "--profile", "quick"],
                            capture_output=True, text=True, timeout=600)
    report = result.stdout
    assert result.returncode == 0, report + result.stderr[-3000:]
    assert "violations: 0" in report, report
    assert "operations per second:" in report and "(held with zero errors)" in report, report
    faults = re.search(r"^faults injected: (\d+), survived: (\d+)$", report, re.M)
    assert faults and int(faults[1]) >= 12 and faults[1] == faults[2], report  # every named step at least
    assert "objects leaked: 0" in report and ", crashes: 0" in report, report
