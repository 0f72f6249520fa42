"""Docker's Engine API as an anchor: measured only where a Docker daemon runs, which is never inside a
throwaway host. A daemon on this machine would create its bridges in the machine's own network
namespace, which the bench never touches, so the anchor explains itself instead of measuring there.
"""

from __future__ import annotations

from pathlib import Path

from anchors import Skipped

SOCKET = Path("/var/run/docker.sock")


def measure() -> None:
    from berth.testing.sandbox import ping_socket

    if not ping_socket(SOCKET):
        raise Skipped(f"no Docker daemon answers on {SOCKET} (only the docker CLI is installed here)")
    raise Skipped("a Docker daemon runs on this machine, but measuring it would change the machine's own "
                  "network namespace; the bench only works in throwaway namespaces")
