"""One exception tree for all of berth.

Each class carries the HTTP status the Engine API answers with; the CLI maps any error to exit code 1
(Docker's convention), and the CNI entry point maps categories to CNI error codes. Messages are
Docker's wording wherever Docker has one, so users and tools see the text they expect.
"""

from __future__ import annotations


class BerthError(Exception):
    """Base of every error berth reports to a user. ``str(err)`` is the one-line message."""

    status: int = 500
    cni_code: int = 999

    def __init__(self, message: str) -> None:
        # Messages often quote user input: keep them to one printable line whatever that input was.
        message = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidParameter(BerthError):
    """Bad input: refused before anything changes (HTTP 400)."""

    status = 400
    cni_code = 7


class Forbidden(BerthError):
    """The request is understood but not allowed in the current state (HTTP 403)."""

    status = 403
    cni_code = 7


class NotFound(BerthError):
    """A named network, container, image or exec does not exist (HTTP 404)."""

    status = 404
    cni_code = 7


class Conflict(BerthError):
    """A name or address is already taken (HTTP 409)."""

    status = 409
    cni_code = 7


class NotModified(BerthError):
    """Nothing to do: the object is already in the requested state (HTTP 304)."""

    status = 304


class Unavailable(BerthError):
    """A service berth needs is not there (HTTP 503)."""

    status = 503
    cni_code = 11


class KernelError(BerthError):
    """The kernel refused a change; the message says which object and why (HTTP 500)."""

    status = 500
    cni_code = 999


class PoolExhausted(Forbidden):
    """No address or subnet is left in a pool."""

    cni_code = 100  # CNI leaves 100+ to plugins: berth's code for "no address for you"


class AddressInUse(Forbidden):
    """A requested address is already allocated."""

    cni_code = 100

    def __init__(self, message: str = "Address already in use") -> None:
        super().__init__(message)


class BridgeFull(KernelError):
    """The kernel refused another port on a network's bridge, which holds the 1023 a Linux bridge can.
    The network's state rather than a fault, so HTTP 403 like the other refusals of a full resource."""

    status = 403
    cni_code = 7
