"""The undo stack behind every multi-step change, and named fault points for crash tests.

Each kernel step that succeeds pushes its inverse; when a later step fails the stack runs in reverse,
so a failed command leaves the system exactly as it was. ``fault(step)`` lets tests stop a command at a
named step: ``BERTH_FAULT=step`` raises there, ``BERTH_FAULT=step:crash`` kills the process on the spot
(the crash-and-reconcile tests), so recovery is exercised at every line that matters.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from berth.errors import BerthError

log = logging.getLogger("berth.txn")


class InjectedFault(BerthError):
    """Raised at a fault point named in ``BERTH_FAULT``."""


def fault(step: str) -> None:
    """A named point where tests may inject a failure or a crash."""
    spec = os.environ.get("BERTH_FAULT")
    if not spec:
        return
    for item in spec.split(","):
        name, _, how = item.partition(":")
        if name == step:
            if how == "crash":
                os._exit(137)
            raise InjectedFault(f"injected fault at step {step}")


class Undo:
    """A stack of inverse actions; use as a context manager that rolls back on any exception."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []

    def push(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        self._steps.append((what, fn, args))

    def rollback(self) -> None:
        """Run every inverse, newest first; an inverse that fails is logged and the rest still run."""
        while self._steps:
            what, fn, args = self._steps.pop()
            try:
                fn(*args)
            except Exception as err:  # noqa: BLE001 - keep undoing; the original error is what matters
                log.error("undo of %s failed: %s", what, err)

    def commit(self) -> None:
        self._steps.clear()

    def __enter__(self) -> "Undo":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.rollback()
        else:
            self.commit()
