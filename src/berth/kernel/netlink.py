"""pyroute2 plumbing: netlink sockets per thread and per namespace, and link messages as ``LinkInfo``.

pyroute2 serialises every request on one ``IPRoute`` behind a lock, so each daemon thread keeps its own
host-namespace socket. A socket inside a container's namespace is opened by a setns round trip of the
calling thread (``netns.netlink_socket``) and handed to ``IPRoute(use_socket=...)``; pyroute2's own
``IPRoute(netns=...)`` would fork a helper process for every call (deps.md §1).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
from contextlib import contextmanager
from ipaddress import ip_interface
from pathlib import Path
from typing import Any, Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from berth.kernel import netns as ns
from berth.kernel.types import Iface, LinkInfo

AF_INET = 2
AF_INET6 = 10
IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253
MAIN_TABLE = 254
IFF_UP = 1
SIOCGIFINDEX = 0x8933
IFNAMSIZ = 16
IFREQ_INDEX = "16si20x"  # struct ifreq (40 bytes) as SIOCGIFINDEX reads and fills it: name, index


def reason(err: BaseException) -> str:
    """The kernel's own words for a failure ("File exists", "Exchange full"), for one-line errors."""
    if isinstance(err, NetlinkError):
        return os.strerror(err.code) if err.code else str(err)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err)


class HostSockets:
    """One host-namespace ``IPRoute`` per live thread, all closed together at shutdown.

    berthd serves each API connection on a new thread, which calls ``release()`` when it ends: pyroute2
    frees a socket's event loop (an epoll and a socket pair) only when it is closed by the thread that
    opened it. Sockets of threads that ended without releasing are closed when the next one is opened,
    which frees at least their netlink socket.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._owners: dict[threading.Thread, IPRoute] = {}
        self._lock = threading.Lock()

    def get(self) -> IPRoute:
        ipr = getattr(self._local, "ipr", None)
        if ipr is None:
            ipr = IPRoute()
            self._local.ipr = ipr
            with self._lock:
                ended = [t for t in self._owners if not t.is_alive()]
                stale = [self._owners.pop(t) for t in ended]
                self._owners[threading.current_thread()] = ipr
            _close_all(stale)
        return ipr

    def release(self) -> None:
        """Close the calling thread's socket (if it has one), from that thread, as pyroute2 needs."""
        ipr = getattr(self._local, "ipr", None)
        if ipr is not None:
            self._local.ipr = None
            with self._lock:
                self._owners.pop(threading.current_thread(), None)
            _close_all([ipr])

    def close(self) -> None:
        with self._lock:
            sockets, self._owners = list(self._owners.values()), {}
        _close_all(sockets)
        self._local = threading.local()


def _close_all(sockets: list[IPRoute]) -> None:
    for ipr in sockets:
        try:
            ipr.close()
        except Exception:  # noqa: BLE001 - a socket that is already gone needs no closing
            pass


@contextmanager
def inside(path: str | Path) -> Iterator[IPRoute]:
    """An ``IPRoute`` whose socket lives in the namespace at ``path``, for the duration of a block."""
    ipr = IPRoute(use_socket=ns.netlink_socket(Path(path)))
    try:
        yield ipr
    finally:
        ipr.close()


def kind(msg: Any) -> str:
    info = msg.get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info else None) or "device"


def index(ipr: IPRoute, name: str) -> int | None:
    """The index of link ``name`` in ``ipr``'s namespace, None if there is none.

    One ``SIOCGIFINDEX`` ioctl on the netlink socket itself: the kernel answers it in the socket's own
    namespace, in microseconds. An RTM_GETLINK would cost a whole link message to decode (~0.7 ms in
    pyroute2, three of them per attach); ``link_lookup`` dumps every link. Names too long for the ioctl
    (alternative names) are asked for by netlink.
    """
    raw = name.encode()
    if len(raw) >= IFNAMSIZ:
        try:
            return ipr.link("get", ifname=name)[0]["index"]
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return None
            raise
    try:
        reply = fcntl.ioctl(ipr.fileno(), SIOCGIFINDEX, struct.pack(IFREQ_INDEX, raw, 0))
    except OSError as err:
        if err.errno == errno.ENODEV:
            return None
        raise
    return struct.unpack(IFREQ_INDEX, reply)[1]


def addresses(ipr: IPRoute, ifindex: int) -> tuple[Iface, ...]:
    return tuple(ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}") for a in ipr.get_addr(index=ifindex))


def link_infos(ipr: IPRoute, msgs: list[Any]) -> list[LinkInfo]:
    """Link messages as plain values. Master names and addresses come from one dump each, not one per
    link (pyroute2 filters ``get_addr(index=...)`` client-side, so per-link calls would be quadratic)."""
    names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
    addrs: dict[int, list[Iface]] = {}
    for a in ipr.get_addr():
        addrs.setdefault(a["index"], []).append(ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"))
    out = []
    for msg in msgs:
        master = msg.get_attr("IFLA_MASTER")
        out.append(LinkInfo(
            name=msg.get_attr("IFLA_IFNAME"), index=msg["index"], kind=kind(msg),
            alias=msg.get_attr("IFLA_IFALIAS"), master=names.get(master) if master else None,
            mtu=msg.get_attr("IFLA_MTU"), up=bool(msg["flags"] & IFF_UP),
            mac=msg.get_attr("IFLA_ADDRESS") or "", addresses=tuple(addrs.get(msg["index"], ())),
        ))
    return out


def add_address(ipr: IPRoute, ifindex: int, iface: Iface) -> None:
    """Add one address; IPv6 ones skip duplicate address detection so they are usable at once, as
    Docker's are (a gateway or a container would otherwise wait ~1 s in "tentative")."""
    kw: dict[str, Any] = {"index": ifindex, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
    if iface.version == 6:
        kw["flags"] = IFA_F_NODAD
    ipr.addr("add", **kw)
