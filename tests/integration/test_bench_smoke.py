"""One round of the benchmark harness, so it cannot rot (its figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_bench_smoke_writes_a_report(tmp_path: Path):
    out = tmp_path / "report.md"
    result = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    for section in ("| berth API connect |", "| floor attach |", "| berth network ls |", "## Targets"):
        assert section in text
