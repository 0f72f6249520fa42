"""CNI protocol data: spec versions, error results, success results and their conversions.

Pure and stdlib-only: ``berth-cni`` imports it on every invocation (start-up time counts) and code that
runs external CNI plugins may import it too. Results are kept internally in the newest shape (spec
1.1.0) and converted on the way out to the version the network configuration speaks, so a chain of
plugins of mixed vintage (Debian's reference plugins speak up to 1.0.0) sees what it expects.
"""

from __future__ import annotations

import re
from typing import Any

# Versions whose result format berth can read and write. 0.1.0/0.2.0 used a different result shape
# (ip4/ip6 objects) that no maintained runtime still sends.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]

# Error codes of the spec (codes 100+ belong to the plugin; berth's are on its error classes).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
INTERNAL = 999  # what libcni and the reference plugins use for everything else

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# The first spec version that knows each command (runtimes never send a command older configs lack).
COMMAND_SINCE = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),  # the namespace may already be gone
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}
CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

# Fields spec 1.1.0 added to results; older versions must not see them.
_NEW_INTERFACE_KEYS = ("mtu", "socketPath", "pciID")
_NEW_ROUTE_KEYS = ("mtu", "advmss", "priority", "table", "scope")


class CniError(Exception):
    """A failure reported to the runtime as the spec's error object, on stdout, with a non-zero exit."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def version_key(version: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> ``(1, 0, 0)``; anything else is a decode failure (code 6)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version or "")
    if not match:
        raise CniError(DECODE_FAILURE, f"invalid CNI version {version!r}")
    return int(match[1]), int(match[2]), int(match[3])


def negotiate(version: Any) -> str:
    """The configuration's ``cniVersion`` if berth speaks it, else the spec's "incompatible" error."""
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_CONFIG, "cniVersion is missing from the network configuration")
    version_key(version)
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f'config is "{version}", plugin supports [{supported}]')
    return version


def allows(command: str, version: str) -> None:
    """Refuse a command the configuration's version does not have (CHECK before 0.4.0, GC and STATUS before 1.1.0)."""
    since = COMMAND_SINCE.get(command)
    if since is not None and version_key(version) < version_key(since):
        raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                       f'config is "{version}", {command} needs "{since}" or later')


def check_env(env: dict[str, str]) -> str:
    """The command, once the variables it needs are present and well formed (else code 4 naming them)."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}")
    missing = [name for name in REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"required env variables [{' '.join(missing)}] missing")
    container_id = env.get("CNI_CONTAINERID", "")
    if container_id and not CONTAINER_ID_RE.match(container_id):
        raise CniError(INVALID_ENVIRONMENT, f"invalid CNI_CONTAINERID {container_id!r}",
                       "it must start with a letter or digit, followed by letters, digits, '_', '.' or '-'")
    ifname = env.get("CNI_IFNAME", "")
    if ifname and (len(ifname) > 15 or "/" in ifname or ifname in (".", "..") or not ifname.isprintable()
                   or any(ch.isspace() for ch in ifname)):
        raise CniError(INVALID_ENVIRONMENT, f"invalid CNI_IFNAME {ifname!r}",
                       "an interface name has 1 to 15 characters, no '/' and no white space")
    return command


def parse_args(text: str) -> dict[str, str]:
    """``CNI_ARGS``: ``K=V;K2=V2`` (empty pieces ignored); a piece without ``=`` is code 4."""
    out: dict[str, str] = {}
    for piece in (text or "").split(";"):
        if not piece:
            continue
        key, sep, value = piece.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, f"invalid CNI_ARGS pair {piece!r}", "expected KEY=VALUE pairs separated by ';'")
        out[key] = value
    return out


def normalize_result(result: Any) -> dict[str, Any]:
    """A result of any supported version in the 1.1.0 shape (``ips[].version`` of 0.3/0.4 dropped)."""
    if not isinstance(result, dict):
        raise CniError(DECODE_FAILURE, "prevResult is not a JSON object")
    out = {
        "interfaces": [dict(i) for i in result.get("interfaces") or [] if isinstance(i, dict)],
        "ips": [{k: v for k, v in ip.items() if k != "version"} for ip in result.get("ips") or [] if isinstance(ip, dict)],
        "routes": [dict(r) for r in result.get("routes") or [] if isinstance(r, dict)],
        "dns": dict(result.get("dns") or {}),
    }
    return out


def convert_result(result: dict[str, Any], version: str) -> dict[str, Any]:
    """A 1.1.0-shaped result as the given spec version writes it, ``cniVersion`` first."""
    key = version_key(version)
    interfaces = [dict(i) for i in result.get("interfaces") or []]
    ips = [dict(ip) for ip in result.get("ips") or []]
    routes = [dict(r) for r in result.get("routes") or []]
    if key < (1, 1, 0):
        interfaces = [{k: v for k, v in i.items() if k not in _NEW_INTERFACE_KEYS} for i in interfaces]
        routes = [{k: v for k, v in r.items() if k not in _NEW_ROUTE_KEYS} for r in routes]
    if key < (1, 0, 0):
        ips = [{"version": "6" if ":" in str(ip.get("address", "")) else "4", **ip} for ip in ips]
    out: dict[str, Any] = {"cniVersion": version, "interfaces": interfaces, "ips": ips, "routes": routes}
    out["dns"] = dict(result.get("dns") or {})
    return out


def merge_results(prev: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    """A chained plugin's output: the previous result with this plugin's interfaces, addresses and
    routes appended (address ``interface`` indexes shifted past the earlier interfaces) and its
    nameservers added after the earlier ones."""
    offset = len(prev.get("interfaces") or [])
    ips = [dict(ip) for ip in prev.get("ips") or []]
    for ip in mine.get("ips") or []:
        shifted = dict(ip)
        if "interface" in shifted:
            shifted["interface"] = int(shifted["interface"]) + offset
        ips.append(shifted)
    dns = dict(prev.get("dns") or {})
    servers = list(dns.get("nameservers") or [])
    servers += [s for s in (mine.get("dns") or {}).get("nameservers") or [] if s not in servers]
    if servers:
        dns["nameservers"] = servers
    return {
        "interfaces": [*(prev.get("interfaces") or []), *(mine.get("interfaces") or [])],
        "ips": ips,
        "routes": [*(prev.get("routes") or []), *(mine.get("routes") or [])],
        "dns": dns,
    }
