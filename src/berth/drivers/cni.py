"""The ``cni`` driver: a network whose endpoints are made by a chain of CNI plugins.

The plugins own everything about the network: interfaces, addresses (their IPAM), routes, firewall
rules. berth runs the chain as libcni does (ADD in order with ``prevResult``, DEL in reverse with the
cached result, CHECK unless ``disableCheck``), caches the chain and its final result per endpoint in
the store (so DEL works exactly as the endpoint was made, even after the file changed or berthd
restarted), and reads the container's addresses back from the result.

A failed ADD leaves nothing behind: every plugin that was run, the failing one included (it may have
done half its work), gets a DEL in reverse order before the plugin's error goes to the user verbatim.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from berth.cni.exec import (DEFAULT_TIMEOUT, Invocation, PluginError, bind_runtime, find_plugin, plugin_request,
                            run_plugin, search_path)
from berth.cni.types import version_key
from berth.drivers.base import EndpointSpec
from berth.errors import InvalidParameter
from berth.model import Network

log = logging.getLogger("berth.cni")

CONFIG_OPTION = "cni.config"


class CniDriver:
    name = "cni"
    # The plugins' IPAM picks addresses; the engine takes them from the ADD result.
    allocates_addresses = True

    def __init__(self, store: Any, cni_path: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.store = store
        self.cni_path = list(cni_path) if cni_path is not None else search_path()
        self.timeout = timeout

    def validate(self, network: Network) -> None:
        unknown = sorted(set(network.options) - {CONFIG_OPTION})
        if unknown:
            raise InvalidParameter(f"unknown option for the cni driver: {unknown[0]} (only {CONFIG_OPTION})")
        if network.internal:
            raise InvalidParameter("--internal is not supported by the cni driver: the plugins decide what is reachable")

    def create_network(self, *args: Any) -> None:
        """Nothing: the plugins create what they need at the first ADD (a bridge plugin its bridge)."""

    def delete_network(self, *args: Any) -> None:
        """Nothing: what plugins create per network (a bridge) is theirs, as with any CNI runtime."""

    # -- endpoints --------------------------------------------------------------------------------

    def add(self, endpoint: EndpointSpec) -> dict[str, Any]:
        """Run the chain's ADDs in order; on any failure DEL what was run, in reverse, then raise."""
        record = self.store.cni_config(endpoint.network.id)
        if record is None:
            raise InvalidParameter(f"network {endpoint.network.name} has no CNI configuration")
        conflist = bind_runtime(record[0], endpoint.runtime)
        key = (_container_id(endpoint), endpoint.network.id)
        # Cached before the first plugin runs: a crash in the middle is found and DELeted by reconcile.
        self.store.set_cni_result(*key, endpoint.ifname, conflist, None)
        call = Invocation(container_id=key[0], ifname=endpoint.ifname, netns=str(endpoint.netns))
        ran: list[dict[str, Any]] = []
        result: dict[str, Any] | None = None
        try:
            for plugin in conflist["plugins"]:
                binary = find_plugin(plugin["type"], self.cni_path)
                ran.append(plugin)
                request = plugin_request(conflist, plugin, result)
                answer = run_plugin(binary, "ADD", request, call, cni_path=self.cni_path, timeout=self.timeout)
                if answer is None:
                    raise PluginError(plugin["type"], "ADD", 6, "it returned no result")
                result = answer
        except Exception:
            self._run_del(conflist, ran, result, call)
            self.store.remove_cni_result(*key)
            raise
        assert result is not None
        self.store.set_cni_result(*key, endpoint.ifname, conflist, result)
        return result

    def delete(self, endpoint: EndpointSpec) -> None:
        """DEL in reverse with the cached result; idempotent, and the namespace may already be gone."""
        netns = str(endpoint.netns) if endpoint.netns and os.path.exists(endpoint.netns) else ""
        self._delete(endpoint, netns)

    def forget(self, endpoint: EndpointSpec) -> None:
        """DEL without a namespace (it vanished): IPAM leases, firewall and NAT rules are still freed."""
        self._delete(endpoint, "")

    def _delete(self, endpoint: EndpointSpec, netns: str) -> None:
        key = (_container_id(endpoint), endpoint.network.id)
        cached = self.store.cni_result(*key)
        if cached is None:
            return
        ifname, conflist, result = cached
        call = Invocation(container_id=key[0], ifname=ifname, netns=netns)
        errors = self._run_del(conflist, conflist["plugins"], result, call)
        if errors:
            raise errors[0]  # the cache stays: a later DEL (reconcile, network disconnect) can finish
        self.store.remove_cni_result(*key)

    def _run_del(self, conflist: dict[str, Any], plugins: Sequence[dict[str, Any]], result: dict[str, Any] | None,
                 call: Invocation) -> list[PluginError]:
        """DEL for ``plugins`` in reverse; every plugin gets its turn even if an earlier DEL failed."""
        # prevResult on DEL is part of the spec from 0.4.0 on; older plugins must not see it.
        prev = result if version_key(conflist["cniVersion"]) >= (0, 4, 0) else None
        errors: list[PluginError] = []
        for plugin in reversed(plugins):
            try:
                binary = find_plugin(plugin["type"], self.cni_path)
                request = plugin_request(conflist, plugin, prev)
                run_plugin(binary, "DEL", request, call, cni_path=self.cni_path, timeout=self.timeout)
            except PluginError as err:
                log.error("CNI DEL of %s on network %s: %s", call.container_id[:12], conflist["name"], err)
                errors.append(err)
        return errors

    def check(self, endpoint: EndpointSpec) -> list[str]:
        """CHECK in order with the cached result (not for ``disableCheck`` lists or before spec 0.4.0)."""
        cached = self.store.cni_result(_container_id(endpoint), endpoint.network.id)
        if cached is None:
            return [f"no cached CNI result for the endpoint on network {endpoint.network.name}"]
        ifname, conflist, result = cached
        if result is None:
            return [f"the CNI ADD on network {endpoint.network.name} never finished"]
        if conflist.get("disableCheck") or version_key(conflist["cniVersion"]) < (0, 4, 0):
            return []
        call = Invocation(container_id=_container_id(endpoint), ifname=ifname, netns=str(endpoint.netns))
        for plugin in conflist["plugins"]:
            try:
                binary = find_plugin(plugin["type"], self.cni_path)
                run_plugin(binary, "CHECK", plugin_request(conflist, plugin, result), call,
                           cni_path=self.cni_path, timeout=self.timeout)
            except PluginError as err:
                return [str(err)]
        return []


def _container_id(endpoint: EndpointSpec) -> str:
    """CNI_CONTAINERID: the container's id (host-local leases and NAT rule comments name it)."""
    return endpoint.container_id or endpoint.endpoint_id


def sandbox_interface(result: dict[str, Any], ifname: str) -> tuple[int | None, dict[str, Any]]:
    """Index and entry of the container-side interface ``ifname`` in an ADD result (None, {} if absent)."""
    for index, iface in enumerate(result.get("interfaces") or []):
        if isinstance(iface, dict) and iface.get("name") == ifname and iface.get("sandbox"):
            return index, iface
    return None, {}


def endpoint_addresses(result: dict[str, Any], ifname: str) -> list[dict[str, Any]]:
    """The result's ``ips`` that belong to the container's interface (or name no interface at all)."""
    index, _ = sandbox_interface(result, ifname)
    return [ip for ip in result.get("ips") or []
            if isinstance(ip, dict) and ip.get("address") and ip.get("interface") in (None, index)]


def has_capability(conflist: dict[str, Any], capability: str) -> bool:
    """Does any plugin of the list declare ``capability`` (e.g. ``portMappings``)?"""
    return any((p.get("capabilities") or {}).get(capability) is True for p in conflist.get("plugins") or [])
