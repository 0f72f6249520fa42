"""The /etc/hosts, /etc/resolv.conf and /etc/hostname a container sees, in Docker's formats.

The files live in the container's directory and are bind-mounted into it, so later changes (connect,
disconnect, a new DNS setting) must rewrite the same inode: a rename would leave the container looking
at the old file through its bind mount.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Iterable

# Docker's fixed loopback block, byte for byte (libnetwork etchosts).
DEFAULT_HOSTS = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
)
# What Docker substitutes when the host only has loopback resolvers, which a container cannot reach.
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def hosts_file(hostname: str, addresses: Iterable[str], extra: Iterable[str] = ()) -> str:
    """Loopback lines, then ``--add-host`` entries (Docker's ``name:ip`` form), then one line per address.

    With no addresses (``--network none``) the hostname gets no line, as in Docker.
    """
    lines = [f"{ip}\t{names}" for ip, names in DEFAULT_HOSTS]
    for entry in extra:
        name, sep, ip = entry.partition(":")
        if not sep or not name or not ip:
            raise ValueError(f"invalid argument {entry!r} for extra host: expected name:ip")
        lines.append(f"{ip}\t{name}")
    lines.extend(f"{ip}\t{hostname}" for ip in addresses)
    return "\n".join(lines) + "\n"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _values(text: str, keyword: str) -> list[str]:
    """Every value of ``keyword`` lines (``search``/``domain`` style lines hold several words)."""
    out: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == keyword:
            out.extend(words[1:])
    return out


def _build(nameservers: Iterable[str], search: Iterable[str], options: Iterable[str]) -> str:
    """Docker's resolvconf.Build layout: search, nameservers, options."""
    search = [s for s in search if s != "."]  # "--dns-search ." means "no search domains"
    options = list(options)
    lines = [f"search {' '.join(search)}"] if search else []
    lines += [f"nameserver {ns}" for ns in nameservers]
    if options:
        lines.append(f"options {' '.join(options)}")
    return "\n".join(lines) + "\n"


def resolv_conf(
    host_text: str,
    *,
    nameservers: Iterable[str] = (),
    search: Iterable[str] = (),
    options: Iterable[str] = (),
    embedded: str | None = None,
) -> str:
    """The container's resolv.conf derived from the host's, as Docker derives it.

    Without overrides the host file is copied minus loopback nameservers (they point at the host's own
    stub resolver, unreachable from another network namespace), falling back to Google DNS when none is
    left. ``--dns``/``--dns-search``/``--dns-option`` replace the matching part. ``embedded`` is the
    address of a resolver inside the container's namespace: it becomes the only nameserver, with
    ``ndots:0`` unless the user chose an ndots of their own.
    """
    nameservers, search, options = list(nameservers), list(search), list(options)
    host_search = _values(host_text, "search") or _values(host_text, "domain")
    if embedded is not None:
        opts = options or _values(host_text, "options")
        if not any(o.startswith("ndots:") for o in opts):
            opts = ["ndots:0", *opts]
        return _build([embedded], search or host_search, opts)
    if nameservers or search or options:
        servers = nameservers or [ns for ns in _values(host_text, "nameserver") if not _is_loopback(ns)]
        return _build(servers or FALLBACK_NAMESERVERS, search or host_search, options or _values(host_text, "options"))
    kept: list[str] = []
    remaining = 0
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if _is_loopback(words[1]):
                continue
            remaining += 1
        kept.append(line)
    if not remaining:
        kept += [f"nameserver {ns}" for ns in FALLBACK_NAMESERVERS]
    return "\n".join(kept) + "\n"


def write_in_place(path: Path, text: str) -> None:
    """Replace the content of ``path`` keeping its inode, so a bind mount of it shows the new text.

    Writing before truncating means a reader never sees an empty file when the content grows.
    """
    data = text.encode()
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
