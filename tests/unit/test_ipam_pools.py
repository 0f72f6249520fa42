"""Automatic subnets: lowest free candidate of Docker's default pools, host ranges avoided."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.config import DEFAULT_POOLS, DEFAULT_POOLS_V6
from berth.errors import PoolExhausted
from berth.ipam.pools import nameservers, pick_subnet


def test_first_network_gets_172_17_and_the_next_one_the_lowest_free():
    assert pick_subnet(DEFAULT_POOLS, [], []) == ip_network("172.17.0.0/16")
    used = [ip_network("172.17.0.0/16"), ip_network("172.19.0.0/16")]
    assert pick_subnet(DEFAULT_POOLS, used, []) == ip_network("172.18.0.0/16")


def test_host_routes_nameservers_and_partial_overlaps_are_avoided():
    reserved = [ip_network("172.17.5.0/24"), ip_network("172.18.0.53/32")]
    assert pick_subnet(DEFAULT_POOLS, [], reserved) == ip_network("172.19.0.0/16")


def test_a_wide_host_route_blocks_every_candidate_inside_it():
    assert pick_subnet(DEFAULT_POOLS, [], [ip_network("172.16.0.0/12")]) == ip_network("192.168.0.0/20")


def test_ipv6_host_routes_do_not_block_ipv4_candidates():
    assert pick_subnet(DEFAULT_POOLS, [ip_network("::/0")], []) == ip_network("172.17.0.0/16")


def test_exhaustion_has_dockers_message_per_family():
    full4 = [ip_network("172.16.0.0/12"), ip_network("192.168.0.0/16")]
    with pytest.raises(PoolExhausted, match="^could not find an available, non-overlapping IPv4 address pool among "
                                            "the defaults to assign to the network$"):
        pick_subnet(DEFAULT_POOLS, full4, [])
    with pytest.raises(PoolExhausted, match="non-overlapping IPv6 address pool"):
        pick_subnet(DEFAULT_POOLS_V6, [ip_network("fd42:b37e::/48")], [])


def test_exactly_31_automatic_ipv4_networks_fit_in_the_defaults():
    taken = []
    for _ in range(31):
        taken.append(pick_subnet(DEFAULT_POOLS, taken, []))
    assert taken[-1] == ip_network("192.168.240.0/20") and len(set(taken)) == 31
    with pytest.raises(PoolExhausted):
        pick_subnet(DEFAULT_POOLS, taken, [])


def test_ipv6_pool_hands_out_64s_and_skips_used_ones_without_walking_them():
    taken = [ip_network(f"fd42:b37e:0:{i:x}::/64") for i in range(5000)]
    assert pick_subnet(DEFAULT_POOLS_V6, taken, []) == ip_network("fd42:b37e:0:1388::/64")


def _naive(pools, blocked):
    """The definition, one candidate at a time: a reference for the fast search."""
    for base, size in pools:
        for candidate in ip_network(base).subnets(new_prefix=size):
            if not any(b.version == candidate.version and b.overlaps(candidate) for b in blocked):
                return candidate
    return None


_blocked = st.lists(
    st.builds(lambda a, p: ip_network((a, p), strict=False),
              st.integers(0xAC100000, 0xC0A8FFFF), st.integers(8, 32)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_blocked, _blocked)
def test_fast_search_agrees_with_the_definition(in_use, reserved):
    expected = _naive(DEFAULT_POOLS, [*in_use, *reserved])
    if expected is None:
        with pytest.raises(PoolExhausted):
            pick_subnet(DEFAULT_POOLS, in_use, reserved)
    else:
        assert pick_subnet(DEFAULT_POOLS, in_use, reserved) == expected


def test_nameservers_are_parsed_and_garbage_ignored():
    text = "# comment\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\nnameserver\n"
    assert nameservers(text) == [ip_address("10.0.0.53"), ip_address("fe80::1")]
