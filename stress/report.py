"""What a stress run found: figures per scenario, the totals the issue asks for, and every violation."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

from stress.api import Reply


def reply_problem(reply: Reply) -> str | None:
    """None for a success or a clear refusal (a 4xx with a one-line message); otherwise what is wrong."""
    if 200 <= reply.status < 400:
        return None
    message = reply.message
    if reply.status == 0:
        return f"no answer ({message})"
    if reply.status >= 500:
        return f"HTTP {reply.status}: {message[:200]}"
    if not message or "\n" in message.strip() or "Traceback" in message:
        return f"HTTP {reply.status} without a clear one-line message: {message[:200]!r}"
    return None


def cli_problem(result: subprocess.CompletedProcess[str], one_line: bool = True) -> str | None:
    """None for a success or a clear error (one line, unless ``one_line`` is off: a usage error shows the
    usage); a traceback, a daemon 500, a signal or silence is a problem."""
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if "Traceback" in result.stderr or "internal error" in result.stderr or not 0 < result.returncode < 126:
        return f"exit {result.returncode}: {result.stderr.strip()[-300:]}"
    if len(lines) != 1 and (one_line or not lines):
        return f"exit {result.returncode} with {len(lines)} lines on stderr: {result.stderr.strip()[-300:]!r}"
    return None


@dataclass
class Report:
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    ops_per_second: float = 0.0
    op_errors: int = 0
    faults_injected: int = 0
    faults_survived: int = 0
    leaked: int = 0
    inputs: int = 0
    crashes: int = 0

    def figure(self, scenario: str, name: str, value: Any) -> None:
        self.figures.setdefault(scenario, {})[name] = value

    def violation(self, scenario: str, what: str) -> None:
        self.violations.append(f"{scenario}: {what}")

    def leaks(self, scenario: str, found: list[str]) -> None:
        """Invariant violations after a scenario: each is a leaked or inconsistent object."""
        self.leaked += len(found)
        for item in found:
            self.violation(scenario, item)

    def render(self) -> str:
        lines = ["berth stress report", ""]
        for scenario, figures in self.figures.items():
            lines.append(f"[{scenario}]")
            lines += [f"  {name}: {value}" for name, value in figures.items()]
        held = "held with zero errors" if self.op_errors == 0 else f"with {self.op_errors} errors"
        lines += [
            "",
            f"operations per second: {self.ops_per_second:.1f} ({held})",
            f"faults injected: {self.faults_injected}, survived: {self.faults_survived}",
            f"objects leaked: {self.leaked}",
            f"hostile inputs tried: {self.inputs}, crashes: {self.crashes}",
            f"violations: {len(self.violations)}",
        ]
        lines += [f"  - {v}" for v in self.violations[:200]]
        if len(self.violations) > 200:
            lines.append(f"  ... and {len(self.violations) - 200} more")
        return "\n".join(lines)
