"""The host's resolver settings, re-read only when /etc/resolv.conf changes (checked per call by mtime)."""

from __future__ import annotations

import os
from pathlib import Path

from berth.ipam.pools import nameservers


class HostResolvConf:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._servers: list[str] = []
        self._search: list[str] = []

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino)
            if stamp == self._stamp:
                return
            text = self.path.read_text()
        except OSError:
            self._stamp, self._servers, self._search = None, [], []
            return
        self._stamp = stamp
        self._servers = [str(ns) for ns in nameservers(text)]
        search: list[str] = []
        for line in text.splitlines():
            words = line.split()
            if words[:1] in (["search"], ["domain"]):
                search = words[1:]
        self._search = search

    def nameservers(self) -> list[str]:
        """Upstreams for forwarded queries (the host's own, loopback ones included: berthd runs on the host)."""
        self._refresh()
        return list(self._servers)

    def search(self) -> list[str]:
        self._refresh()
        return list(self._search)
