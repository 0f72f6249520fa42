"""Make a fresh mount namespace's mounts private, also where the root is not a mount point.

``unshare --propagation private`` runs ``mount --make-rprivate /``, which the kernel refuses (EINVAL)
when ``/`` is not a mount point: inside a chroot, such as a freshly bootstrapped Debian root a newcomer
may try berth in. The kernel refuses ``pivot_root`` there too, so containers could not start either.
Callers therefore unshare with ``--propagation unchanged`` and call :func:`private_root` first thing in
the new namespace. Where ``/`` is a mount point it is made private recursively, exactly as unshare would.
Elsewhere every mount visible from the chroot is made private, then the whole root is bind-mounted onto
``holder`` and entered with ``chroot``: the namespace gets a root that is a mount point, and paths look
the same as before.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def mount_points() -> list[str]:
    """This process's mount points, as seen from its root (a chroot hides those outside it)."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4].replace("\\040", " ") for line in lines]


def private_root(holder: Path) -> None:
    """Give this (new, unshared) mount namespace a private root that is a mount point.

    ``holder`` is an empty directory on a visible mount (under a chroot, /tmp is one); the bind lives only
    in this namespace, so from outside it stays an empty directory its creator removes like any other.
    """
    points = mount_points()
    if "/" not in points:
        for point in points:
            subprocess.run(["mount", "--make-rprivate", point], check=True)
        # A mount on the chroot's own (invisible) mount could propagate to the host's: refuse that.
        if not any(holder.is_relative_to(point) for point in points):
            raise RuntimeError(f"the root is not a mount point and {holder} is on no mount of its own: "
                               "run inside `unshare --mount --propagation private`, or with /tmp mounted")
        holder.mkdir(exist_ok=True)
        subprocess.run(["mount", "--rbind", "/", str(holder)], check=True)
        os.chroot(holder)
        os.chdir("/")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
