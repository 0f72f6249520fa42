"""Planning published ports as Docker does, both families: which bindings, which host port, which refusal.

No kernel: the engine context is a stand-in holding the other containers, and host sockets are a set
of (family, port) pairs the host's processes hold.
"""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv6Interface
from types import SimpleNamespace
from typing import Any

import pytest

from berth.engine.ports import Ports, as_records
from berth.errors import Forbidden, InvalidParameter
from berth.firewall.rules import Published
from berth.model import Attachment, Container, ContainerState, Network

V4, V6 = "10.1.0.2", "fd00:1::2"


def container(bindings: dict[str, Any], cid: str = "a" * 64, ports: list[Published] | None = None) -> Container:
    state = ContainerState(status="running", ports=as_records(ports or []))
    return Container(cid, "/web", "bb", "sha256:bb", "2026-01-01T00:00:00Z", {}, {"PortBindings": bindings}, state)


def owner(ipv6: bool = True) -> Attachment:
    return Attachment("a" * 64, "n1", 0, ipv4=IPv4Interface(f"{V4}/24"),
                      ipv6=IPv6Interface(f"{V6}/64") if ipv6 else None)


def network(**options: str) -> Network:
    return Network("n1", "dual", "bridge", "local", "", True, False, False, {}, options, {})


def ports(*others: Container, host_busy: set[tuple[bool, int]] = frozenset()) -> Ports:  # type: ignore[assignment]
    ctx = SimpleNamespace(store=SimpleNamespace(containers=lambda: list(others)),
                          kernel=SimpleNamespace(sysctl_get=lambda key: "40000 40009"))
    planner = Ports(ctx)  # type: ignore[arg-type]
    planner._host_free = lambda proto, host_ip, port, v6: (v6, port) not in host_busy  # type: ignore[method-assign]
    return planner


def test_no_host_address_publishes_on_both_families_with_one_port() -> None:
    planned = ports().plan(container({"80/tcp": [{"HostPort": "8080"}]}), owner(), network())
    assert planned == [Published("tcp", None, 8080, V4, 80), Published("tcp", None, 8080, V6, 80)]
    ephemeral = ports(host_busy={(True, port) for port in range(40000, 40009)}).plan(
        container({"80/tcp": [{}]}), owner(), network())
    assert [p.host_port for p in ephemeral] == [40009, 40009]  # the only port free on both


def test_ipv4_only_without_an_ipv6_container_address_or_with_a_bound_default() -> None:
    assert ports().plan(container({"80/tcp": [{"HostPort": "8080"}]}), owner(ipv6=False), network()) == [
        Published("tcp", None, 8080, V4, 80)]
    bound = network(**{"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
    assert ports().plan(container({"80/tcp": [{"HostPort": "8080"}]}), owner(), bound) == [
        Published("tcp", "127.0.0.1", 8080, V4, 80)]


def test_an_explicit_address_binds_its_family_alone() -> None:
    planned = ports().plan(container({"53/udp": [{"HostIp": "2001:db8:0::1", "HostPort": "5353"}],
                                      "80/tcp": [{"HostIp": "::", "HostPort": "8080"}]}), owner(), network())
    assert planned == [Published("udp", "2001:db8::1", 5353, V6, 53), Published("tcp", None, 8080, V6, 80)]


def test_ipv6_bindings_that_cannot_work_are_refused_with_the_reason() -> None:
    with pytest.raises(InvalidParameter, match=r"cannot publish on \[::1\]: IPv6 has no route_localnet"):
        ports().plan(container({"80/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}), owner(), network())
    with pytest.raises(InvalidParameter, match=r"cannot publish on \[2001:db8::1\]: the container has no IPv6 "
                                               r"address on network dual"):
        ports().plan(container({"80/tcp": [{"HostIp": "2001:db8::1"}]}), owner(ipv6=False), network())


def test_conflicts_are_per_family_with_dockers_message() -> None:
    v6_holder = container({}, "b" * 64, [Published("tcp", None, 8080, "fd00:1::9", 80)])
    with pytest.raises(Forbidden, match="^Bind for :::8080 failed: port is already allocated$"):
        ports(v6_holder).plan(container({"80/tcp": [{"HostPort": "8080"}]}), owner(), network())
    # the IPv4 side alone does not clash with an IPv6 binding of the same port
    assert ports(v6_holder).plan(container({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}), owner(),
                                 network()) == [Published("tcp", None, 8080, V4, 80)]
    one_address = container({}, "b" * 64, [Published("tcp", "2001:db8::1", 8080, "fd00:1::9", 80)])
    with pytest.raises(Forbidden, match="^Bind for :::8080 failed"):
        ports(one_address).plan(container({"80/tcp": [{"HostIp": "::", "HostPort": "8080"}]}), owner(), network())
    assert ports(one_address).plan(container({"80/tcp": [{"HostIp": "2001:db8::2", "HostPort": "8080"}]}),
                                   owner(), network()) == [Published("tcp", "2001:db8::2", 8080, V6, 80)]
    with pytest.raises(Forbidden, match="^Bind for :::9090 failed"):
        ports(host_busy={(True, 9090)}).plan(container({"80/tcp": [{"HostPort": "9090"}]}), owner(), network())
