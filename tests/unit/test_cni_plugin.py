"""berth-cni without a daemon: version negotiation, environment checks, result shapes and conversions,
error objects, and what the plugin sends berthd (a scripted transport plays berthd)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from berth.cni import types as t
from berth.cni.plugin import Unreachable, run

NETNS = "/proc/self/ns/net"  # exists wherever the tests run; berthd is scripted, so nothing is touched
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123def4567890", "CNI_NETNS": NETNS, "CNI_IFNAME": "eth0",
       "CNI_PATH": "/usr/lib/cni"}
MINE = {
    "interfaces": [{"name": "berth-1"}, {"name": "bveth1"}, {"name": "eth0", "mac": "02:42:0a:1e:00:02",
                                                            "sandbox": NETNS, "mtu": 1500}],
    "ips": [{"address": "10.30.0.2/24", "gateway": "10.30.0.1", "interface": 2}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.30.0.1", "priority": 5}],
    "dns": {"nameservers": ["10.30.0.1"]},
}


class Berthd:
    """A scripted berthd: records requests, answers each path from a table."""

    def __init__(self, answers: dict[str, tuple[int, Any]] | None = None, down: bool = False) -> None:
        self.answers = answers or {}
        self.down = down
        self.requests: list[tuple[str, str, str, Any]] = []

    def __call__(self, socket: str, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((socket, method, path, body))
        if self.down:
            raise Unreachable("connection refused")
        return self.answers.get(path, (200, {}))


def invoke(config: dict[str, Any] | bytes, berthd: Berthd | None = None, **env: str) -> tuple[Any, int]:
    stdin = config if isinstance(config, bytes) else json.dumps(config).encode()
    return run({**ENV, **env}, stdin, berthd or Berthd())


def conf(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "cninet", "type": "berth-cni", **extra}


# -- versions -------------------------------------------------------------------------------------

def test_version_lists_every_supported_spec():
    out, status = invoke({"cniVersion": "1.1.0"}, CNI_COMMAND="VERSION")
    assert status == 0
    assert out == {"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    out, status = run({"CNI_COMMAND": "VERSION"}, b"", Berthd())
    assert status == 0 and out["cniVersion"] == t.LATEST


def test_incompatible_version_is_code_1_with_details():
    berthd = Berthd()
    out, status = invoke(conf("9.9.9"), berthd)
    assert status == 1 and berthd.requests == []
    assert out["code"] == 1 and out["msg"] == "incompatible CNI versions"
    assert out["details"].startswith('config is "9.9.9", plugin supports ["0.3.0"')


@pytest.mark.parametrize("command,version", [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "0.4.0")])
def test_commands_newer_than_the_config_version_are_refused(command, version):
    out, status = invoke(conf(version), CNI_COMMAND=command)
    assert status == 1 and out["code"] == 1 and command in out["msg"]


def test_result_conversion_between_versions():
    v11 = t.convert_result(MINE, "1.1.0")
    assert v11["interfaces"][2]["mtu"] == 1500 and v11["routes"][0]["priority"] == 5
    v10 = t.convert_result(MINE, "1.0.0")
    assert "mtu" not in v10["interfaces"][2] and v10["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.30.0.1"}]
    assert "version" not in v10["ips"][0]
    v04 = t.convert_result({**MINE, "ips": [*MINE["ips"], {"address": "fd00::2/64", "interface": 2}]}, "0.4.0")
    assert [ip["version"] for ip in v04["ips"]] == ["4", "6"]
    assert list(v04)[0] == "cniVersion" and v04["cniVersion"] == "0.4.0"
    # and back: a 0.4.0 prevResult reads as the 1.x shape
    assert t.normalize_result(v04)["ips"][0] == {"address": "10.30.0.2/24", "gateway": "10.30.0.1", "interface": 2}


def test_chained_result_keeps_the_previous_plugins_and_shifts_interface_indexes():
    loopback = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": NETNS}],
                "ips": [{"interface": 0, "address": "127.0.0.1/8"}], "dns": {}}
    out, status = invoke(conf(prevResult=loopback), Berthd({"/berth/cni/add": (200, MINE)}))
    assert status == 0
    assert [i["name"] for i in out["interfaces"]] == ["lo", "berth-1", "bveth1", "eth0"]
    assert out["ips"] == [{"interface": 0, "address": "127.0.0.1/8"},
                          {"address": "10.30.0.2/24", "gateway": "10.30.0.1", "interface": 3}]
    assert out["dns"] == {"nameservers": ["10.30.0.1"]}


# -- environment and configuration ----------------------------------------------------------------

@pytest.mark.parametrize("env,message", [
    ({"CNI_COMMAND": ""}, "required env variables [CNI_COMMAND] missing"),
    ({"CNI_COMMAND": "FROB"}, "unknown CNI_COMMAND: FROB"),
    ({"CNI_CONTAINERID": ""}, "required env variables [CNI_CONTAINERID] missing"),
    ({"CNI_CONTAINERID": "", "CNI_IFNAME": ""}, "required env variables [CNI_CONTAINERID CNI_IFNAME] missing"),
    ({"CNI_CONTAINERID": "-bad"}, "invalid CNI_CONTAINERID '-bad'"),
    ({"CNI_IFNAME": "a-name-much-too-long"}, "invalid CNI_IFNAME 'a-name-much-too-long'"),
    ({"CNI_NETNS": "/nonexistent/netns"}, "CNI_NETNS /nonexistent/netns does not exist"),
    ({"CNI_ARGS": "IP"}, "invalid CNI_ARGS pair 'IP'"),
])
def test_bad_environment_is_code_4_naming_the_variable(env, message):
    berthd = Berthd()
    out, status = invoke(conf(), berthd, **env)
    assert status == 1 and (out["cniVersion"], out["code"], out["msg"]) == ("1.0.0", 4, message)
    assert berthd.requests == []


def test_del_needs_no_netns():
    berthd = Berthd()
    out, status = invoke(conf(), berthd, CNI_COMMAND="DEL", CNI_NETNS="")
    assert (out, status) == (None, 0)
    assert berthd.requests[0][2:] == ("/berth/cni/del", {"containerID": "abc123def4567890", "ifname": "eth0",
                                                         "cniNetwork": "cninet"})


@pytest.mark.parametrize("stdin,code", [(b"", 6), (b"{not json", 6), (b"[1]", 6), (b'{"cniVersion": "1.0.0"}', 7),
                                        (b'{"cniVersion": "1.0.0", "name": "n", "subnet": 7}', 7),
                                        (b'{"name": "n"}', 7)])
def test_undecodable_or_invalid_configuration(stdin, code):
    out, status = invoke(stdin)
    assert status == 1 and out["code"] == code and out["msg"]


# -- what berthd is asked, and how its answers come back ------------------------------------------

def test_add_forwards_the_attachment_and_capabilities():
    berthd = Berthd({"/berth/cni/add": (200, MINE)})
    config = conf(network="mynet", subnet="10.30.0.0/24", gateway="10.30.0.1", socket="unix:///tmp/b.sock",
                  runtimeConfig={"ips": ["10.30.0.9/24"], "mac": "02:00:00:00:00:09", "aliases": ["db"]})
    out, status = invoke(config, berthd, CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web-0;IP=10.30.0.7")
    assert status == 0 and out == t.convert_result(MINE, "1.0.0")
    socket, method, path, body = berthd.requests[0]
    assert (socket, method, path) == ("/tmp/b.sock", "POST", "/berth/cni/add")
    assert body == {"containerID": "abc123def4567890", "ifname": "eth0", "cniNetwork": "cninet", "netns": NETNS,
                    "network": "mynet", "name": "web-0", "subnet": "10.30.0.0/24", "gateway": "10.30.0.1",
                    "ipRange": "", "ipv6Subnet": "", "ips": ["10.30.0.9/24"], "mac": "02:00:00:00:00:09",
                    "aliases": ["db"]}


def test_add_takes_the_address_from_args_then_cni_args_and_names_by_container_id():
    berthd = Berthd({"/berth/cni/add": (200, MINE)})
    invoke(conf(args={"cni": {"ips": ["10.30.0.8"]}}), berthd, CNI_ARGS="IP=10.30.0.7")
    invoke(conf(), berthd, CNI_ARGS="IP=10.30.0.7")
    first, second = (r[3] for r in berthd.requests)
    assert first["ips"] == ["10.30.0.8"] and second["ips"] == ["10.30.0.7"]
    assert first["name"] == "cni-abc123def456" and first["network"] == "cninet"


def test_default_socket_follows_berth_host(monkeypatch):
    monkeypatch.setenv("BERTH_HOST", "unix:///tmp/elsewhere.sock")
    berthd = Berthd()
    invoke(conf(), berthd, CNI_COMMAND="DEL")
    assert berthd.requests[0][0] == "/tmp/elsewhere.sock"


def test_berthd_errors_keep_their_cni_code_and_message():
    berthd = Berthd({"/berth/cni/add": (403, {"message": "no available IPv4 addresses", "cniCode": 100})})
    out, status = invoke(conf(), berthd)
    assert (out, status) == ({"cniVersion": "1.0.0", "code": 100, "msg": "no available IPv4 addresses"}, 1)
    berthd = Berthd({"/berth/cni/add": (500, {"message": "boom"})})
    assert invoke(conf(), berthd)[0]["code"] == t.INTERNAL


def test_unreachable_berthd_is_try_again_later_and_status_not_available():
    out, status = invoke(conf(), Berthd(down=True))
    assert status == 1 and out["code"] == 11 and out["msg"].startswith("berthd is not reachable at unix://")
    assert out["details"] == "connection refused"
    out, status = invoke(conf("1.1.0"), Berthd(down=True), CNI_COMMAND="STATUS")
    assert status == 1 and out["code"] == 50
    assert invoke(conf("1.1.0"), Berthd(), CNI_COMMAND="STATUS") == (None, 0)


def test_check_consults_prev_result():
    berthd = Berthd()
    out, status = invoke(conf(), berthd, CNI_COMMAND="CHECK")
    assert status == 1 and out["code"] == 7 and "prevResult" in out["msg"]
    other = {**MINE, "interfaces": [{"name": "eth1", "sandbox": NETNS}]}
    out, status = invoke(conf(prevResult=other), berthd, CNI_COMMAND="CHECK")
    assert status == 1 and out["msg"] == f"prevResult has no interface eth0 in {NETNS}"
    assert invoke(conf(prevResult=t.convert_result(MINE, "1.0.0")), berthd, CNI_COMMAND="CHECK") == (None, 0)
    assert [r[2] for r in berthd.requests] == ["/berth/cni/check"]


def test_gc_sends_the_valid_attachments():
    berthd = Berthd()
    valid = [{"containerID": "abc", "ifname": "eth0"}]
    env = {"CNI_COMMAND": "GC", "CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": ""}
    assert invoke(conf("1.1.0", **{"cni.dev/valid-attachments": valid}), berthd, **env) == (None, 0)
    assert berthd.requests[0][2:] == ("/berth/cni/gc", {"cniNetwork": "cninet", "validAttachments": valid})
