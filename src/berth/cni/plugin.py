"""``berth-cni``: berth as a CNI plugin, so any CNI runtime can put its namespaces on berth networks.

The runtime runs this executable per command with the ``CNI_*`` environment and the network
configuration on stdin. The plugin holds no state and touches no kernel object itself: it validates
the request, forwards it to berthd (``/berth/cni/...`` on berthd's unix socket), and writes berthd's
answer back as the spec's result or error object. berthd does the work with the same engine,
IPAM, firewall and DNS as for its own containers, under its one lock, so concurrent runtimes and
berth's own commands never race. Start-up is part of every pod's or container's start: this module
imports only the standard library and berth's stdlib-only client.

Exit status 0 on success; otherwise 1 with the error object on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

from berth.cni import types as t

# (socket path, method, path, JSON body or None) -> (HTTP status, decoded JSON answer)
Transport = Callable[[str, str, str, "dict[str, Any] | None"], "tuple[int, Any]"]

_STRING_KEYS = ("network", "subnet", "gateway", "ipRange", "ipv6Subnet", "socket")


class Unreachable(Exception):
    """berthd did not answer: no socket, refused, or the connection dropped."""


def http_call(socket_path: str, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
    """One request to berthd over its unix socket, with the CLI's small HTTP client."""
    from berth.cli.client import Client, Connection
    from berth.cli.errors import CLIError

    conn = Connection(socket_path)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if payload is None else {"Content-Type": "application/json"}
        resp = conn.request(method, Client.url(path), payload, headers)
        return resp.status, resp.json()
    except CLIError as err:
        raise Unreachable(err.message) from None
    finally:
        conn.close()


def run(env: dict[str, str], stdin: bytes, call: Transport = http_call) -> tuple[dict[str, Any] | None, int]:
    """One invocation: (what to print, exit status). Every failure becomes a CNI error object."""
    version = _version_hint(stdin)
    try:
        command = t.check_env(env)
        config = _decode(stdin, command)
        if command == "VERSION":
            return {"cniVersion": version, "supportedVersions": list(t.SUPPORTED_VERSIONS)}, 0
        version = t.negotiate(config.get("cniVersion"))
        t.allows(command, version)
        plugin = Plugin(env, _validate(config), version, call)
        commands = {"ADD": plugin.add, "DEL": plugin.delete, "CHECK": plugin.check, "GC": plugin.gc,
                    "STATUS": plugin.status}
        return commands[command](), 0
    except t.CniError as err:
        return err.to_json(version), 1


def _version_hint(stdin: bytes) -> str:
    """The configuration's ``cniVersion`` for error objects, whatever else is wrong; else the latest."""
    try:
        version = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        return t.LATEST
    return version if isinstance(version, str) and version else t.LATEST


def _decode(stdin: bytes, command: str) -> dict[str, Any]:
    if not stdin.strip():
        if command == "VERSION":
            return {}
        raise t.CniError(t.DECODE_FAILURE, "no network configuration on stdin")
    try:
        config = json.loads(stdin)
    except ValueError as err:
        raise t.CniError(t.DECODE_FAILURE, "failed to decode the network configuration", str(err)) from None
    if not isinstance(config, dict):
        raise t.CniError(t.DECODE_FAILURE, "the network configuration is not a JSON object")
    return config


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    """The keys berth-cni reads, with their types; unknown keys are left alone as the spec asks."""
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise t.CniError(t.INVALID_CONFIG, "the network configuration has no \"name\"")
    for key in _STRING_KEYS:
        if key in config and not isinstance(config[key], str):
            raise t.CniError(t.INVALID_CONFIG, f"\"{key}\" must be a string")
    for key in ("runtimeConfig", "args"):
        if key in config and not isinstance(config[key], dict):
            raise t.CniError(t.INVALID_CONFIG, f"\"{key}\" must be an object")
    return config


