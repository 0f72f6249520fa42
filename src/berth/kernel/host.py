"""The real kernel: links, addresses and routes over netlink (pyroute2, in-process), namespaces as
files, sysctls, and nftables through libnftables.

Each daemon thread keeps its own host-namespace netlink socket; work inside a container's namespace uses
a socket opened there for the call. Nothing forks, and no thread ever stays in another namespace, so one
``Kernel`` serves every thread of the daemon.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_interface, ip_network
from pathlib import Path
from typing import Any, Iterable, Sequence

from berth.config import KERNEL_MARK_PREFIX
from berth.errors import BridgeFull, KernelError
from berth.kernel import dockeruser
from berth.kernel import netlink as nl
from berth.kernel import netns as ns
from berth.kernel import sysctl
from berth.kernel.nft import Nftables
from berth.kernel.types import Iface, LinkInfo

SNAPSHOT_TABLES = (("inet", "berth"), ("bridge", "berth"), ("ip", "berth"), ("ip6", "berth"))


class Kernel:
    def __init__(self) -> None:
        self._sockets = nl.HostSockets()
        self._nft: Nftables | None = None
        self._nft_lock = threading.Lock()
        self._sysctls: dict[str, str] = {}
        self._netns_dirs: set[Path] = set()

    @property
    def ipr(self) -> nl.IPRoute:
        """This thread's netlink socket in the host namespace."""
        return self._sockets.get()

    # -- namespaces ------------------------------------------------------------------------------

    def netns_create(self, path: str | Path) -> None:
        path = Path(path)
        self._netns_dirs.add(path.parent)
        ns.create(path)

    def netns_delete(self, path: str | Path) -> None:
        ns.delete(Path(path))

    def netns_exists(self, path: str | Path) -> bool:
        return ns.exists(Path(path))

    # -- host links ------------------------------------------------------------------------------

    def bridge_ensure(self, name: str, *, alias: str, mtu: int, addresses: Sequence[Iface],
                      mac: str | None = None) -> None:
        ipr = self.ipr
        created = False
        try:
            index = nl.index(ipr, name)
            if index is None:
                kw: dict[str, Any] = {"ifname": name, "kind": "bridge", "mtu": mtu}
                if mac:
                    kw["address"] = mac
                ipr.link("add", **kw)
                created = True
                index = nl.index(ipr, name)
                ipr.link("set", index=index, ifalias=alias)  # the kernel ignores an alias given at creation
            else:
                msg = ipr.get_links(index)[0]
                if nl.kind(msg) != "bridge" or msg.get_attr("IFLA_IFALIAS") != alias:
                    raise KernelError(f"a link named {name} already exists and is not berth's bridge for this network")
                if msg.get_attr("IFLA_MTU") != mtu:
                    ipr.link("set", index=index, mtu=mtu)
            present = set(nl.addresses(ipr, index))
            for iface in addresses:
                if iface not in present:
                    nl.add_address(ipr, index, iface)
            ipr.link("set", index=index, state="up")
        except KernelError:
            raise
        except Exception as err:
            if created:
                self.link_delete(name)
            raise KernelError(f"cannot set up bridge {name}: {nl.reason(err)}") from None

    def _delete(self, ipr: nl.IPRoute, name: str) -> None:
        """Delete a link by name in ``ipr``'s namespace; a missing link counts as deleted."""
        try:
            index = nl.index(ipr, name)
            if index is not None:
                ipr.link("del", index=index)
        except nl.NetlinkError as err:
            if err.code != errno.ENODEV:
                raise KernelError(f"cannot delete link {name}: {nl.reason(err)}") from None

    def link_delete(self, name: str) -> None:
        self._delete(self.ipr, name)

    def link_get(self, name: str) -> LinkInfo | None:
        ipr = self.ipr
        index = nl.index(ipr, name)
        if index is None:
            return None
        try:
            return nl.link_infos(ipr, ipr.get_links(index))[0]
        except nl.NetlinkError as err:  # removed between the lookup and the read (its netns went away)
            if err.code == errno.ENODEV:
                return None
            raise

    def links(self, alias_prefix: str = KERNEL_MARK_PREFIX) -> list[LinkInfo]:
        ipr = self.ipr
        mine = [m for m in ipr.get_links() if (m.get_attr("IFLA_IFALIAS") or "").startswith(alias_prefix)]
        return nl.link_infos(ipr, mine)

    def bridge_port_count(self, bridge: str) -> int:
        ipr = self.ipr
        index = nl.index(ipr, bridge)
        if index is None:
            return 0
        return sum(1 for m in ipr.get_links() if m.get_attr("IFLA_MASTER") == index)

    # -- endpoints -------------------------------------------------------------------------------

    def veth_attach(self, *, netns: str | Path, host_name: str, alias: str, bridge: str, ifname: str, mac: str,
                    mtu: int, addresses: Sequence[Iface], gateway4: IPv4Address | None = None,
                    gateway6: IPv6Address | None = None) -> None:
        ipr = self.ipr
        master = nl.index(ipr, bridge)
        if master is None:
            raise KernelError(f"bridge {bridge} does not exist (try: berth system reconcile)")
        try:
            fd = os.open(netns, os.O_RDONLY)
        except FileNotFoundError:
            raise KernelError(f"network namespace {netns} does not exist") from None
        try:
            # One request creates the pair with its peer already in the namespace and enslaves the host
            # side. The kernel undoes the whole request when any part fails, so there is nothing to clean
            # up here (and deleting ``host_name`` could hit someone else's link of that name).
            ipr.link("add", ifname=host_name, kind="veth", mtu=mtu, master=master,
                     peer={"ifname": ifname, "net_ns_fd": fd, "address": mac, "mtu": mtu})
        except nl.NetlinkError as err:
            if err.code == errno.EXFULL:
                raise BridgeFull(f"network {bridge} is full: a Linux bridge takes at most 1023 ports") from None
            raise KernelError(f"cannot create veth pair {host_name}/{ifname}: {nl.reason(err)}") from None
        finally:
            os.close(fd)
        step = "mark"
        try:
            # A bridge port needs no IPv6 of its own (the bridge holds the gateway addresses). Left on, each
            # port would add link-local, local and multicast routes to the host's IPv6 table, which the
            # kernel walks whole at every port's carrier change and removal: attach and detach would slow
            # down with every container on the host. Disabled before the port goes up, it never has any.
            no_ipv6 = f"net.ipv6.conf.{host_name}.disable_ipv6"
            if sysctl.path(no_ipv6).exists():  # absent when the host runs without IPv6 at all
                sysctl.write(no_ipv6, "1")
            ipr.link("set", index=nl.index(ipr, host_name), ifalias=alias, state="up")
            step = "configure"
            with nl.inside(netns) as inner:
                index = nl.index(inner, ifname)
                for iface in addresses:
                    nl.add_address(inner, index, iface)
                inner.link("set", index=index, state="up")
                step = "route"
                # "replace": the new endpoint may take the default route over from an earlier one
                if gateway4 is not None:
                    inner.route("replace", dst="0.0.0.0/0", gateway=str(gateway4))
                if gateway6 is not None:
                    inner.route("replace", dst="::/0", gateway=str(gateway6), family=nl.AF_INET6)
        except Exception as err:
            self.link_delete(host_name)  # the peer, its addresses and routes die with it
            raise KernelError(f"cannot attach {ifname} to bridge {bridge} ({step}): {nl.reason(err)}") from None

    def bridge_port_hairpin(self, host_name: str) -> None:
        """Let frames leave a bridge port they came in by: a container reaching its own published port
        through the host (br_netfilter DNATs it back onto the same port)."""
        ipr = self.ipr
        index = nl.index(ipr, host_name)
        if index is None:
            raise KernelError(f"link {host_name} does not exist")
        try:
            ipr.brport("set", index=index, mode=1)  # IFLA_BRPORT_MODE: hairpin
        except nl.NetlinkError as err:
            raise KernelError(f"cannot set hairpin mode on {host_name}: {nl.reason(err)}") from None

    def netns_link_delete(self, netns: str | Path, ifname: str, *, gateway4: IPv4Address | None = None,
                          gateway6: IPv6Address | None = None) -> None:
        """Delete ``ifname`` in the namespace; then route its default through ``gateway4``/``gateway6``
        where given: the next endpoint takes over from the one that left (whose routes died with its
        link). Both happen over one socket opened in the namespace, which is most of such a step's cost."""
        if not ns.exists(Path(netns)):
            return
        with nl.inside(netns) as ipr:
            self._delete(ipr, ifname)
            for gateway in (gateway4, gateway6):
                if gateway is not None:
                    _set_default(ipr, netns, gateway)

    def netns_set_default_routes(self, netns: str | Path, *, gateway4: IPv4Address | None,
                                 gateway6: IPv6Address | None) -> None:
        with nl.inside(netns) as ipr:
            for family, dst, gateway in ((nl.AF_INET, "0.0.0.0/0", gateway4), (nl.AF_INET6, "::/0", gateway6)):
                if gateway is not None:
                    _set_default(ipr, netns, gateway)
                    continue
                try:
                    ipr.route("del", dst=dst, family=family)
                except nl.NetlinkError as err:
                    if err.code not in (errno.ESRCH, errno.ENOENT):
                        raise KernelError(f"cannot set default route (remove) in {netns}: {nl.reason(err)}") from None

    def netns_links(self, netns: str | Path) -> list[LinkInfo]:
        with nl.inside(netns) as ipr:
            return nl.link_infos(ipr, ipr.get_links())

    def netns_routes(self, netns: str | Path) -> list[dict[str, Any]]:
        with nl.inside(netns) as ipr:
            names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
            out = []
            for family in (nl.AF_INET, nl.AF_INET6):
                for r in ipr.get_routes(family=family, table=nl.MAIN_TABLE):
                    dst = r.get_attr("RTA_DST")
                    out.append({
                        "dst": f"{dst}/{r['dst_len']}" if dst else "default",
                        "gateway": r.get_attr("RTA_GATEWAY"),
                        "dev": names.get(r.get_attr("RTA_OIF")),
                    })
            return out

    # -- host facts ------------------------------------------------------------------------------

    def host_networks(self, version: int | None = None, own_bridges: Iterable[str] = ()) -> list[IPv4Network | IPv6Network]:
        """Networks the host already reaches directly, which a new berth subnet must not overlap; of one IP
        version when given. ``own_bridges`` (berth's networks' bridges, whose subnets berth tracks itself)
        are recognised by the label of their IPv4 gateway address, which every berth bridge has: no dump
        of all links, which would cost O(containers) per network create."""
        ipr = self.ipr
        families = {4: (nl.AF_INET,), 6: (nl.AF_INET6,)}.get(version or 0, (nl.AF_INET, nl.AF_INET6))
        own = set(own_bridges)
        addrs4 = ipr.get_addr(family=nl.AF_INET)
        ours = {a["index"] for a in addrs4 if a.get_attr("IFA_LABEL") in own}
        nets: set[IPv4Network | IPv6Network] = set()
        for family in families:
            for a in (addrs4 if family == nl.AF_INET else ipr.get_addr(family=family)):
                if a["index"] not in ours:
                    nets.add(ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network)
        for family in families:
            for r in ipr.get_routes(family=family):
                dst = r.get_attr("RTA_DST")
                if dst and r["scope"] == nl.RT_SCOPE_LINK and r.get_attr("RTA_OIF") not in ours:
                    nets.add(ip_network(f"{dst}/{r['dst_len']}", strict=False))
        return sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))

    # -- sysctls ---------------------------------------------------------------------------------

    def sysctl_set(self, key: str, value: str) -> None:
        sysctl.write(key, value)
        self._sysctls[key] = value

    def sysctl_get(self, key: str) -> str:
        return sysctl.read(key)

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

    def nft_table(self, family: str, name: str) -> dict[str, Any] | None:
        try:
            items = self._nftables.run(f"list table {family} {name}")
        except KernelError:
            return None
        return {"nftables": items}

    def docker_user_allow(self, bridge: str, mark: str) -> None:
        """On a host running Docker, let ``bridge``'s traffic past Docker's FORWARD policy."""
        try:
            dockeruser.allow(self._nftables, bridge, mark)
        except subprocess.CalledProcessError as err:
            raise KernelError(f"cannot add berth's rule for {bridge} to Docker's {dockeruser.CHAIN} chain: "
                              f"{(err.stderr or b'').decode(errors='replace').strip()}") from None

    def docker_user_revoke(self, bridge: str, mark: str) -> None:
        dockeruser.revoke(self._nftables, bridge, mark)

    # -- inspection ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything berth-owned in comparable form, for "nothing changed" assertions: marked links,
        namespace files in the directories berth used, berth's nft tables and the sysctls it set."""
        links = sorted(
            (l.name, l.kind, l.alias, l.master, l.mtu, l.up, tuple(sorted(map(str, l.addresses))))
            for l in self.links()
        )
        netns = sorted(p for d in self._netns_dirs for p in ns.mounted(d))
        tables = {f"{fam} {name}": self.nft_table(fam, name) for fam, name in SNAPSHOT_TABLES}
        return {"links": links, "netns": netns, "nft": tables, "sysctls": self._sysctls_now()}

    def _sysctls_now(self) -> dict[str, str]:
        """Current values of the sysctls berth set; an interface's vanish with the interface."""
        now = {}
        for key in list(self._sysctls):
            try:
                now[key] = sysctl.read(key)
            except KernelError:
                continue
        return now

    def release_thread(self) -> None:
        """The calling thread is about to end: close the netlink socket it opened."""
        self._sockets.release()

    def close(self) -> None:
        self._sockets.close()
        with self._nft_lock:
            if self._nft is not None:
                self._nft.close()
                self._nft = None


def _set_default(ipr: nl.IPRoute, netns: str | Path, gateway: IPv4Address | IPv6Address) -> None:
    """The namespace's default route of ``gateway``'s family, via it: one atomic replace, so the
    namespace is never left without a default route."""
    family, dst = (nl.AF_INET, "0.0.0.0/0") if gateway.version == 4 else (nl.AF_INET6, "::/0")
    try:
        ipr.route("replace", dst=dst, gateway=str(gateway), family=family)
    except nl.NetlinkError as err:
        raise KernelError(f"cannot set default route via {gateway} in {netns}: {nl.reason(err)}") from None
