"""berth's nftables rules as data: a fixed rule set, and networks as set elements."""

from __future__ import annotations

import json
import os
from ipaddress import ip_network
from pathlib import Path

import pytest

from berth.firewall import rules

GOLDEN = Path(__file__).parent.parent / "golden" / "firewall"


def golden(name: str, data: object) -> None:
    """Compare with the reviewed golden file; ``BERTH_UPDATE_GOLDEN=1`` rewrites it after a deliberate change."""
    path = GOLDEN / name
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if os.environ.get("BERTH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_base_ruleset_matches_golden():
    golden("base.json", rules.base_ruleset())


def test_network_elements_match_golden():
    subnets = [ip_network("10.1.0.0/24"), ip_network("fd00:1::/64")]
    golden("network-add.json", rules.network_elements("berth-abc", subnets, icc=True, masquerade=True,
                                                      internal=False, op="add"))
    golden("network-internal-icc-off-delete.json", rules.network_elements(
        "berth-x", subnets[:1], icc=False, masquerade=True, internal=True, op="delete"))


def test_base_ruleset_touches_only_berths_tables():
    for cmd in rules.base_ruleset():
        (verb, body), = cmd.items()
        (kind, spec), = body.items()
        assert spec.get("table", spec.get("name")) == "berth" or kind == "table" and spec["name"] == "berth"


def test_policies_are_accept_so_other_traffic_is_never_decided_by_berth():
    chains = [c["add"]["chain"] for c in rules.base_ruleset() if "chain" in c.get("add", {})]
    assert all(c["policy"] == "accept" for c in chains if "hook" in c)


@pytest.mark.parametrize("op", ["add", "delete"])
def test_delete_is_idempotent_by_construction(op):
    cmds = rules.network_elements("b", [ip_network("10.0.0.0/24")], icc=True, masquerade=True, internal=False, op=op)
    verbs = [next(iter(c)) for c in cmds]
    if op == "delete":
        assert verbs == ["add", "delete"] * (len(verbs) // 2)  # each delete is preceded by an add of the same element
    else:
        assert set(verbs) == {"add"}


def test_internal_networks_are_never_masqueraded():
    cmds = rules.network_elements("b", [ip_network("10.0.0.0/24")], icc=True, masquerade=True, internal=True, op="add")
    names = {c["add"]["element"]["name"] for c in cmds}
    assert "masq4" not in names and "internal" in names


def test_icc_off_ports_and_published_ports_are_separate_elements():
    icc = rules.icc_off_elements("bveth0123456789", "add")
    assert icc[0]["add"]["element"]["name"] == "icc_off_ports" and icc[0]["add"]["element"]["family"] == "bridge"
    published = rules.published_elements([rules.Published("tcp", None, 8080, "10.0.0.2", 80),
                                          rules.Published("udp", "127.0.0.1", 53, "10.0.0.3", 53)], "add")
    assert [c["add"]["element"]["name"] for c in published] == ["pub_any4", "pub_ip4"]


def test_published_ports_go_to_the_maps_of_their_container_address_family():
    ports = [rules.Published("tcp", None, 8080, "10.0.0.2", 80), rules.Published("tcp", None, 8080, "fd00::2", 80),
             rules.Published("udp", "2001:db8::1", 53, "fd00::2", 53)]
    published = rules.published_elements(ports, "add")
    assert [(c["add"]["element"]["name"], c["add"]["element"]["elem"]) for c in published] == [
        ("pub_any4", [[{"concat": ["tcp", 8080]}, {"concat": ["10.0.0.2", 80]}]]),
        ("pub_any6", [[{"concat": ["tcp", 8080]}, {"concat": ["fd00::2", 80]}]]),
        ("pub_ip6", [[{"concat": ["udp", "2001:db8::1", 53]}, {"concat": ["fd00::2", 53]}]]),
    ]
    maps = {line.split()[4] for line in rules.publish_text().splitlines() if line.startswith("add map")}
    assert maps == set(rules.PUBLISH_MAPS)
    flushed = [c["flush"]["map"]["name"] for c in rules.published_replace(ports) if "flush" in c]
    assert flushed == list(rules.PUBLISH_MAPS)


def _declared_sets() -> dict[tuple[str, str], dict]:
    return {(c["add"]["set"]["family"], c["add"]["set"]["name"]): c["add"]["set"]
            for c in rules.base_ruleset() if "set" in c.get("add", {})}


def test_every_element_goes_to_a_set_the_base_ruleset_declares_with_its_key_shape():
    declared = _declared_sets()
    cmds = rules.network_elements("berth-abc", [ip_network("10.1.0.0/24"), ip_network("fd00:1::/64")], icc=True,
                                  masquerade=True, internal=True, op="delete")
    cmds += rules.icc_off_elements("bveth0123456789", "delete")
    for cmd in cmds:
        (element,) = (body["element"] for body in cmd.values())
        spec = declared[(element["family"], element["name"])]
        for elem in element["elem"]:
            if isinstance(spec["type"], list):
                assert len(elem["concat"]) == len(spec["type"])
            elif "interval" in spec.get("flags", []):
                assert "prefix" in elem
            else:
                assert isinstance(elem, str)


def test_a_network_without_masquerade_or_icc_adds_only_its_bridge_and_subnets():
    cmds = rules.network_elements("b", [ip_network("10.0.0.0/24")], icc=False, masquerade=False, internal=False, op="add")
    assert [c["add"]["element"]["name"] for c in cmds] == ["bridges", "subnets4"]


def test_families_without_subnets_produce_no_empty_element_commands():
    cmds = rules.network_elements("b", [ip_network("fd00::/64")], icc=True, masquerade=True, internal=False, op="add")
    assert {c["add"]["element"]["name"] for c in cmds} == {"bridges", "icc", "subnets6", "masq6"}
    assert all(c["add"]["element"]["elem"] for c in cmds)


def test_remove_all_deletes_exactly_berths_two_tables():
    deleted = [c["delete"]["table"] for c in rules.remove_all() if "delete" in c]
    assert deleted == [{"family": "inet", "name": "berth"}, {"family": "bridge", "name": "berth"}]
