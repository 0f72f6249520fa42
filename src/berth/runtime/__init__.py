"""Container runtime: images (rootfs store), the per-container monitor, spawning, exec and /etc files.

Kept import-free on purpose: the fork server (``python -m berth.runtime.forkserver``) loads only what
monitors and exec helpers run, and every module it imports is memory each of them shares or copies.
"""
