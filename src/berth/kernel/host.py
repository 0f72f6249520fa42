"""The real kernel: links, addresses and routes over netlink (pyroute2, in-process), namespaces as
files, sysctls, and nftables through libnftables.

Each daemon thread keeps its own host-namespace netlink socket (pyroute2 serialises one socket behind a
lock); work inside a container's namespace uses a socket opened there for the call. Nothing forks.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from contextlib import contextmanager
from ipaddress import (IPv4Address, IPv4Network, IPv6Address, IPv6Network,
                       ip_interface, ip_network)
from pathlib import Path
from typing import Any, Iterator, Sequence

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from berth.errors import KernelError
from berth.kernel import dockeruser
from berth.kernel import netns as ns
from berth.kernel.nft import Nftables
from berth.kernel.types import Iface, LinkInfo

IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253


def _why(err: BaseException) -> str:
    if isinstance(err, NetlinkError):
        return os.strerror(err.code) if err.code else str(err)
    return str(err)


def _kind(msg: Any) -> str:
    info = msg.get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info else None) or "device"


class Kernel:
    def __init__(self) -> None:
        self._local = threading.local()
        self._nft: Nftables | None = None
        self._nft_lock = threading.Lock()
        self._sysctls: dict[str, str] = {}
        self._all: list[IPRoute] = []
        self._all_lock = threading.Lock()

    # -- netlink plumbing -----------------------------------------------------------------------

    @property
    def ipr(self) -> IPRoute:
        ipr = getattr(self._local, "ipr", None)
        if ipr is None:
            ipr = IPRoute()
            self._local.ipr = ipr
            with self._all_lock:
                self._all.append(ipr)
        return ipr

    @contextmanager
    def _in(self, netns: str | Path) -> Iterator[IPRoute]:
        ipr = IPRoute(use_socket=ns.netlink_socket(Path(netns)))
        try:
            yield ipr
        finally:
            ipr.close()

    def _index(self, ipr: IPRoute, name: str) -> int | None:
        """One RTM_GETLINK by name (pyroute2's link_lookup dumps every link: O(links) per call)."""
        try:
            return ipr.link("get", ifname=name)[0]["index"]
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                return None
            raise

    def _info(self, ipr: IPRoute, msg: Any, names: dict[int, str]) -> LinkInfo:
        index = msg["index"]
        addrs = tuple(
            ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}") for a in ipr.get_addr(index=index)
        )
        master = msg.get_attr("IFLA_MASTER")
        return LinkInfo(
            name=msg.get_attr("IFLA_IFNAME"), index=index, kind=_kind(msg), alias=msg.get_attr("IFLA_IFALIAS"),
            master=names.get(master) if master else None, mtu=msg.get_attr("IFLA_MTU"),
            up=bool(msg["flags"] & 1), mac=msg.get_attr("IFLA_ADDRESS") or "", addresses=addrs,
        )

    def _infos(self, ipr: IPRoute, msgs: list[Any]) -> list[LinkInfo]:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
        return [self._info(ipr, m, names) for m in msgs]

    @staticmethod
    def _add_address(ipr: IPRoute, index: int, iface: Iface) -> None:
        kw: dict[str, Any] = {"index": index, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if iface.version == 6:
            kw["flags"] = IFA_F_NODAD
        ipr.addr("add", **kw)

    # -- namespaces ------------------------------------------------------------------------------

    def netns_create(self, path: str | Path) -> None:
        path = Path(path)
        ns.create(path)
        try:
            with self._in(path) as ipr:
                ipr.link("set", index=1, state="up")
        except Exception as err:
            ns.delete(path)
            raise KernelError(f"cannot bring up lo in {path}: {_why(err)}") from None

    def netns_delete(self, path: str | Path) -> None:
        ns.delete(Path(path))

    def netns_exists(self, path: str | Path) -> bool:
        return ns.exists(Path(path))

    # -- host links ------------------------------------------------------------------------------

    def bridge_ensure(self, name: str, *, alias: str, mtu: int, addresses: Sequence[Iface],
                      mac: str | None = None) -> None:
        ipr = self.ipr
        try:
            index = self._index(ipr, name)
            if index is None:
                kw: dict[str, Any] = {"ifname": name, "kind": "bridge", "mtu": mtu}
                if mac:
                    kw["address"] = mac
                ipr.link("add", **kw)
                index = self._index(ipr, name)
                assert index is not None
                ipr.link("set", index=index, ifalias=alias)
            else:
                msg = ipr.get_links(index)[0]
                if _kind(msg) != "bridge" or msg.get_attr("IFLA_IFALIAS") != alias:
                    raise KernelError(f"a link named {name} already exists and is not berth's bridge for this network")
                if msg.get_attr("IFLA_MTU") != mtu:
                    ipr.link("set", index=index, mtu=mtu)
            present = {ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}") for a in ipr.get_addr(index=index)}
            for iface in addresses:
                if iface not in present:
                    self._add_address(ipr, index, iface)
            ipr.link("set", index=index, state="up")
        except KernelError:
            raise
        except Exception as err:
            raise KernelError(f"cannot set up bridge {name}: {_why(err)}") from None

    def _delete(self, ipr: IPRoute, name: str) -> None:
        """Delete a link by name in ``ipr``'s namespace; a missing link counts as deleted."""
        index = self._index(ipr, name)
        if index is None:
            return
        try:
            ipr.link("del", index=index)
        except NetlinkError as err:
            if err.code != errno.ENODEV:
                raise KernelError(f"cannot delete link {name}: {_why(err)}") from None

    def link_delete(self, name: str) -> None:
        self._delete(self.ipr, name)

    def link_get(self, name: str) -> LinkInfo | None:
        ipr = self.ipr
        index = self._index(ipr, name)
        if index is None:
            return None
        return self._infos(ipr, ipr.get_links(index))[0]

    def links(self, alias_prefix: str = "berth:") -> list[LinkInfo]:
        ipr = self.ipr
        mine = [m for m in ipr.get_links() if (m.get_attr("IFLA_IFALIAS") or "").startswith(alias_prefix)]
        return self._infos(ipr, mine)

    def bridge_port_count(self, bridge: str) -> int:
        ipr = self.ipr
        index = self._index(ipr, bridge)
        if index is None:
            return 0
        return sum(1 for m in ipr.get_links() if m.get_attr("IFLA_MASTER") == index)

    # -- endpoints -------------------------------------------------------------------------------

    def veth_attach(self, *, netns: str | Path, host_name: str, alias: str, bridge: str, ifname: str, mac: str,
                    mtu: int, addresses: Sequence[Iface], gateway4: IPv4Address | None = None,
                    gateway6: IPv6Address | None = None) -> None:
        ipr = self.ipr
        master = self._index(ipr, bridge)
        if master is None:
            raise KernelError(f"bridge {bridge} does not exist (try: berth system reconcile)")
        fd = os.open(netns, os.O_RDONLY)
        try:
            # one request creates the pair, puts the peer in the namespace, enslaves and raises the host side
            ipr.link("add", ifname=host_name, kind="veth", mtu=mtu, master=master, state="up",
                     peer={"ifname": ifname, "net_ns_fd": fd, "address": mac, "mtu": mtu})
        except NetlinkError as err:
            self.link_delete(host_name)
            if err.code == errno.EXFULL:
                raise KernelError(f"network bridge {bridge} is full: a Linux bridge takes at most 1023 ports") from None
            raise KernelError(f"cannot create veth pair {host_name}/{ifname}: {_why(err)}") from None
        finally:
            os.close(fd)
        step = "mark"
        try:
            host_index = self._index(ipr, host_name)
            ipr.link("set", index=host_index, ifalias=alias)  # the kernel ignores an alias given at creation
            step = "configure"
            with self._in(netns) as inner:
                index = self._index(inner, ifname)
                for iface in addresses:
                    self._add_address(inner, index, iface)
                inner.link("set", index=index, state="up")
                step = "route"
                # "replace": the new endpoint may take the default route over from an earlier one
                if gateway4 is not None:
                    inner.route("replace", dst="0.0.0.0/0", gateway=str(gateway4))
                if gateway6 is not None:
                    inner.route("replace", dst="::/0", gateway=str(gateway6), family=10)
        except Exception as err:
            try:
                self.link_delete(host_name)
            finally:
                if isinstance(err, KernelError):
                    raise
                raise KernelError(f"cannot attach {ifname} to bridge {bridge} ({step}): {_why(err)}") from None

    def bridge_port_hairpin(self, host_name: str) -> None:
        """Let frames leave a bridge port they came in by: a container reaching its own published port
        through the host (br_netfilter DNATs it back onto the same port)."""
        ipr = self.ipr
        index = self._index(ipr, host_name)
        if index is None:
            raise KernelError(f"link {host_name} does not exist")
        try:
            ipr.brport("set", index=index, mode=1)  # IFLA_BRPORT_MODE: hairpin
        except NetlinkError as err:
            raise KernelError(f"cannot set hairpin mode on {host_name}: {_why(err)}") from None

    def netns_link_delete(self, netns: str | Path, ifname: str) -> None:
        if not ns.exists(Path(netns)):
            return
        with self._in(netns) as ipr:
            self._delete(ipr, ifname)

    def netns_set_default_routes(self, netns: str | Path, *, gateway4: IPv4Address | None,
                                 gateway6: IPv6Address | None) -> None:
        with self._in(netns) as ipr:
            for family, dst, gateway in ((2, "0.0.0.0/0", gateway4), (10, "::/0", gateway6)):
                try:
                    ipr.route("del", dst=dst, family=family)
                except NetlinkError as err:
                    if err.code not in (errno.ESRCH, errno.ENOENT):
                        raise KernelError(f"cannot remove default route: {_why(err)}") from None
                if gateway is not None:
                    try:
                        ipr.route("add", dst=dst, gateway=str(gateway), family=family)
                    except NetlinkError as err:
                        raise KernelError(f"cannot add default route via {gateway}: {_why(err)}") from None

    def netns_links(self, netns: str | Path) -> list[LinkInfo]:
        with self._in(netns) as ipr:
            return self._infos(ipr, ipr.get_links())

    def netns_routes(self, netns: str | Path) -> list[dict[str, Any]]:
        with self._in(netns) as ipr:
            names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
            out = []
            for family in (2, 10):
                for r in ipr.get_routes(family=family, table=254):
                    dst = r.get_attr("RTA_DST")
                    out.append({
                        "dst": f"{dst}/{r['dst_len']}" if dst else "default",
                        "gateway": r.get_attr("RTA_GATEWAY"),
                        "dev": names.get(r.get_attr("RTA_OIF")),
                    })
            return out

    # -- host facts ------------------------------------------------------------------------------

    def host_networks(self) -> list[IPv4Network | IPv6Network]:
        ipr = self.ipr
        ours = {m["index"] for m in ipr.get_links() if (m.get_attr("IFLA_IFALIAS") or "").startswith("berth:")}
        nets: set[IPv4Network | IPv6Network] = set()
        for a in ipr.get_addr():
            if a["index"] not in ours:
                nets.add(ip_network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False))
        for family in (2, 10):
            for r in ipr.get_routes(family=family):
                dst = r.get_attr("RTA_DST")
                if dst and r["scope"] == RT_SCOPE_LINK and r.get_attr("RTA_OIF") not in ours:
                    nets.add(ip_network(f"{dst}/{r['dst_len']}", strict=False))
        return sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))

    # -- sysctls ---------------------------------------------------------------------------------

    @staticmethod
    def _sysctl_path(key: str) -> Path:
        parts = key.split(".")
        if len(parts) > 4 and parts[0] == "net" and parts[2] == "conf":
            parts = parts[:3] + [".".join(parts[3:-1]), parts[-1]]  # interface names may contain dots
        return Path("/proc/sys", *parts)

    def sysctl_set(self, key: str, value: str) -> None:
        try:
            self._sysctl_path(key).write_text(value)
        except OSError as err:
            raise KernelError(f"cannot set {key}={value}: {err.strerror}") from None
        self._sysctls[key] = value

    def sysctl_get(self, key: str) -> str:
        return self._sysctl_path(key).read_text().strip()

    # -- nftables --------------------------------------------------------------------------------

    @property
    def _nftables(self) -> Nftables:
        with self._nft_lock:
            if self._nft is None:
                self._nft = Nftables()
            return self._nft

    def nft(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._nftables.batch(commands)

    def nft_text(self, text: str) -> None:
        """One batch in nft syntax, for the few statements libnftables' JSON parser cannot take."""
        self._nftables.run(text)

    def docker_user_allow(self, bridge: str, mark: str) -> None:
        """On a host running Docker, let ``bridge``'s traffic past Docker's FORWARD policy."""
        try:
            dockeruser.allow(self._nftables, bridge, mark)
        except subprocess.CalledProcessError as err:
            raise KernelError(f"cannot add berth's rule for {bridge} to Docker's {dockeruser.CHAIN} chain: "
                              f"{(err.stderr or b'').decode(errors='replace').strip()}") from None

    def docker_user_revoke(self, bridge: str, mark: str) -> None:
        dockeruser.revoke(self._nftables, bridge, mark)

    def nft_table(self, family: str, name: str) -> dict[str, Any] | None:
        try:
            items = self._nftables.run(f"list table {family} {name}")
        except KernelError:
            return None
        return {"nftables": items}

    # -- inspection ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything berth-owned in comparable form, for "nothing changed" assertions."""
        links = sorted(
            (l.name, l.kind, l.alias, l.master, l.mtu, l.up, tuple(sorted(map(str, l.addresses))))
            for l in self.links()
        )
        tables = {f"{fam} berth": self.nft_table(fam, "berth") for fam in ("inet", "bridge")}
        return {"links": links, "nft": tables, "sysctls": dict(self._sysctls)}

    def close(self) -> None:
        with self._all_lock:
            for ipr in self._all:
                try:
                    ipr.close()
                except Exception:  # noqa: BLE001 - closing at shutdown
                    pass
            self._all.clear()
        if self._nft is not None:
            self._nft.close()
