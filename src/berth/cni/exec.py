"""Running one CNI plugin binary the way the spec (and libcni) does: env, stdin, stdout, exit status.

This is the only place berth runs CNI plugins. A plugin is found by its ``type`` in ``CNI_PATH`` (never
through a shell), gets its network configuration on stdin with ``cniVersion``, ``name``,
``runtimeConfig`` and ``prevResult`` injected by libcni's rules, and answers with a result or an error
object on stdout. A plugin that hangs is killed after a timeout; one that prints garbage is reported
with what it wrote to stderr, so the user always gets one line that says which plugin failed and why.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from berth.errors import BerthError

DEFAULT_CNI_PATH = "/usr/lib/cni:/opt/cni/bin"
DEFAULT_TIMEOUT = 60.0  # a DHCP plugin may legitimately wait for a lease; a hung plugin must not hang berthd
# What a plugin inherits from berthd besides the CNI_* variables: enough to find iptables, tc and friends.
_INHERITED = ("PATH", "LANG", "LC_ALL", "TMPDIR", "XTABLES_LOCKFILE")
_STDERR_EXCERPT = 300


class PluginError(BerthError):
    """A plugin failed: the spec's error object, or what berth saw instead, as one line for the user.

    ``msg`` and ``details`` are the plugin's own words; the message puts them after the plugin and
    command (libcni's ``plugin type="bridge" failed (add): ...`` shape), unchanged.
    """

    status = 500

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        self.plugin, self.command, self.code, self.msg, self.details = plugin, command, code, msg, details
        text = f'plugin type="{plugin}" failed ({command.lower()}): {msg}'
        if details:
            text += f": {details}"
        super().__init__(" ".join(text.split()))
        self.cni_code = code


@dataclass(frozen=True)
class Invocation:
    """The per-call environment of the spec (CNI_COMMAND is given per call)."""

    container_id: str
    ifname: str
    netns: str = ""  # empty on a DEL whose namespace is gone
    args: str = ""  # CNI_ARGS, ``K=V;K2=V2``


def search_path(value: str | None = None) -> list[str]:
    """The plugin directories: ``value``, else ``$CNI_PATH``, else Debian's and upstream's defaults."""
    text = value if value is not None else os.environ.get("CNI_PATH") or DEFAULT_CNI_PATH
    return [d for d in text.split(":") if d]


def find_plugin(plugin_type: str, path: Sequence[str]) -> Path:
    """The executable named ``plugin_type`` in the first directory of ``path`` that has it."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise PluginError(plugin_type, "find", 7, f"invalid plugin type {plugin_type!r}")
    for directory in path:
        candidate = Path(directory) / plugin_type
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise PluginError(plugin_type, "find", 7, f'failed to find plugin "{plugin_type}" in path {list(path)}')


def bind_runtime(conflist: Mapping[str, Any], runtime: Mapping[str, Any]) -> dict[str, Any]:
    """The list with each plugin's ``runtimeConfig`` filled from what the runtime offers, as libcni does.

    A plugin gets the offered values of the capabilities it declares (a static ``runtimeConfig`` in the
    file is kept when it declares none); ``capabilities`` itself is not sent. The bound list is what
    berth caches per endpoint: DEL and CHECK must see the same ``runtimeConfig`` as ADD (portmap finds
    the rules to remove from it).
    """
    plugins = []
    for plugin in conflist["plugins"]:
        bound = {k: v for k, v in plugin.items() if k != "capabilities"}
        capabilities = plugin.get("capabilities") or {}
        offered = {k: v for k, v in runtime.items() if capabilities.get(k) is True}
        if offered:
            bound["runtimeConfig"] = {**(bound.get("runtimeConfig") or {}), **offered}
        plugins.append(bound)
    return {**conflist, "plugins": plugins}


def plugin_request(conflist: Mapping[str, Any], plugin: Mapping[str, Any],
                   prev_result: Mapping[str, Any] | None) -> dict[str, Any]:
    """One plugin's stdin: its object from a bound list with the list's ``cniVersion`` and ``name``, and
    ``prevResult`` (the chain's result so far on ADD, the cached final result on DEL and CHECK)."""
    request = dict(plugin)
    request["cniVersion"] = conflist["cniVersion"]
    request["name"] = conflist["name"]
    if prev_result is not None:
        request["prevResult"] = dict(prev_result)
    return request


def run_plugin(binary: Path, command: str, request: Mapping[str, Any], call: Invocation, *,
               cni_path: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any] | None:
    """Run ``binary`` for ``command`` and return its parsed result (None when it printed nothing).

    Raises ``PluginError`` with the plugin's ``msg``/``details`` when it reports an error, and with
    a description of what happened when it hangs, dies or writes something that is not JSON.
    """
    plugin_type = str(request.get("type") or binary.name)
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update({
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": call.container_id,
        "CNI_IFNAME": call.ifname,
        "CNI_PATH": ":".join(cni_path),
    })
    if call.netns:
        env["CNI_NETNS"] = call.netns
    if call.args:
        env["CNI_ARGS"] = call.args
    try:
        done = subprocess.run([str(binary)], input=json.dumps(request).encode(), capture_output=True, env=env,
                              timeout=timeout, close_fds=True, cwd="/")
    except subprocess.TimeoutExpired:
        raise PluginError(plugin_type, command, 999, f"no answer within {timeout:g} s; the plugin was killed") from None
    except OSError as err:
        raise PluginError(plugin_type, command, 999, f"cannot run {binary}: {err.strerror or err}") from None
    return _parse(plugin_type, command, done.returncode, done.stdout, done.stderr)


def _parse(plugin_type: str, command: str, status: int, stdout: bytes, stderr: bytes) -> dict[str, Any] | None:
    text = stdout.decode("utf-8", "replace").strip()
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = None
        if status == 0:
            raise PluginError(plugin_type, command, 6, "its output is not JSON",
                              _excerpt(text) + _stderr_note(stderr)) from None
    if status == 0:
        if answer is not None and not isinstance(answer, dict):
            raise PluginError(plugin_type, command, 6, "its output is not a JSON object", _excerpt(text))
        return answer
    if isinstance(answer, dict) and isinstance(answer.get("msg"), str):
        code = answer.get("code")
        raise PluginError(plugin_type, command, code if isinstance(code, int) else 999, answer["msg"],
                          str(answer.get("details") or ""))
    how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
    raise PluginError(plugin_type, command, 999, f"{how} without an error object",
                      (_excerpt(text) + _stderr_note(stderr)).strip("; "))


def _excerpt(text: str) -> str:
    return text[:_STDERR_EXCERPT] + ("..." if len(text) > _STDERR_EXCERPT else "")


def _stderr_note(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return f"; stderr: {_excerpt(text)}" if text else ""
