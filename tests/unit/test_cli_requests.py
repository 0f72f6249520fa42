"""Request bodies the CLI builds (network create/connect, run) and the client-side refusals, no daemon."""

from __future__ import annotations

import pytest

from berth.cli.containers import displayable_ports
from berth.cli.errors import CLIError
from berth.cli.main import build_parser
from berth.cli.networks import connect_body, create_body, ipam_config
from berth.cli.runconfig import RUN_ERROR, create_request, parse_publish, start_failure_code


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(list(argv))


def test_network_create_defaults_match_docker_cli() -> None:
    body = create_body(parse("network", "create", "n"))
    assert body == {
        "Name": "n", "CheckDuplicate": True, "Driver": "bridge", "Scope": "", "EnableIPv6": False,
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigOnly": False, "ConfigFrom": None,
        "IPAM": {"Driver": "default", "Options": {}, "Config": []}, "Options": {}, "Labels": {},
    }
    assert list(body) == ["Name", "CheckDuplicate", "Driver", "Scope", "EnableIPv6", "Internal", "Attachable",
                          "Ingress", "ConfigOnly", "ConfigFrom", "IPAM", "Options", "Labels"]


def test_ipam_pairs_by_containment() -> None:
    assert ipam_config(["10.1.0.0/16", "10.2.0.0/16"], ["10.2.5.0/24"], ["10.2.0.254", "10.1.0.1"],
                       {"h": "10.1.0.5"}) == [
        {"Subnet": "10.1.0.0/16", "IPRange": "", "Gateway": "10.1.0.1", "AuxiliaryAddresses": {"h": "10.1.0.5"}},
        {"Subnet": "10.2.0.0/16", "IPRange": "10.2.5.0/24", "Gateway": "10.2.0.254", "AuxiliaryAddresses": {}},
    ]


@pytest.mark.parametrize("subnets, ranges, gateways, aux, message", [
    ([], [], ["10.0.0.1"], {}, "every ip-range or gateway must have a corresponding subnet"),
    ([], ["10.0.0.0/24"], [], {}, "every ip-range or gateway must have a corresponding subnet"),
    (["10.1.0.0/16"], [], ["10.2.0.1"], {}, "no matching subnet for gateway 10.2.0.1"),
    (["10.1.0.0/16"], ["10.2.0.0/24"], [], {}, "no matching subnet for range 10.2.0.0/24"),
    (["10.1.0.0/16"], [], [], {"a": "10.2.0.1"}, "no matching subnet for aux-address 10.2.0.1"),
    (["10.1.0.0/16", "10.1.2.0/24"], [], [], {}, "multiple overlapping subnet configuration is not supported"),
    (["10.1.0.0/16"], [], ["10.1.0.1", "10.1.0.2"], {}, "every ip-range or gateway must have a corresponding subnet"),
    (["10.1.0.0/16", "10.3.0.0/16"], [], ["10.1.0.1", "10.1.0.2"], {},
     "cannot configure multiple gateways (10.1.0.2, 10.1.0.1) for the same subnet (10.1.0.0/16)"),
])
def test_ipam_validation_messages(subnets, ranges, gateways, aux, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CLIError) as err:
        ipam_config(subnets, ranges, gateways, aux)
    assert err.value.message == message and err.value.code == 1


def test_connect_body_matches_cli_capture() -> None:
    body = connect_body(parse("network", "connect", "--ip", "10.99.0.50", "--alias", "zz", "rs-api", "rs-api1"))
    assert body == {"Container": "rs-api1", "EndpointConfig": {
        "IPAMConfig": {"IPv4Address": "10.99.0.50", "IPv6Address": "", "LinkLocalIPs": []},
        "Links": None, "Aliases": ["zz"], "MacAddress": "", "DriverOpts": {}, "NetworkID": "", "EndpointID": "",
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0}}


def test_run_body_default_network_and_flags() -> None:
    body = create_request(parse("run", "-d", "--name", "x", "-h", "box", "-w", "/tmp", "--dns", "9.9.9.9",
                                "--expose", "7000-7001/udp", "bb", "sleep", "5"))
    assert body["Image"] == "bb" and body["Cmd"] == ["sleep", "5"] and body["Hostname"] == "box"
    assert body["WorkingDir"] == "/tmp" and not body["AttachStdout"] and not body["OpenStdin"]
    assert body["ExposedPorts"] == {"7000/udp": {}, "7001/udp": {}}
    assert body["HostConfig"]["NetworkMode"] == "default" and body["HostConfig"]["Dns"] == ["9.9.9.9"]
    assert body["NetworkingConfig"] == {"EndpointsConfig": {}}


def test_run_command_flags_after_image_belong_to_the_command() -> None:
    body = create_request(parse("run", "bb", "sh", "-c", "echo -n hi", "--rm"))
    assert body["Cmd"] == ["sh", "-c", "echo -n hi", "--rm"] and body["HostConfig"]["AutoRemove"] is False


