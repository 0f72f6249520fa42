"""Orchestration: plan, reserve, apply, commit (design.md §3)."""

from berth.engine.facade import Engine

__all__ = ["Engine"]
