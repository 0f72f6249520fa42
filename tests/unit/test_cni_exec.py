"""Running CNI plugins: environment, stdin, results, error objects, garbage, hangs; and the cni driver's
chain semantics (ADD in order, DEL in reverse with the cached result, undo of a failed ADD), with
small fake plugins that record what they were given."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from berth.cni.exec import Invocation, PluginError, bind_runtime, find_plugin, plugin_request, run_plugin
from berth.drivers.base import EndpointSpec
from berth.drivers.cni import CniDriver, endpoint_addresses
from berth.model import Network
from berth.store.sqlite import Store

# A fake plugin: logs its command, env and stdin to $LOG (a JSON line each), then behaves as $MODE says.
PLUGIN = f"""#!{sys.executable}
import json, os, sys, time
req = json.load(sys.stdin)
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open({{log!r}}, "a") as f:
    f.write(json.dumps({{"type": req["type"], "cmd": env["CNI_COMMAND"], "env": env, "req": req}}) + "\\n")
mode = req.get("mode", "ok")
if mode == "fail-add" and env["CNI_COMMAND"] == "ADD":
    print(json.dumps({{"cniVersion": req["cniVersion"], "code": 101, "msg": "no  luck\\nhere", "details": "d"}}))
    sys.exit(1)
if mode == "garbage":
    print("this is not json")
    sys.exit(0)
if mode == "crash":
    sys.stderr.write("panic: boom\\n")
    sys.exit(2)
if mode == "hang":
    time.sleep(30)
if env["CNI_COMMAND"] == "ADD":
    prev = req.get("prevResult") or {{"cniVersion": req["cniVersion"], "interfaces": [], "ips": []}}
    if req.get("addr"):
        prev["interfaces"].append({{"name": env["CNI_IFNAME"], "mac": "02:00:00:00:00:09", "sandbox": env["CNI_NETNS"]}})
        prev["ips"].append({{"address": req["addr"], "gateway": "10.9.0.1", "interface": len(prev["interfaces"]) - 1}})
    print(json.dumps(prev))
