"""The operations scenarios drive, as a Docker client sends them (API) or as a user types them (CLI)."""

from __future__ import annotations

from typing import Sequence

from stress.api import Api, Reply, seg

IMAGE = "bb"
BUILTIN = ("bridge", "host", "none")


def is_suite_image(api: Api, segment: str) -> bool:
    """Whether ``/images/<segment>`` (already quoted) is the image every scenario runs: by its name, a tag
    or a prefix of its id. Generated deletes skip it, or the scenarios after them would have no image."""
    mine = (api.call("GET", f"/images/{IMAGE}/json").json() or {}).get("Id")
    found = api.call("GET", f"/images/{segment}/json")
    return found.ok and mine is not None and (found.json() or {}).get("Id") == mine


def create_network(api: Api, name: str, subnet: str | None = None, **fields: object) -> Reply:
    body: dict[str, object] = {"Name": name, "Driver": "bridge", "CheckDuplicate": True, **fields}
    if subnet:
        body["IPAM"] = {"Driver": "default", "Config": [{"Subnet": subnet}]}
    return api.call("POST", "/networks/create", body)


def run_container(api: Api, name: str, network: str, cmd: Sequence[str] = ("sleep", "600"),
                  host_port: int | None = None) -> Reply:
    """``docker run -d``: create, then start; the first refusal is the answer."""
    host_config: dict[str, object] = {"NetworkMode": network}
    config: dict[str, object] = {"Image": IMAGE, "Cmd": list(cmd), "HostConfig": host_config}
    if host_port is not None:
        config["ExposedPorts"] = {"80/tcp": {}}
        host_config["PortBindings"] = {"80/tcp": [{"HostIp": "", "HostPort": str(host_port)}]}
    created = api.call("POST", "/containers/create", config, query={"name": name})
    if created.status != 201:
        return created
    return api.call("POST", f"/containers/{seg(name)}/start")


def connect(api: Api, network: str, container: str) -> Reply:
    return api.call("POST", f"/networks/{seg(network)}/connect", {"Container": container, "EndpointConfig": {}})


def disconnect(api: Api, network: str, container: str) -> Reply:
    return api.call("POST", f"/networks/{seg(network)}/disconnect", {"Container": container, "Force": False})


def remove_container(api: Api, name: str) -> Reply:
    return api.call("DELETE", f"/containers/{seg(name)}", query={"force": "1"})


def remove_network(api: Api, name: str) -> Reply:
    return api.call("DELETE", f"/networks/{seg(name)}")


def inspect(api: Api, name: str) -> dict[str, object]:
    reply = api.call("GET", f"/containers/{seg(name)}/json")
    data = reply.json()
    return data if reply.status == 200 and isinstance(data, dict) else {}


def reset(api: Api, keep: Sequence[str] = ()) -> list[str]:
    """Remove every container and user network but those named in ``keep``; what failed, if any."""
    failed = []
    for c in api.call("GET", "/containers/json", query={"all": "1"}).json() or []:
        if any(n.lstrip("/") in keep for n in c["Names"]):
            continue
        reply = remove_container(api, c["Id"])
        if reply.status != 204:
            failed.append(f"rm {c['Names']}: {reply.status} {reply.message}")
    for n in api.call("GET", "/networks").json() or []:
        if n["Name"] not in BUILTIN and n["Name"] not in keep:
            reply = remove_network(api, n["Id"])
            if reply.status != 204:
                failed.append(f"network rm {n['Name']}: {reply.status} {reply.message}")
    return failed
