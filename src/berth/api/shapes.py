"""The JSON types of the request bodies berthd reads, checked before the engine sees a body.

Docker's daemon decodes a body into Go structs, so a field of the wrong JSON type is a 400 ("json:
cannot unmarshal ...") and never reaches its logic. berth checks the same shapes here: the engine may
rely on the types it reads, and a hostile body is a clear 400, never an internal error. As in Go,
``null`` stands for an absent field and unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any, Union

from berth.errors import InvalidParameter

# A shape: a JSON scalar type; STRSLICE (a string or an array of strings, Docker's strslice);
# [shape] (an array of it); {"field": shape, ...} (an object); {"*": shape} (a map of it).
Shape = Union[type, str, list, dict]
STRSLICE = "strslice"

ENDPOINT: dict[str, Shape] = {
    "IPAMConfig": {"IPv4Address": str, "IPv6Address": str, "LinkLocalIPs": [str]},
    "Aliases": [str], "Links": [str], "NetworkID": str, "EndpointID": str, "Gateway": str, "IPAddress": str,
    "IPPrefixLen": int, "IPv6Gateway": str, "GlobalIPv6Address": str, "MacAddress": str, "DriverOpts": {"*": str},
}
NETWORK_CREATE: dict[str, Shape] = {
    "Name": str, "CheckDuplicate": bool, "Driver": str, "Internal": bool, "Attachable": bool, "Ingress": bool,
    "EnableIPv6": bool, "Options": {"*": str}, "Labels": {"*": str},
    "IPAM": {"Driver": str, "Options": {"*": str},
             "Config": [{"Subnet": str, "IPRange": str, "Gateway": str, "AuxiliaryAddresses": {"*": str}}]},
}
CONNECT: dict[str, Shape] = {"Container": str, "EndpointConfig": ENDPOINT}
DISCONNECT: dict[str, Shape] = {"Container": str, "Force": bool}
HOST_CONFIG: dict[str, Shape] = {
    "NetworkMode": str, "PortBindings": {"*": [{"HostIp": str, "HostPort": str}]}, "PublishAllPorts": bool,
    "Dns": [str], "DnsOptions": [str], "DnsSearch": [str], "ExtraHosts": [str], "AutoRemove": bool,
    "Links": [str], "BerthRootfs": str, "Privileged": bool, "ReadonlyRootfs": bool,
}
CONTAINER_CREATE: dict[str, Shape] = {
    "Hostname": str, "Domainname": str, "User": str, "AttachStdin": bool, "AttachStdout": bool,
    "AttachStderr": bool, "ExposedPorts": {"*": dict}, "Tty": bool, "OpenStdin": bool, "StdinOnce": bool,
    "Env": [str], "Cmd": STRSLICE, "Entrypoint": STRSLICE, "Image": str, "WorkingDir": str, "Labels": {"*": str},
    "StopSignal": str, "MacAddress": str, "NetworkDisabled": bool, "HostConfig": HOST_CONFIG,
    "NetworkingConfig": {"EndpointsConfig": {"*": ENDPOINT}},
}
EXEC_CREATE: dict[str, Shape] = {
    "AttachStdin": bool, "AttachStdout": bool, "AttachStderr": bool, "DetachKeys": str, "Tty": bool,
    "Env": [str], "Cmd": STRSLICE, "Privileged": bool, "User": str, "WorkingDir": str,
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _fits(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is bool:
        return isinstance(value, bool)
    return isinstance(value, kind)


def _check(value: Any, shape: Shape, path: str) -> Any:
    """``value`` if it has ``shape`` (a strslice string becomes a one-item array, as in Docker); else a 400."""
    if value is None:
        return None
    if shape == STRSLICE:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        expected = "string or array of strings"
    elif isinstance(shape, list):
        if isinstance(value, list):
            return [_check(item, shape[0], f"{path}[{i}]") for i, item in enumerate(value)]
        expected = "array"
    elif isinstance(shape, dict):
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                sub = shape.get("*", shape.get(key))
                out[key] = item if sub is None else _check(item, sub, f"{path}.{key}" if path else key)
            return out
        expected = "object"
    else:
        assert isinstance(shape, type)
        if _fits(value, shape):
            return value
        expected = _json_type(shape()) if shape is not dict else "object"
    raise InvalidParameter(f"json: cannot unmarshal {_json_type(value)} into Go struct field {path or 'body'} "
                           f"of type {expected}")


def checked(body: Any, shape: dict[str, Shape]) -> dict[str, Any]:
    """``body`` if it is an object whose known fields have their JSON types (normalised); else a 400."""
    return _check(body, shape, "") or {}
