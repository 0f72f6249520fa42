"""Shared fixtures: throwaway hosts for tests that need root and a real kernel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from berth.testing.images import busybox_rootfs_tar
from berth.testing.sandbox import Sandbox


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: it builds a throwaway host with namespaces")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def bare_host() -> Iterator[Sandbox]:
    """A throwaway host (own pid/net/mount namespaces) without berthd."""
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def host(bare_host: Sandbox) -> Sandbox:
    """A throwaway host with berthd running inside it."""
    bare_host.start_berthd()
    return bare_host


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs_tar(tmp_path_factory.mktemp("images") / "bb.tar")


@pytest.fixture
def bb(host: Sandbox, busybox_tar: Path) -> Sandbox:
    """A throwaway host with berthd running and the busybox image imported as ``bb``."""
    result = host.berth("import", str(busybox_tar), "bb")
    assert result.returncode == 0, result.stderr
    return host
