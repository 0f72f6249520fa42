"""Coexistence with Docker: narrow accept rules for berth's bridges in Docker's ``DOCKER-USER`` chain.

A host running Docker sets the FORWARD policy to DROP and loads br_netfilter, so even traffic inside a
berth bridge would be dropped by Docker's table. Docker documents ``DOCKER-USER`` as the place for the
administrator's own rules; berth adds two rules per bridge there (``-i <bridge>`` and ``-o <bridge>``,
commented with the bridge's mark), and removes exactly those when the network goes. berth's own
policy (isolation, ICC, internal) still applies in berth's tables: a packet must pass both.

Docker manages that chain with the iptables tools, so berth uses them too (never a raw nft edit of
Docker's table, which iptables-nft might no longer be able to list). This runs once per network
create/remove, and only on hosts where the chain exists; nothing runs on other hosts.
"""

from __future__ import annotations

import shutil
import subprocess

from berth.kernel.nft import Nftables

CHAIN = "DOCKER-USER"
TOOLS = (("ip", "iptables"), ("ip6", "ip6tables"))


def _tools(nft: Nftables) -> list[str]:
    """The iptables tools whose table has Docker's chain (checked through libnftables, no subprocess)."""
    found = []
    for family, tool in TOOLS:
        try:
            nft.run(f"list chain {family} filter {CHAIN}")
        except Exception:  # noqa: BLE001 - no such chain: Docker (or its IPv6 rules) is not there
            continue
        if shutil.which(tool):
            found.append(tool)
    return found


def _rules(bridge: str, mark: str) -> list[list[str]]:
    return [["-i", bridge, "-m", "comment", "--comment", mark, "-j", "ACCEPT"],
            ["-o", bridge, "-m", "comment", "--comment", mark, "-j", "ACCEPT"]]


def allow(nft: Nftables, bridge: str, mark: str) -> list[str]:
    """Insert berth's accept rules for ``bridge`` (idempotent); returns the tools that had the chain."""
    tools = _tools(nft)
    for tool in tools:
        for rule in _rules(bridge, mark):
            if subprocess.run([tool, "-w", "-C", CHAIN, *rule], capture_output=True).returncode != 0:
                subprocess.run([tool, "-w", "-I", CHAIN, *rule], capture_output=True, check=True)
    return tools


def revoke(nft: Nftables, bridge: str, mark: str) -> None:
    """Remove berth's rules for ``bridge`` from Docker's chain; missing rules count as removed."""
    for tool in _tools(nft):
        for rule in _rules(bridge, mark):
            while subprocess.run([tool, "-w", "-D", CHAIN, *rule], capture_output=True).returncode == 0:
                pass