"""


@pytest.fixture
def plugins(tmp_path: Path) -> tuple[Path, Path]:
    """A plugin directory with the fake as ``main``, ``second`` and ``third``, and its log file."""
    directory, log = tmp_path / "bin", tmp_path / "log.jsonl"
    directory.mkdir()
    for name in ("main", "second", "third"):
        path = directory / name
        path.write_text(PLUGIN.replace("{log!r}", repr(str(log))))
        path.chmod(0o755)
    return directory, log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run(directory: Path, plugin: dict, command: str = "ADD", timeout: float = 10) -> dict | None:
    conflist = {"cniVersion": "1.0.0", "name": "n", "plugins": [plugin]}
    request = plugin_request(conflist, conflist["plugins"][0], None)
    return run_plugin(find_plugin(plugin["type"], [str(directory)]), command, request,
                      Invocation("c1", "eth0", "/run/netns/x"), cni_path=[str(directory)], timeout=timeout)


def test_environment_and_injected_keys(plugins):
    directory, log = plugins
    assert run(directory, {"type": "main", "addr": "10.9.0.2/24"})["ips"][0]["address"] == "10.9.0.2/24"
    (call,) = calls(log)
    assert call["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
                           "CNI_NETNS": "/run/netns/x", "CNI_PATH": str(directory)}
    assert call["req"]["cniVersion"] == "1.0.0" and call["req"]["name"] == "n" and "prevResult" not in call["req"]


def test_runtime_config_only_for_declared_capabilities_and_static_kept():
    conflist = {"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
        {"type": "static", "runtimeConfig": {"portMappings": [{"hostPort": 1}]}},
    ]}
    offered = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "bandwidth": {"x": 1}}
    bound = bind_runtime(conflist, offered)
    assert bound["plugins"][0] == {"type": "portmap", "runtimeConfig": {"portMappings": offered["portMappings"]}}
    assert bound["plugins"][1] == conflist["plugins"][1]
    assert bind_runtime(conflist, {})["plugins"][0] == {"type": "portmap"}


def test_error_object_reaches_the_user_in_one_line(plugins):
    directory, _ = plugins
    with pytest.raises(PluginError) as caught:
        run(directory, {"type": "main", "mode": "fail-add"})
    assert str(caught.value) == 'plugin type="main" failed (add): no luck here: d'
    assert caught.value.code == 101 and caught.value.msg == "no  luck\nhere"


def test_garbage_crash_hang_and_missing_plugin(plugins):
    directory, _ = plugins
    with pytest.raises(PluginError, match="output is not JSON: this is not json"):
        run(directory, {"type": "main", "mode": "garbage"})
    with pytest.raises(PluginError, match="exit status 2 without an error object.*panic: boom"):
        run(directory, {"type": "main", "mode": "crash"})
    with pytest.raises(PluginError, match="no answer within 0.5 s"):
        run(directory, {"type": "main", "mode": "hang"}, timeout=0.5)
    with pytest.raises(PluginError, match='failed to find plugin "nope"'):
        find_plugin("nope", [str(directory)])
    with pytest.raises(PluginError, match="invalid plugin type"):
        find_plugin("../bin/main", [str(directory)])


def _driver(directory: Path, tmp_path: Path, plugins: list[dict]) -> tuple[CniDriver, EndpointSpec, Store]:
    store = Store(tmp_path / "berth.db")
    net = Network(id="n" * 64, name="cnet", driver="cni", scope="local", created="", enable_ipv6=False,
                  internal=False, attachable=True, ipam={}, options={}, labels={})
    store.add_network(net, state="active")
    store.set_cni_config(net.id, {"cniVersion": "1.0.0", "name": "cnet", "plugins": plugins}, "f", False)
    spec = EndpointSpec(network=net, netns=tmp_path, endpoint_id="e1", host_ifname="", ifname="eth1", mac="",
                        addresses=(), gateway4=None, gateway6=None, container_id="c" * 64)
    return CniDriver(store, [str(directory)], timeout=10), spec, store


def test_chain_add_in_order_del_in_reverse_with_cached_result(plugins, tmp_path):
    directory, log = plugins
    driver, spec, store = _driver(directory, tmp_path, [{"type": "main", "addr": "10.9.0.5/24"}, {"type": "second"}])
    result = driver.add(spec)
    assert [(c["type"], c["cmd"]) for c in calls(log)] == [("main", "ADD"), ("second", "ADD")]
    assert calls(log)[1]["req"]["prevResult"]["ips"][0]["address"] == "10.9.0.5/24"  # the first plugin's output
    assert [ip["address"] for ip in endpoint_addresses(result, "eth1")] == ["10.9.0.5/24"]
    assert store.cni_result(spec.container_id, spec.network.id)[2] == result
    assert driver.check(spec) == []
    driver.delete(spec)
    dels = [c for c in calls(log) if c["cmd"] == "DEL"]
    assert [c["type"] for c in dels] == ["second", "main"]
    assert all(c["req"]["prevResult"] == result for c in dels)
    assert store.cni_result(spec.container_id, spec.network.id) is None
    count = len(calls(log))
    driver.delete(spec)  # idempotent: nothing cached, nothing to run
    assert len(calls(log)) == count


def test_failed_add_deletes_what_ran_in_reverse(plugins, tmp_path):
    directory, log = plugins
    driver, spec, store = _driver(directory, tmp_path, [{"type": "main", "addr": "10.9.0.5/24"},
                                                        {"type": "second", "mode": "fail-add"}, {"type": "third"}])
    with pytest.raises(PluginError, match='plugin type="second" failed'):
        driver.add(spec)
    assert [(c["type"], c["cmd"]) for c in calls(log)] == [
        ("main", "ADD"), ("second", "ADD"), ("second", "DEL"), ("main", "DEL")]
    assert store.cni_result(spec.container_id, spec.network.id) is None


def test_forget_runs_del_without_namespace(plugins, tmp_path):
    directory, log = plugins
    driver, spec, _ = _driver(directory, tmp_path, [{"type": "main", "addr": "10.9.0.5/24"}])
    driver.add(spec)
    driver.forget(spec)
    (dele,) = [c for c in calls(log) if c["cmd"] == "DEL"]
    assert "CNI_NETNS" not in dele["env"] and dele["env"]["CNI_IFNAME"] == "eth1"
