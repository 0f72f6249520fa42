"""CNI network configuration files: load, validate, and turn a single-plugin ``.conf`` into a list.

berth keeps a copy of the list in its own records, so a network keeps working the way it was created
even if the file changes or disappears; the directory scan (``--cni-config-dir``) follows libcni's
rules: ``.conf``, ``.conflist`` and ``.json`` files in name order, the first file with a name wins.
"""

from __future__ import annotations

import json
import logging
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Iterable

from berth.cni.types import SUPPORTED_VERSIONS, CniError, version_key
from berth.config import NAME_RE
from berth.errors import InvalidParameter

log = logging.getLogger("berth.cni")

EXTENSIONS = (".conf", ".conflist", ".json")
_MAX_SIZE = 1 << 20  # a configuration is a few hundred bytes; refuse to slurp a stray big file


def parse(text: str, source: str) -> dict[str, Any]:
    """A validated network configuration list from the text of a ``.conf`` or ``.conflist``.

    A single-plugin configuration (no ``plugins`` key) becomes a one-plugin list, as libcni's
    ``ConfListFromConf`` does; the plugin keeps every key but ``cniVersion`` and ``name``.
    """
    try:
        data = json.loads(text)
    except ValueError as err:
        raise InvalidParameter(f"CNI configuration {source} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidParameter(f"CNI configuration {source} is not a JSON object")
    if "plugins" not in data:
        if "type" not in data:
            raise InvalidParameter(f"CNI configuration {source} has neither \"plugins\" nor \"type\"")
        plugin = {k: v for k, v in data.items() if k not in ("cniVersion", "name")}
        data = {"cniVersion": data.get("cniVersion"), "name": data.get("name"), "plugins": [plugin]}
    return validate(data, source)


def validate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` with a usable ``cniVersion`` (the highest of ``cniVersions`` berth reads, if given)."""
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidParameter(
            f"CNI configuration {source}: invalid network name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    data = dict(data)
    versions = data.get("cniVersions")
    if isinstance(versions, list) and versions:
        readable = [v for v in versions if v in SUPPORTED_VERSIONS]
        if not readable:
            raise InvalidParameter(f"CNI configuration {source}: none of cniVersions {versions} is supported")
        data["cniVersion"] = max(readable, key=version_key)
    version = data.get("cniVersion")
    try:
        if not isinstance(version, str):
            raise CniError(7, "missing")
        version_key(version)
    except CniError:
        raise InvalidParameter(f"CNI configuration {source}: invalid or missing cniVersion {version!r}") from None
    if version not in SUPPORTED_VERSIONS:
        raise InvalidParameter(f"CNI configuration {source}: cniVersion {version} is not supported "
                               f"(berth reads {', '.join(SUPPORTED_VERSIONS)})")
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise InvalidParameter(f"CNI configuration {source}: \"plugins\" must be a non-empty list")
    for i, plugin in enumerate(plugins):
        kind = plugin.get("type") if isinstance(plugin, dict) else None
        if not isinstance(kind, str) or not kind or "/" in kind or kind in (".", ".."):
            raise InvalidParameter(f"CNI configuration {source}: plugin {i} has no valid \"type\"")
        if not isinstance(plugin.get("capabilities", {}), dict):
            raise InvalidParameter(f"CNI configuration {source}: plugin {i} ({kind}): \"capabilities\" must be an object")
    return data


def load(path: Path) -> dict[str, Any]:
    """The configuration list in the file at ``path`` (any of the three extensions)."""
    try:
        if path.stat().st_size > _MAX_SIZE:
            raise InvalidParameter(f"CNI configuration {path} is larger than {_MAX_SIZE} bytes")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidParameter(f"cannot read CNI configuration {path}: {getattr(err, 'strerror', None) or err}") from None
    return parse(text, str(path))


def discover(directory: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Valid configurations in ``directory`` by network name; invalid files are logged and skipped."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in config_files(directory):
        try:
            conflist = load(path)
        except InvalidParameter as err:
            log.warning("ignoring %s", err)
            continue
        if conflist["name"] in found:
            log.warning("ignoring %s: network %s is already defined by %s", path, conflist["name"],
                        found[conflist["name"]][0])
            continue
        found[conflist["name"]] = (path, conflist)
    return found


def config_files(directory: Path) -> list[Path]:
    """The configuration files of a directory in libcni's order (by name); none if it does not exist."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.suffix in EXTENSIONS and p.is_file()]


def signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times: changes when a file is added, removed or rewritten."""
    out = []
    for path in config_files(directory):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def ipam_ranges(conflist: dict[str, Any]) -> list[dict[str, str]]:
    """The subnets the plugins' IPAM hands out from, in Docker's ``IPAM.Config`` shape (for inspect)."""
    out: list[dict[str, str]] = []
    for plugin in conflist.get("plugins") or []:
        ipam = plugin.get("ipam") if isinstance(plugin, dict) else None
        if not isinstance(ipam, dict):
            continue
        ranges: Iterable[Any] = [r for rs in ipam.get("ranges") or [] if isinstance(rs, list) for r in rs]
        if ipam.get("subnet"):
            ranges = [*ranges, ipam]
        for r in ranges:
            if not isinstance(r, dict) or not isinstance(r.get("subnet"), str):
                continue
            try:
                subnet = ip_network(r["subnet"], strict=False)
            except ValueError:
                continue
            entry = {"Subnet": str(subnet)}
            if isinstance(r.get("gateway"), str):
                entry["Gateway"] = r["gateway"]
            out.append(entry)
    return out
