"""Docker's bridge driver options: names, parsing and validation with Docker's messages."""

from __future__ import annotations

from ipaddress import ip_address

from berth.config import DEFAULT_MTU
from berth.errors import InvalidParameter

BRIDGE_NAME = "com.docker.network.bridge.name"
ENABLE_ICC = "com.docker.network.bridge.enable_icc"
ENABLE_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
HOST_BINDING_IPV4 = "com.docker.network.bridge.host_binding_ipv4"
DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
MTU = "com.docker.network.driver.mtu"

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(key: str, value: str) -> bool:
    """Go's strconv.ParseBool, with the daemon's error text."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidParameter(
        f'failed to parse {key} value: {value} (strconv.ParseBool: parsing "{value}": invalid syntax)'
    )


def flag(options: dict[str, str], key: str, default: bool) -> bool:
    return parse_bool(key, options[key]) if key in options else default


def mtu(options: dict[str, str]) -> int:
    raw = options.get(MTU)
    if raw is None or raw == "":
        return DEFAULT_MTU
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f'failed to parse {MTU} value: {raw} (strconv.Atoi: parsing "{raw}": invalid syntax)') from None
    if not 68 <= value <= 65535:
        raise InvalidParameter(f"invalid MTU number: {value}")
    return value


def valid_ifname(name: str) -> bool:
    """A name the kernel accepts for a link: 1-15 bytes, no '/', ':' or white space, not '.' or '..'."""
    return (0 < len(name.encode()) <= 15 and name not in (".", "..")
            and not any(ch in name for ch in "/: \t\n"))


def validate(options: dict[str, str]) -> None:
    """Refuse malformed bridge options before any change."""
    flag(options, ENABLE_ICC, True)
    flag(options, ENABLE_MASQUERADE, True)
    mtu(options)
    name = options.get(BRIDGE_NAME)
    if name is not None and not valid_ifname(name):
        raise InvalidParameter(f"invalid bridge name {name!r}: a link name has 1 to 15 characters, without '/', ':' or spaces")
    binding = options.get(HOST_BINDING_IPV4)
    if binding:
        try:
            ip_address(binding)
        except ValueError:
            raise InvalidParameter(f"invalid {HOST_BINDING_IPV4} address: {binding}") from None