@pytest.mark.parametrize("argv, message", [
    (["--network", "host", "--network", "n1"], "conflicting options: cannot attach both user-defined and non-user-defined network-modes"),
    (["--network", "container:db", "-p", "80:80"], "conflicting options: port publishing and the container type network mode"),
    (["--network", "container:db", "-P"], "conflicting options: port publishing and the container type network mode"),
    (["--network", "container:db", "-h", "x"], "conflicting options: hostname and the network mode"),
    (["--network", "container:db", "--dns", "1.1.1.1"], "conflicting options: dns and the network mode"),
    (["--network", "container:db", "--add-host", "a:1.2.3.4"], "conflicting options: custom host-to-IP mapping and the network mode"),
    (["--network", "container:db", "--expose", "80"], "conflicting options: port exposing and the container type network mode"),
    (["--network", "host", "--mac-address", "02:42:ac:11:00:02"], "conflicting options: mac-address and the network mode"),
    (["--network", "host", "--link", "db:db"], "conflicting options: host type networking can't be used with links. This would result in undefined behavior"),
    (["--network", "container:"], "Invalid network mode: invalid container format container:<name|id>"),
    (["--network", "n1", "--network", "n1"], 'network "n1" is specified multiple times'),
    (["-t"], "the -t/--tty option is not supported: berth has no TTY support yet; run without -t"),
    (["-p", "80-82:90-91"], "Invalid ranges specified for container and host Ports: 90-91 and 80-82"),
    (["-p", "1.2.3:80:80"], "Invalid ip address: 1.2.3"),
    (["-p", "80/icmp"], "invalid proto: icmp"),
])
def test_run_conflicts_exit_125(argv: list[str], message: str) -> None:
    with pytest.raises(CLIError) as err:
        create_request(parse("run", *argv, "img"))
    assert (err.value.message, err.value.code) == (message, RUN_ERROR)


def test_run_multiple_user_networks_and_options_on_the_first() -> None:
    body = create_request(parse("run", "--network", "a", "--network", "b", "--ip", "10.0.0.9", "img"))
    endpoints = body["NetworkingConfig"]["EndpointsConfig"]
    assert list(endpoints) == ["a", "b"] and endpoints["a"]["IPAMConfig"] == {"IPv4Address": "10.0.0.9"}
    assert endpoints["b"] == {}


def test_rootfs_run_has_no_image() -> None:
    body = create_request(parse("run", "--rootfs", "/srv/r", "/bin/sh", "-c", "true"))
    assert body["Image"] == "" and body["Cmd"] == ["/bin/sh", "-c", "true"]
    assert body["HostConfig"]["BerthRootfs"] == "/srv/r"


@pytest.mark.parametrize("spec, expected", [
    ("80", [("80/tcp", {"HostIp": "", "HostPort": ""})]),
    ("8080:80/udp", [("80/udp", {"HostIp": "", "HostPort": "8080"})]),
    ("127.0.0.1:8081:80", [("80/tcp", {"HostIp": "127.0.0.1", "HostPort": "8081"})]),
    ("[::1]:8081:80", [("80/tcp", {"HostIp": "::1", "HostPort": "8081"})]),
    ("9000-9001:7000-7001", [("7000/tcp", {"HostIp": "", "HostPort": "9000"}), ("7001/tcp", {"HostIp": "", "HostPort": "9001"})]),
    ("8000-8010:80", [("80/tcp", {"HostIp": "", "HostPort": "8000-8010"})]),
])
def test_parse_publish(spec: str, expected: list) -> None:  # type: ignore[type-arg]
    assert parse_publish(spec) == expected


def test_start_failure_codes() -> None:
    assert start_failure_code('exec: "nope": executable file not found in $PATH') == 127
    assert start_failure_code("exec /x: permission denied") == 126
    assert start_failure_code("something else") == 125


def test_displayable_ports_groups_ranges_like_docker() -> None:
    ports = [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
             {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
             {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 8081, "Type": "udp"},
             {"PrivatePort": 7000, "Type": "tcp"}, {"PrivatePort": 7001, "Type": "tcp"},
             {"IP": "0.0.0.0", "PrivatePort": 9000, "PublicPort": 9000, "Type": "tcp"}]
    assert displayable_ports(ports) == ("7000-7001/tcp, 0.0.0.0:9000->9000/tcp, 0.0.0.0:8080->80/tcp, "
                                        "127.0.0.1:8081->80/udp, [::]:8080->80/tcp")
    same = [{"IP": ip, "PrivatePort": 9000, "PublicPort": 9000, "Type": "tcp"} for ip in ("0.0.0.0", "::")]
    assert displayable_ports(same) == "0.0.0.0:9000->9000/tcp, [::]:9000->9000/tcp"
