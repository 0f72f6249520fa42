#!/usr/bin/env bash
# Install the bench's anchors and tools (Debian packages) and matplotlib for the charts (PyPI; the
# bench's only extra Python dependency). Run as root once before `python3 bench/run.py`; berth itself
# is installed by scripts/install. Anchors that are missing are reported as skipped, never faked.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# containernetworking-plugins: the CNI reference bridge + host-local plugins (/usr/lib/cni)
# netavark: Podman's network backend; iperf3: the data plane; busybox-static: the containers' rootfs
# iproute2/util-linux/iptables: ip, ss, nsenter, unshare, and the firewall CNI and netavark 1.4 use
apt-get install -y -qq containernetworking-plugins netavark iperf3 busybox-static iproute2 util-linux iptables
python3 -m pip install -q matplotlib
