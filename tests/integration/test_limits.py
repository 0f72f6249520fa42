"""Limits with clear errors: the Linux bridge's 1023-port ceiling."""

from __future__ import annotations

import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

FILL = textwrap.dedent("""
    import sys
    from ipaddress import ip_interface
    from pathlib import Path
    from berth.errors import KernelError
    from berth.kernel.host import Kernel
    k = Kernel()
    k.bridge_ensure("berth-full", alias="berth:full", mtu=1500, addresses=[ip_interface("10.88.0.1/16")])
    ns = Path(sys.argv[1]) / "fill-ns"
    k.netns_create(ns)
    for i in range(1024):
        try:
            k.veth_attach(netns=ns, host_name=f"bvfill{i}", alias="berth:full:x", bridge="berth-full",
                          ifname=f"eth{i}", mac="02:42:0a:58:%02x:%02x" % (i // 256, i % 256), mtu=1500,
                          addresses=[])
        except KernelError as err:
            print(i, err)
            break
    print("ports", k.bridge_port_count("berth-full"), "leftover", k.link_get(f"bvfill{i}") is not None)
""")


def test_the_1024th_port_is_refused_clearly_and_leaves_nothing(bare_host):
    result = bare_host.run([sys.executable, "-c", FILL, str(bare_host.tmp)], timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1023 network berth-full is full: a Linux bridge takes at most 1023 ports"
    assert lines[1] == "ports 1023 leftover False"
