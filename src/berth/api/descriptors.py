"""berthd's open-file budget: refuse work that needs descriptors before running short, not half-way.

Every network holds DNS sockets and every running container a pidfd, so a busy berthd can reach its
descriptor limit. An operation that ran out half-way could not even undo itself (undoing needs
netlink sockets too), so requests that add objects are refused up front while fewer than ``HEADROOM``
descriptors are free: one clear line naming the limit and what to do, nothing changed. Requests that
remove things are always served: they are how a user frees descriptors.
"""

from __future__ import annotations

import os
import resource

from berth.errors import Unavailable

HEADROOM = 64  # descriptors one operation may need at once (netlink, nft, sqlite, pipes, temp files)


def raise_soft_limit() -> None:
    """Use the whole hard limit, as Go programs such as dockerd do at start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ensure_headroom() -> None:
    """Refuse (503) when fewer than ``HEADROOM`` descriptors are left under the soft limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return
    used = len(os.listdir("/proc/self/fd"))
    if soft - used < HEADROOM:
        raise Unavailable(f"too many open files: berthd uses {used} of its limit of {soft} file descriptors; "
                          "raise the limit (LimitNOFILE= in berthd.service, or ulimit -n before starting berthd) "
                          "or remove containers and networks, then retry")
