"""What every command receives: where the daemon is, a lazily opened API client and the three streams."""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING

from berth.cli.errors import CLIError

if TYPE_CHECKING:
    from berth.cli.client import Client

# Same value as berth.config.DEFAULT_RUN (a unit test keeps them equal): berth.config imports dataclasses
# and pathlib, ~10 ms that every command would pay just to learn one path.
DEFAULT_RUN = "/run/berth"


def run_root(flag: str | None) -> str:
    """The daemon's runtime directory: ``--run-root``, else ``BERTH_RUN``, else /run/berth."""
    return flag or os.environ.get("BERTH_RUN") or DEFAULT_RUN


def socket_path(host: str | None, run_root_flag: str | None) -> str:
    """The API socket: ``-H unix://PATH``, else ``<--run-root>/berth.sock``, else ``BERTH_HOST``, else
    ``<BERTH_RUN or /run/berth>/berth.sock`` (the order of berth.config.default_socket, flags first)."""
    if host:
        if not host.startswith("unix://") or len(host) == len("unix://"):
            raise CLIError(f"unsupported host {host!r}: berth talks to its daemon over a unix socket (unix:///path)")
        return host[len("unix://"):]
    if run_root_flag:
        return os.path.join(run_root_flag, "berth.sock")
    env = os.environ.get("BERTH_HOST", "")
    if env.startswith("unix://") and len(env) > len("unix://"):
        return env[len("unix://"):]
    return os.path.join(run_root(None), "berth.sock")


class Context:
    def __init__(self, host: str | None = None, root: str | None = None, run: str | None = None,
                 stdin: IO[bytes] | None = None, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.host = host
        self.root = root
        self.run = run
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self._client: Client | None = None

    @property
    def socket_path(self) -> str:
        return socket_path(self.host, self.run)

    @property
    def client(self) -> "Client":
        if self._client is None:
            from berth.cli.client import Client

            self._client = Client(self.socket_path)
        return self._client

    def out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text)
        self.stderr.flush()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
