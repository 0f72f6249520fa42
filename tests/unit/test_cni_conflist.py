"""CNI configuration files: .conf to list, validation messages, directory discovery, IPAM ranges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berth.cni import conflist
from berth.errors import InvalidParameter


def test_single_conf_becomes_a_one_plugin_list():
    text = json.dumps({"cniVersion": "0.4.0", "name": "n1", "type": "bridge", "ipam": {"type": "host-local"}})
    assert conflist.parse(text, "f.conf") == {
        "cniVersion": "0.4.0", "name": "n1", "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}]}


@pytest.mark.parametrize("data, message", [
    ("{", "is not valid JSON"),
    ("[]", "is not a JSON object"),
    ('{"cniVersion": "1.0.0", "name": "n"}', 'has neither "plugins" nor "type"'),
    ('{"cniVersion": "1.0.0", "name": "bad name", "plugins": [{"type": "x"}]}', "invalid network name (bad name)"),
    ('{"name": "n", "plugins": [{"type": "x"}]}', "invalid or missing cniVersion None"),
    ('{"cniVersion": "0.2.0", "name": "n", "plugins": [{"type": "x"}]}', "cniVersion 0.2.0 is not supported"),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": []}', '"plugins" must be a non-empty list'),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../sh"}]}', 'plugin 0 has no valid "type"'),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "x", "capabilities": []}]}',
     '"capabilities" must be an object'),
])
def test_invalid_configurations_are_refused_in_one_line(data, message):
    with pytest.raises(InvalidParameter) as caught:
        conflist.parse(data, "/etc/cni/net.d/f.conflist")
    assert message in str(caught.value) and "/etc/cni/net.d/f.conflist" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cni_versions_list_picks_the_highest_readable():
    data = {"cniVersions": ["0.3.1", "1.0.0", "9.0.0"], "name": "n", "plugins": [{"type": "x"}]}
    assert conflist.validate(data, "f")["cniVersion"] == "1.0.0"


def test_discovery_in_name_order_first_name_wins_invalid_skipped(tmp_path: Path):
    def put(name: str, net: str) -> None:
        (tmp_path / name).write_text(json.dumps({"cniVersion": "1.0.0", "name": net, "plugins": [{"type": "x"}]}))

    put("20-b.conflist", "b")
    put("10-a.conf", "a")
    put("30-a-again.json", "a")
    put("40-ignored.txt", "c")
    (tmp_path / "15-broken.conflist").write_text("{")
    found = conflist.discover(tmp_path)
    assert sorted(found) == ["a", "b"] and found["a"][0].name == "10-a.conf"
    before = conflist.signature(tmp_path)
    (tmp_path / "20-b.conflist").unlink()
    assert conflist.signature(tmp_path) != before
    assert conflist.discover(tmp_path / "missing") == {}


def test_ipam_ranges_for_inspect():
    data = {"plugins": [
        {"type": "bridge", "ipam": {"type": "host-local", "ranges": [
            [{"subnet": "10.1.0.0/24", "gateway": "10.1.0.254"}], [{"subnet": "fd00:1::/64"}]]}},
        {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.2.0.0/16"}},
        {"type": "macvlan", "ipam": {"type": "dhcp"}},
    ]}
    assert conflist.ipam_ranges(data) == [
        {"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.254"}, {"Subnet": "fd00:1::/64"}, {"Subnet": "10.2.0.0/16"}]
