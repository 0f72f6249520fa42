"""Shared fixtures. Throwaway hosts (``host``, ``bare_host``), the ``integration`` marker and the
leftover check come from the berth.testing.plugin pytest plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.testing.images import busybox_rootfs_tar
from berth.testing.sandbox import Sandbox

pytest_plugins = ["berth.testing.plugin", "pytester"]


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs_tar(tmp_path_factory.mktemp("images") / "bb.tar")


@pytest.fixture
def bb(host: Sandbox, busybox_tar: Path) -> Sandbox:
    """A throwaway host with berthd running and the busybox image imported as ``bb``."""
    result = host.berth("import", str(busybox_tar), "bb")
    assert result.returncode == 0, result.stderr
    return host
