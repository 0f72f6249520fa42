#!/usr/bin/env bash
# Install the bench's anchors and tools (Debian packages: the CNI reference plugins, netavark,
# aardvark-dns, dnsperf, iperf3, docker.io) and matplotlib for the charts. Run as root once before
# `/opt/berth/venv/bin/python3 bench/run.py`. Anchors that are missing are reported as skipped, never faked.
# The package names live in scripts/install alone.
set -euo pipefail
exec "$(dirname "$0")/../scripts/install" --bench
