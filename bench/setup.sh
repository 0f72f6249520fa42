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
# docker.io: dockerd, containerd and runc, started by the bench only inside its throwaway host
# aardvark-dns, dnsperf: the DNS benchmark's anchor and load generator
# No package may start a service while installing: a Docker daemon on the machine itself would rewrite
# its firewall and add a bridge (policy-rc.d is Debian's switch for that).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends containernetworking-plugins netavark iperf3 busybox-static \
    iproute2 util-linux iptables docker.io aardvark-dns dnsperf </dev/null
python3 -m pip install -q matplotlib
