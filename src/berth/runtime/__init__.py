"""Container runtime: images (rootfs store), the per-container monitor, spawning, exec and /etc files.

Kept import-free on purpose: the monitor and nsexec helpers run ``python -m berth.runtime.<x>`` once per
container or exec, so pulling in anything here would cost every one of them start-up time and memory.
"""