class Plugin:
    def __init__(self, env: dict[str, str], config: dict[str, Any], version: str, call: Transport) -> None:
        self.env = env
        self.config = config
        self.version = version
        self.call = call
        self.socket = self._socket()

    def _socket(self) -> str:
        """``socket`` from the config (``unix://PATH`` or a path), else berth's default (``BERTH_HOST``)."""
        given = self.config.get("socket") or ""
        if given:
            return given[len("unix://"):] if given.startswith("unix://") else given
        from berth.config import default_socket

        return default_socket()

    def _ask(self, method: str, path: str, body: dict[str, Any] | None, unreachable: int) -> Any:
        try:
            status, answer = self.call(self.socket, method, path, body)
        except Unreachable as err:
            raise t.CniError(unreachable, f"berthd is not reachable at unix://{self.socket}", str(err)) from None
        if status >= 400:
            answer = answer if isinstance(answer, dict) else {}
            code = answer.get("cniCode") or (t.TRY_AGAIN_LATER if status == 503 else t.INTERNAL)
            raise t.CniError(int(code), str(answer.get("message") or f"berthd answered HTTP {status}"))
        return answer

    def _key(self) -> dict[str, str]:
        return {"containerID": self.env["CNI_CONTAINERID"], "ifname": self.env["CNI_IFNAME"],
                "cniNetwork": self.config["name"]}

    def _capabilities(self) -> tuple[list[str], str, list[str]]:
        """Static addresses, MAC and aliases: ``runtimeConfig`` first, then ``args.cni.ips``, then ``CNI_ARGS IP=``."""
        runtime = self.config.get("runtimeConfig") or {}
        args = t.parse_args(self.env.get("CNI_ARGS", ""))
        ips = runtime.get("ips") or ((self.config.get("args") or {}).get("cni") or {}).get("ips") or []
        if not ips and args.get("IP"):
            ips = args["IP"].split(",")
        mac = runtime.get("mac") or ""
        aliases = runtime.get("aliases") or []
        for key, value in (("ips", ips), ("aliases", aliases)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise t.CniError(t.INVALID_CONFIG, f"\"{key}\" must be a list of strings")
        if not isinstance(mac, str):
            raise t.CniError(t.INVALID_CONFIG, "\"mac\" must be a string")
        return ips, mac, aliases

    # -- commands -------------------------------------------------------------------------------

    def add(self) -> dict[str, Any]:
        netns = self.env["CNI_NETNS"]
        if not os.path.exists(netns):
            raise t.CniError(t.INVALID_ENVIRONMENT, f"CNI_NETNS {netns} does not exist")
        ips, mac, aliases = self._capabilities()
        args = t.parse_args(self.env.get("CNI_ARGS", ""))
        cfg = self.config
        body = {
            **self._key(), "netns": netns, "network": cfg.get("network") or cfg["name"],
            "name": args.get("K8S_POD_NAME") or f"cni-{self.env['CNI_CONTAINERID'][:12]}",
            "subnet": cfg.get("subnet", ""), "gateway": cfg.get("gateway", ""), "ipRange": cfg.get("ipRange", ""),
            "ipv6Subnet": cfg.get("ipv6Subnet", ""), "ips": ips, "mac": mac, "aliases": aliases,
        }
        mine = self._ask("POST", "/berth/cni/add", body, t.TRY_AGAIN_LATER)
        prev = cfg.get("prevResult")
        result = t.merge_results(t.normalize_result(prev), mine) if prev else mine
        return t.convert_result(result, self.version)

    def delete(self) -> None:
        self._ask("POST", "/berth/cni/del", self._key(), t.TRY_AGAIN_LATER)

    def check(self) -> None:
        prev = self.config.get("prevResult")
        if not prev:
            raise t.CniError(t.INVALID_CONFIG, "CHECK needs the ADD result as prevResult")
        ifname, netns = self.env["CNI_IFNAME"], self.env["CNI_NETNS"]
        if not any(i.get("name") == ifname and i.get("sandbox") == netns for i in t.normalize_result(prev)["interfaces"]):
            raise t.CniError(t.INVALID_CONFIG, f"prevResult has no interface {ifname} in {netns}")
        self._ask("POST", "/berth/cni/check", self._key(), t.TRY_AGAIN_LATER)

    def gc(self) -> None:
        valid = self.config.get("cni.dev/valid-attachments") or []
        if not isinstance(valid, list) or not all(isinstance(v, dict) for v in valid):
            raise t.CniError(t.INVALID_CONFIG, "\"cni.dev/valid-attachments\" must be a list of objects")
        body = {"cniNetwork": self.config["name"], "validAttachments": valid}
        self._ask("POST", "/berth/cni/gc", body, t.TRY_AGAIN_LATER)

    def status(self) -> None:
        """Ready when berthd answers; anything else is the spec's "not available" (50)."""
        try:
            self._ask("GET", "/berth/cni/status", None, t.NOT_AVAILABLE)
        except t.CniError as err:
            raise t.CniError(t.NOT_AVAILABLE, err.msg, err.details) from None


def main() -> None:
    out, status = run(dict(os.environ), sys.stdin.buffer.read())
    if out is not None:
        sys.stdout.write(json.dumps(out) + "\n")
    sys.exit(status)
