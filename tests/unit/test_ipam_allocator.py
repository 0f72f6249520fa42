"""Addresses inside one subnet: lowest free, Docker's reserved addresses, static claims, MACs."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.errors import AddressInUse, InvalidParameter, PoolExhausted
from berth.ipam.allocator import SubnetAllocator, mac_for, random_mac


def test_lowest_free_address_first_and_freed_ones_reused_at_once():
    alloc = SubnetAllocator(ip_network("10.0.0.0/29"), reserved=[ip_address("10.0.0.1")])
    assert [str(alloc.allocate()) for _ in range(5)] == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert alloc.allocated == 5 == alloc.capacity
    alloc.release(ip_address("10.0.0.4"))
    alloc.release(ip_address("10.0.0.3"))
    alloc.release(ip_address("10.0.0.3"))  # a repeated teardown changes nothing
    assert ip_address("10.0.0.3") not in alloc and ip_address("10.0.0.5") in alloc
    assert [str(alloc.allocate()), str(alloc.allocate())] == ["10.0.0.3", "10.0.0.4"]


def test_a_full_subnet_says_which_network_is_full_as_docker_does():
    alloc = SubnetAllocator(ip_network("10.0.0.0/30"), reserved=[ip_address("10.0.0.1")], network="web (4f2a9c1d0b3e)")
    alloc.allocate()
    with pytest.raises(PoolExhausted, match=r"^no available IPv4 addresses on this network's address pools: "
                                            r"web \(4f2a9c1d0b3e\)$"):
        alloc.allocate()
    with pytest.raises(PoolExhausted, match=r"pools: 10\.0\.0\.0/30$"):
        SubnetAllocator(ip_network("10.0.0.0/30"), reserved=[ip_address("10.0.0.1"), ip_address("10.0.0.2")]).allocate()


def test_ip_range_quirk_and_static_addresses_anywhere_in_the_subnet():
    alloc = SubnetAllocator(ip_network("10.77.0.0/16"), ip_range=ip_network("10.77.5.0/24"),
                            reserved=[ip_address("10.77.0.254")])
    assert str(alloc.allocate()) == "10.77.5.0"  # Docker hands out the range's first address
    alloc.claim(ip_address("10.77.9.9"))  # a static address may lie outside the range
    with pytest.raises(AddressInUse, match="^Address already in use$"):
        alloc.claim(ip_address("10.77.9.9"))
    with pytest.raises(AddressInUse):
        alloc.claim(ip_address("10.77.0.254"))
    with pytest.raises(InvalidParameter, match="^Invalid address 10.78.0.1: It does not belong to any of this "
                                               "network's subnets$"):
        alloc.claim(ip_address("10.78.0.1"))
    with pytest.raises(InvalidParameter):
        alloc.claim(ip_address("fd00::1"))
    alloc.release(ip_address("10.77.9.9"))
    alloc.claim(ip_address("10.77.9.9"))


def test_network_and_broadcast_addresses_are_never_handed_out_even_inside_a_range():
    alloc = SubnetAllocator(ip_network("10.1.0.0/30"), ip_range=ip_network("10.1.0.0/30"))
    assert [str(alloc.allocate()), str(alloc.allocate())] == ["10.1.0.1", "10.1.0.2"]
    assert alloc.capacity == 2
    for addr in ("10.1.0.0", "10.1.0.3"):
        with pytest.raises(AddressInUse):
            alloc.claim(ip_address(addr))


def test_ipv6_subnets_are_never_materialised():
    alloc = SubnetAllocator(ip_network("fd00::/64"), reserved=[ip_address("fd00::1")])
    assert [str(alloc.allocate()) for _ in range(2)] == ["fd00::2", "fd00::3"]
    assert alloc.capacity == 2**64 - 2
    alloc.claim(ip_address("fd00::ffff:ffff:ffff:ffff"))  # no broadcast in IPv6
    with pytest.raises(AddressInUse):
        alloc.claim(ip_address("fd00::"))


def test_restart_rebuilds_by_claiming_stored_addresses_then_continues_lowest_free():
    alloc = SubnetAllocator(ip_network("172.18.0.0/16"), reserved=[ip_address("172.18.0.1")])
    for stored in ("172.18.0.2", "172.18.0.4", "172.18.0.3"):
        alloc.claim(ip_address(stored))
    assert str(alloc.allocate()) == "172.18.0.5"
    alloc.release(ip_address("172.18.0.3"))
    assert str(alloc.allocate()) == "172.18.0.3"


_ops = st.lists(st.tuples(st.sampled_from(["allocate", "claim", "release"]), st.integers(0, 31)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(_ops, st.booleans(), st.sets(st.integers(0, 31), max_size=4))
def test_allocator_agrees_with_the_definition(ops, with_range, reserved_offsets):
    """Every operation compared with the obvious (slow) model: lowest address not taken, not reserved."""
    subnet = ip_network("10.5.0.0/27")
    ip_range = ip_network("10.5.0.8/29") if with_range else None
    reserved = {subnet.network_address + i for i in reserved_offsets}
    alloc = SubnetAllocator(subnet, ip_range, reserved=reserved)
    never = reserved | {subnet.network_address, subnet.broadcast_address}
    dynamic = list((ip_range or subnet))
    used: set[IPv4Address] = set()
    for op, offset in ops:
        addr = subnet.network_address + offset
        if op == "allocate":
            free = [a for a in dynamic if a not in used and a not in never]
            if free:
                assert alloc.allocate() == free[0]
                used.add(free[0])
            else:
                with pytest.raises(PoolExhausted):
                    alloc.allocate()
        elif op == "claim":
            if addr in used or addr in never:
                with pytest.raises(AddressInUse):
                    alloc.claim(addr)
            else:
                alloc.claim(addr)
                used.add(addr)
        else:
            alloc.release(addr)
            used.discard(addr)
        assert alloc.allocated == len(used)
    assert alloc.capacity == len([a for a in dynamic if a not in never])


def test_mac_follows_docker_20_10():
    assert mac_for(ip_address("172.17.0.2")) == "02:42:ac:11:00:02"
    assert mac_for(ip_address("10.77.5.77")) == "02:42:0a:4d:05:4d"


def test_random_mac_is_locally_administered_unicast():
    for _ in range(50):
        first = int(random_mac().split(":")[0], 16)
        assert first & 0x02 and not first & 0x01
