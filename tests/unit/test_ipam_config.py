"""A network's IPAM request: Docker's defaults, normalisation and refusals with Docker's words."""

from __future__ import annotations

import re
from ipaddress import ip_address, ip_network

import pytest

from berth.errors import Forbidden, InvalidParameter
from berth.ipam.config import automatic, check_pool_free, echo, normalize, overlaps


def test_host_bits_are_dropped_and_the_gateway_defaults_to_the_first_host():
    [cfg] = normalize([{"Subnet": "10.1.0.1/16", "IPRange": "10.1.5.0/24", "AuxiliaryAddresses": {"a": "10.1.0.5"}}],
                      enable_ipv6=False)
    assert (cfg.subnet, cfg.gateway, cfg.gateway_given) == (ip_network("10.1.0.0/16"), ip_address("10.1.0.1"), False)
    assert echo(cfg) == {"Subnet": "10.1.0.0/16", "IPRange": "10.1.5.0/24", "Gateway": "10.1.0.1",
                         "AuxiliaryAddresses": {"a": "10.1.0.5"}}


def test_ipv6_gateway_is_shown_only_when_given_as_docker_does():
    [v6] = normalize([{"Subnet": "fd77::/64"}], enable_ipv6=True)
    assert echo(v6) == {"Subnet": "fd77::/64"} and v6.gateway == ip_address("fd77::1")
    [v6] = normalize([{"Subnet": "fd77::/64", "Gateway": "fd77::fe"}], enable_ipv6=True)
    assert echo(v6) == {"Subnet": "fd77::/64", "Gateway": "fd77::fe"}


def test_entries_without_subnet_ask_for_an_automatic_one():
    assert normalize([{}, {"Subnet": ""}, None], enable_ipv6=False) == []  # type: ignore[list-item]
    assert automatic(ip_network("172.18.0.0/16")).gateway == ip_address("172.18.0.1")


def test_a_docker_style_full_request_is_accepted():
    cfgs = normalize([
        {"Subnet": "10.77.0.0/16", "Gateway": "10.77.0.254", "IPRange": "10.77.5.0/24",
         "AuxiliaryAddresses": {"host1": "10.77.0.5", "host2": "10.77.0.6"}},
        {"Subnet": "fd77::/64"},
    ], enable_ipv6=True)
    assert [str(c.subnet) for c in cfgs] == ["10.77.0.0/16", "fd77::/64"]
    assert cfgs[0].gateway_given and str(cfgs[0].gateway) == "10.77.0.254"


@pytest.mark.parametrize("config, message", [
    ([{"Subnet": "10.1.0.0/33"}], "Invalid subnet 10.1.0.0/33 : invalid CIDR address: 10.1.0.0/33"),
    ([{"Subnet": "bogus"}], "Invalid subnet bogus : invalid CIDR address: bogus"),
    ([{"Subnet": "10.1.0.0/16", "IPRange": "10.1.0.0/40"}], "Invalid subnet 10.1.0.0/40 : invalid CIDR address: 10.1.0.0/40"),
    ([{"Gateway": "10.1.0.1"}], "every ip-range or gateway must have a corresponding subnet"),
    ([{"IPRange": "10.1.0.0/24"}], "every ip-range or gateway must have a corresponding subnet"),
    ([{"AuxiliaryAddresses": {"a": "10.1.0.9"}}], "no matching subnet for aux-address 10.1.0.9"),
    ([{"Subnet": "10.1.0.0/16", "Gateway": "10.2.0.1"}], "no matching subnet for gateway 10.2.0.1"),
    ([{"Subnet": "10.1.0.0/16", "Gateway": "fd00::1"}], "no matching subnet for gateway fd00::1"),
    ([{"Subnet": "10.1.0.0/16", "Gateway": "nope"}], "invalid gateway nope: invalid address"),
    ([{"Subnet": "10.1.0.0/16", "IPRange": "10.2.0.0/24"}], "no matching subnet for range 10.2.0.0/24"),
    ([{"Subnet": "10.1.0.0/16", "IPRange": "10.0.0.0/8"}], "no matching subnet for range 10.0.0.0/8"),
    ([{"Subnet": "10.1.0.0/16", "AuxiliaryAddresses": {"x": "10.2.0.1"}}], "no matching subnet for aux-address 10.2.0.1"),
    ([{"Subnet": "10.1.0.0/16", "AuxiliaryAddresses": {"x": "??"}}], "invalid auxiliary address x: invalid address"),
    ([{"Subnet": "10.1.0.0/16"}, {"Subnet": "10.1.2.0/24"}], "multiple overlapping subnet configuration is not supported"),
    ([{"Subnet": "10.1.0.0/16"}, {"Subnet": "10.1.0.0/16"}], "multiple overlapping subnet configuration is not supported"),
    ([{"Subnet": "fd00::/64"}], "IPv6 subnet fd00::/64 given but IPv6 is not enabled on the network"),
    ([{"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.0"}], "failed to allocate gateway (10.1.0.0): Address already in use"),
    ([{"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.255"}], "failed to allocate gateway (10.1.0.255): Address already in use"),
    ([{"Subnet": "10.1.0.0/24", "AuxiliaryAddresses": {"gw": "10.1.0.1"}}],
     "failed to allocate secondary ip address (gw:10.1.0.1): Address already in use"),
    ([{"Subnet": "10.1.0.0/24", "AuxiliaryAddresses": {"a": "10.1.0.9", "b": "10.1.0.9"}}],
     "failed to allocate secondary ip address (b:10.1.0.9): Address already in use"),
])
def test_bad_requests_are_refused_with_dockers_message(config, message):
    with pytest.raises(InvalidParameter, match="^" + re.escape(message) + "$"):
        normalize(config, enable_ipv6=False)


def test_ipv6_gateway_may_not_be_the_subnet_router_address():
    with pytest.raises(InvalidParameter, match=re.escape("failed to allocate gateway (fd00::)")):
        normalize([{"Subnet": "fd00::/64", "Gateway": "fd00::"}], enable_ipv6=True)
    [cfg] = normalize([{"Subnet": "fd00::/64", "Gateway": "fd00::ffff:ffff:ffff:ffff"}], enable_ipv6=True)
    assert str(cfg.gateway) == "fd00::ffff:ffff:ffff:ffff"  # IPv6 has no broadcast address


def test_overlap_with_other_networks_is_forbidden_and_partial_overlaps_count():
    [mine] = normalize([{"Subnet": "10.99.0.128/25"}], enable_ipv6=False)
    others = [ip_network("10.99.0.0/24"), ip_network("fd00::/64")]
    assert overlaps([mine], others) and not overlaps([mine], [ip_network("10.98.0.0/16")])
    assert not overlaps([ip_network("::/0")], [ip_network("0.0.0.0/0")])  # families never overlap
    with pytest.raises(Forbidden, match="^Pool overlaps with other one on this address space$"):
        check_pool_free([mine], others)
    check_pool_free([mine], [ip_network("10.99.1.0/24")])
