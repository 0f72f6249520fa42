"""Raw Engine API calls for the stress suite: status and body as they came, nothing raised on 4xx/5xx.

The CLI's ``Client`` raises on error answers; the suite has to judge those answers (a clear 4xx is fine,
a 500, a traceback or a hang is a violation), so it sends requests on the CLI's ``Connection`` and
classifies the reply itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from berth import API_VERSION
from berth.cli.client import Connection
from berth.cli.errors import CLIError

TIMEOUT = 60.0  # a request still unanswered after this is a hang (run.py sets it as the socket default)


@dataclass
class Reply:
    """One answer: ``status`` 0 means no HTTP answer at all (connection refused, reset, timed out)."""

    status: int
    body: bytes
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        data = self.json()
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return data["message"]
        return self.error or self.body.decode("utf-8", "replace").strip()


def seg(ref: str) -> str:
    """One path segment, quoted as the CLI quotes names."""
    return quote(ref, safe="")


class Api:
    """One keep-alive connection to berthd; not thread-safe (each stress client owns one)."""

    def __init__(self, socket_path: str) -> None:
        self.path = socket_path
        self._conn = Connection(socket_path)

    def close(self) -> None:
        self._conn.close()

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
             raw: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        url = f"/v{API_VERSION}{path}" + ("?" + urlencode(query) if query else "")
        extra = dict(headers or {})
        payload = raw
        if body is not None:
            payload = json.dumps(body).encode()
            extra.setdefault("Content-Type", "application/json")
        try:
            resp = self._conn.request(method, url, payload, extra)
            data = resp.read()
            return Reply(resp.status, data)
        except (CLIError, OSError) as err:
            self._conn.close()
            return Reply(0, b"", getattr(err, "message", None) or f"{type(err).__name__}: {err}")
