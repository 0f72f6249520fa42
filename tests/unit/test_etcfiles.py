"""The /etc files a container sees, in Docker's formats."""

from __future__ import annotations

import os

import pytest

from berth.runtime import etcfiles

LOOPBACK_BLOCK = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def test_hosts_file_lists_each_address_after_the_loopback_block():
    text = etcfiles.hosts_file("16059a3272dc", ["172.29.0.2", "10.77.5.77", "fd77::2"])
    assert text == LOOPBACK_BLOCK + "172.29.0.2\t16059a3272dc\n10.77.5.77\t16059a3272dc\nfd77::2\t16059a3272dc\n"


def test_hosts_file_without_addresses_is_only_the_loopback_block():
    assert etcfiles.hosts_file("abc", []) == LOOPBACK_BLOCK


def test_hosts_file_extra_hosts_come_before_the_container_lines():
    text = etcfiles.hosts_file("web", ["10.0.0.2"], extra=["db:10.0.0.9", "v6:fd00::9"])
    assert text.endswith("10.0.0.9\tdb\nfd00::9\tv6\n10.0.0.2\tweb\n")


def test_hosts_file_refuses_malformed_extra_host():
    with pytest.raises(ValueError):
        etcfiles.hosts_file("web", [], extra=["nocolon"])


HOST_RESOLV = "# managed by me\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch corp.example\noptions edns0\n"


def test_resolv_conf_copies_the_host_file_without_loopback_nameservers():
    assert etcfiles.resolv_conf(HOST_RESOLV) == (
        "# managed by me\nnameserver 10.255.255.53\nsearch corp.example\noptions edns0\n"
    )


def test_resolv_conf_falls_back_to_google_when_only_loopback_resolvers_remain():
    text = etcfiles.resolv_conf("nameserver 127.0.0.53\nnameserver ::1\noptions edns0 trust-ad\n")
    assert text == "options edns0 trust-ad\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_resolv_conf_overrides_replace_their_part_only():
    text = etcfiles.resolv_conf(HOST_RESOLV, nameservers=["1.1.1.1"], options=["ndots:2"])
    assert text == "search corp.example\nnameserver 1.1.1.1\noptions ndots:2\n"
    text = etcfiles.resolv_conf(HOST_RESOLV, search=["a.example", "b.example"])
    assert text == "search a.example b.example\nnameserver 10.255.255.53\noptions edns0\n"
    assert etcfiles.resolv_conf(HOST_RESOLV, search=["."]) == "nameserver 10.255.255.53\noptions edns0\n"


def test_resolv_conf_embedded_resolver_is_the_only_nameserver():
    text = etcfiles.resolv_conf(HOST_RESOLV, embedded="127.0.0.11")
    assert text == "search corp.example\nnameserver 127.0.0.11\noptions ndots:0 edns0\n"
    text = etcfiles.resolv_conf(HOST_RESOLV, embedded="127.0.0.11", options=["ndots:3"])
    assert text == "search corp.example\nnameserver 127.0.0.11\noptions ndots:3\n"


def test_write_in_place_keeps_the_inode_and_shrinks_or_grows(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("a much longer original content\n")
    inode = os.stat(path).st_ino
    etcfiles.write_in_place(path, "short\n")
    assert path.read_text() == "short\n"
    etcfiles.write_in_place(path, "x" * 10000)
    assert path.read_text() == "x" * 10000
    assert os.stat(path).st_ino == inode
