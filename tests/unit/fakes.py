"""In-memory stand-ins for the runtime and the image store, so the engine can be tested without root."""

from __future__ import annotations

import itertools
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from berth.errors import NotFound
from berth.runtime.spawn import ContainerSpec, Started


@dataclass(frozen=True)
class FakeImage:
    id: str
    repo_tags: tuple[str, ...]
    created: float = 0.0
    size: int = 1
    rootfs: Path = Path("/nonexistent")
    config: dict = field(default_factory=dict)


class FakeImages:
    def __init__(self) -> None:
        self.images = [FakeImage("sha256:" + "ab" * 32, ("bb:latest",), config={"Cmd": ["sh"]})]

    def list(self) -> list[FakeImage]:
        return list(self.images)

    def get(self, ref: str) -> FakeImage:
        name = ref if ":" in ref and not ref.startswith("sha256:") else f"{ref}:latest"
        for image in self.images:
            if name in image.repo_tags or image.id == ref:
                return image
        raise NotFound(f"No such image: {ref}")


class FakeRuntime:
    """Pretends to run containers: every start succeeds; ``exit(cid, code)`` ends one."""

    def __init__(self) -> None:
        self._pids = itertools.count(1000, 2)
        self.running: dict[str, Started] = {}
        self.exited: dict[str, tuple[int, str]] = {}
        self.specs: dict[str, ContainerSpec] = {}
        self.released: list[str] = []
        self.on_kill: Callable[[str, int], None] = lambda cid, sig: None
        self.fail_start: Exception | None = None
        self._exit_pipes: dict[int, tuple[int, int]] = {}

    def pidfd(self, monitor_pid: int) -> int:
        """A descriptor that turns readable when the fake monitor exits, like a real pidfd."""
        if monitor_pid not in self._exit_pipes:
            self._exit_pipes[monitor_pid] = os.pipe()
        return os.dup(self._exit_pipes[monitor_pid][0])

    def start(self, spec: ContainerSpec) -> Started:
        if self.fail_start:
            raise self.fail_start
        pid = next(self._pids)
        started = Started(pid=pid, monitor_pid=pid + 1)
        self.running[spec.id] = started
        self.specs[spec.id] = spec
        self.exited.pop(spec.id, None)
        return started

    def release(self, container_id: str) -> None:
        self.released.append(container_id)

    def exit(self, container_id: str, code: int) -> None:
        started = self.running.pop(container_id, None)
        self.exited[container_id] = (code, "2026-01-01T00:00:00.000000Z")
        if started is not None and started.monitor_pid in self._exit_pipes:
            read_end, write_end = self._exit_pipes.pop(started.monitor_pid)
            os.close(write_end)
            os.close(read_end)

    def attach(self, container_id: str, **flags: Any) -> socket.socket:
        a, b = socket.socketpair()
        b.close()
        return a

    def logs(self, container_id: str, **kw: Any) -> Iterator[bytes]:
        return iter(())

    def exit_status(self, container_id: str) -> tuple[int, str] | None:
        return self.exited.get(container_id)

    def monitor_alive(self, container_id: str, monitor_pid: int) -> bool:
        started = self.running.get(container_id)
        return started is not None and started.monitor_pid == monitor_pid

    def close(self) -> None:
        pass

    def leftover(self, container_id: str) -> Started | None:
        return self.running.get(container_id)

    def kill(self, pid: int, sig: int) -> None:
        for cid, started in list(self.running.items()):
            if started.pid == pid:
                self.on_kill(cid, sig)
                if sig in (signal.SIGKILL, signal.SIGTERM):
                    self.exit(cid, 128 + sig)

    def remove(self, container_id: str) -> None:
        self.exited.pop(container_id, None)
