"""Watches container monitors and reports each one's exit to the engine.

One thread waits on the monitors' pidfds (``os.pidfd_open``), so an exit is noticed at once without
SIGCHLD handling, and monitors started by an earlier berthd (re-adopted after a restart) are watched
the same way as our own children.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
from typing import Callable

log = logging.getLogger("berth.watcher")
RETRY_MAX = 5.0  # seconds between attempts to record an exit that could not be recorded


class ExitWatcher:
    def __init__(self, on_exit: Callable[[str], None], pidfd: Callable[[int], int] = os.pidfd_open) -> None:
        self._on_exit = on_exit
        self._pidfd = pidfd
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="exit-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, container_id: str, monitor_pid: int) -> None:
        """Report ``container_id`` when ``monitor_pid`` exits (at once if it is already gone)."""
        try:
            fd = self._pidfd(monitor_pid)
        except ProcessLookupError:
            threading.Thread(target=self._on_exit, args=(container_id,), daemon=True).start()
            return
        with self._lock:
            self._selector.register(fd, selectors.EVENT_READ, (container_id, monitor_pid))
        os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                if key.data is None:
                    os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    self._selector.unregister(key.fd)
                os.close(key.fd)
                container_id, pid = key.data
                try:
                    os.waitpid(pid, os.WNOHANG)  # reap a monitor we started; an adopted one is not ours to reap
                except ChildProcessError:
                    pass
                self._report(container_id, 0)

    def _report(self, container_id: str, attempt: int) -> None:
        """Hand an exit to the engine; if recording it fails (a full disk), try again until it is recorded,
        so the container does not stay "running" with nothing left of it."""
        try:
            self._on_exit(container_id)
        except Exception:  # noqa: BLE001 - one failed teardown must not stop watching the others
            log.exception("handling the exit of container %s failed (attempt %d)", container_id, attempt + 1)
            if not self._stopping:
                retry = threading.Timer(min(0.25 * 2 ** attempt, RETRY_MAX), self._report, (container_id, attempt + 1))
                retry.daemon = True
                retry.start()

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
