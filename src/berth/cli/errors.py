"""The two ways a command fails, each printed as one line by ``berth.cli.main`` (never a traceback)."""

from __future__ import annotations


class CLIError(Exception):
    """A failure detected by the client itself, printed verbatim (Docker's wording where it has one)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class DaemonError(CLIError):
    """An error answer of the daemon: printed as ``Error response from daemon: <message>``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Error response from daemon: {message}")
        self.status = status
        self.detail = message


class NoSuchObject(CLIError):
    """``inspect`` found no object of any kind with a name: docker's ``Error: No such object: X``."""
