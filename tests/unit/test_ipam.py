"""IPAM: automatic subnets, request validation with Docker's messages, lowest-free allocation."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from berth.config import DEFAULT_POOLS, DEFAULT_POOLS_V6
from berth.errors import AddressInUse, InvalidParameter, PoolExhausted
from berth.ipam.allocator import SubnetAllocator, mac_for
from berth.ipam.config import echo, normalize
from berth.ipam.pools import nameservers, pick_subnet


def test_pick_subnet_takes_the_lowest_free_candidate():
    assert pick_subnet(DEFAULT_POOLS, [], []) == ip_network("172.17.0.0/16")
    used = [ip_network("172.17.0.0/16"), ip_network("172.19.0.0/16")]
    assert pick_subnet(DEFAULT_POOLS, used, []) == ip_network("172.18.0.0/16")


def test_pick_subnet_skips_host_routes_nameservers_and_partial_overlaps():
    reserved = [ip_network("172.17.5.0/24"), ip_network("172.18.0.53/32")]
    assert pick_subnet(DEFAULT_POOLS, [], reserved) == ip_network("172.19.0.0/16")


def test_pick_subnet_moves_on_to_the_192_168_pool_and_then_runs_out():
    used = [ip_network("172.16.0.0/12")]
    assert pick_subnet(DEFAULT_POOLS, used, []) == ip_network("192.168.0.0/20")
    with pytest.raises(PoolExhausted, match="could not find an available, non-overlapping IPv4 address pool"):
        pick_subnet(DEFAULT_POOLS, [*used, ip_network("192.168.0.0/16")], [])


def test_ipv6_pool_gives_a_64():
    assert pick_subnet(DEFAULT_POOLS_V6, [], []).prefixlen == 64


def test_nameservers_are_parsed_and_garbage_ignored():
    text = "# comment\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\n"
    assert nameservers(text) == [ip_address("10.0.0.53"), ip_address("fe80::1")]


def test_normalize_applies_docker_defaults_and_echo_shape():
    [cfg] = normalize([{"Subnet": "10.1.0.1/16", "IPRange": "10.1.5.0/24", "AuxiliaryAddresses": {"a": "10.1.0.5"}}],
                      enable_ipv6=False)
    assert str(cfg.subnet) == "10.1.0.0/16" and str(cfg.gateway) == "10.1.0.1"
    assert echo(cfg) == {"Subnet": "10.1.0.0/16", "IPRange": "10.1.5.0/24", "Gateway": "10.1.0.1",
                         "AuxiliaryAddresses": {"a": "10.1.0.5"}}
    [v6] = normalize([{"Subnet": "fd77::/64"}], enable_ipv6=True)
    assert echo(v6) == {"Subnet": "fd77::/64"} and str(v6.gateway) == "fd77::1"


@pytest.mark.parametrize("config, message", [
    ([{"Subnet": "10.1.0.0/33"}], "Invalid subnet 10.1.0.0/33 : invalid CIDR address: 10.1.0.0/33"),
    ([{"Gateway": "10.1.0.1"}], "every ip-range or gateway must have a corresponding subnet"),
    ([{"Subnet": "10.1.0.0/16", "Gateway": "10.2.0.1"}], "no matching subnet for gateway 10.2.0.1"),
    ([{"Subnet": "10.1.0.0/16", "IPRange": "10.2.0.0/24"}], "no matching subnet for range 10.2.0.0/24"),
    ([{"Subnet": "10.1.0.0/16", "AuxiliaryAddresses": {"x": "10.2.0.1"}}], "no matching subnet for aux-address 10.2.0.1"),
    ([{"Subnet": "10.1.0.0/16"}, {"Subnet": "10.1.2.0/24"}], "multiple overlapping subnet configuration is not supported"),
    ([{"Subnet": "fd00::/64"}], "IPv6 is not enabled"),
])
def test_normalize_refuses_bad_requests(config, message):
    with pytest.raises(InvalidParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize(config, enable_ipv6=False)


def test_allocator_hands_out_lowest_free_and_reuses_freed():
    alloc = SubnetAllocator(ip_network("10.0.0.0/29"), reserved=[ip_address("10.0.0.1")])
    got = [str(alloc.allocate()) for _ in range(5)]
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(PoolExhausted):
        alloc.allocate()
    alloc.release(ip_address("10.0.0.4"))
    alloc.release(ip_address("10.0.0.3"))
    alloc.release(ip_address("10.0.0.3"))  # idempotent
    assert [str(alloc.allocate()), str(alloc.allocate())] == ["10.0.0.3", "10.0.0.4"]


def test_allocator_static_claims_and_ranges():
    alloc = SubnetAllocator(ip_network("10.77.0.0/16"), ip_range=ip_network("10.77.5.0/24"),
                            reserved=[ip_address("10.77.0.254")])
    assert str(alloc.allocate()) == "10.77.5.0"  # Docker's quirk: the range's first address is handed out
    alloc.claim(ip_address("10.77.9.9"))  # a static address may lie outside the range
    with pytest.raises(AddressInUse, match="Address already in use"):
        alloc.claim(ip_address("10.77.9.9"))
    with pytest.raises(AddressInUse):
        alloc.claim(ip_address("10.77.0.254"))
    with pytest.raises(InvalidParameter, match="does not belong to any of this network's subnets"):
        alloc.claim(ip_address("10.78.0.1"))


def test_allocator_does_not_materialise_ipv6_ranges():
    alloc = SubnetAllocator(ip_network("fd00::/64"), reserved=[ip_address("fd00::1")])
    assert str(alloc.allocate()) == "fd00::2"
    assert alloc.capacity > 2**63


def test_mac_follows_docker():
    assert mac_for(ip_address("172.17.0.2")) == "02:42:ac:11:00:02"
    assert mac_for(ip_address("10.77.5.77")) == "02:42:0a:4d:05:4d"
