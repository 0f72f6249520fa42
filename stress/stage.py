"""What every scenario is handed: the throwaway host, the profile's sizes and the report to fill."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from berth.testing.sandbox import Sandbox

from stress import invariants
from stress.api import Api
from stress.ops import reset
from stress.report import Report


@dataclass(frozen=True)
class Profile:
    """Sizes of one run. ``quick`` is for CI (about a minute on two shared cores); ``long`` is for figures."""

    name: str
    seconds: float           # concurrency phase
    clients: int             # parallel clients in it (a fifth of them CLI processes)
    random_kills: int        # kill -9 of berthd at random moments under load
    hypothesis_examples: int  # per property
    swagger_cases: int       # requests generated from the Engine API description
    pool_prefix: int         # address-pool exhaustion fills a subnet of this prefix length


PROFILES = {
    "quick": Profile("quick", seconds=4, clients=50, random_kills=1, hypothesis_examples=40, swagger_cases=300,
                     pool_prefix=29),
    "long": Profile("long", seconds=120, clients=100, random_kills=20, hypothesis_examples=1000,
                    swagger_cases=5000, pool_prefix=26),
}


@dataclass
class Stage:
    host: Sandbox
    profile: Profile
    report: Report
    image_tar: Path

    def api(self) -> Api:
        return Api(str(self.host.socket))

    def settle(self, scenario: str, keep: Sequence[str] = (), recheck: bool = True) -> list[str]:
        """Check the invariants (every finding counts as a leak), then clear containers and networks but
        ``keep``, and (with ``recheck``) check again. Returns the findings."""
        found = invariants.check(self.host).violations
        self.report.leaks(scenario, found)
        api = self.api()
        try:
            failures = reset(api, keep)
        finally:
            api.close()
        for failure in failures:
            self.report.violation(scenario, f"clean-up: {failure}")
        after = invariants.check(self.host).violations if recheck else []
        self.report.leaks(f"{scenario} (after clean-up)", after)
        return found + failures + after
