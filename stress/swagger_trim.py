#!/usr/bin/env python3
"""Regenerate ``engine-api-v1.41.json``: moby's Engine API description, trimmed to the operations
berthd serves (streams that hijack the connection excluded), with every definition they reference.

    python3 stress/swagger_trim.py path/to/moby/api/docs/v1.41.yaml

Source: github.com/moby/moby, api/docs/v1.41.yaml (Apache License 2.0, Copyright Docker, Inc.); the
output keeps that notice in ``x-source``. Needs PyYAML; the suite itself only reads the JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("engine-api-v1.41.json")
SERVED = {
    "/_ping": ["get"], "/version": ["get"], "/info": ["get"],
    "/networks": ["get"], "/networks/{id}": ["get", "delete"], "/networks/create": ["post"],
    "/networks/{id}/connect": ["post"], "/networks/{id}/disconnect": ["post"], "/networks/prune": ["post"],
    "/containers/create": ["post"], "/containers/json": ["get"], "/containers/{id}/json": ["get"],
    "/containers/{id}/start": ["post"], "/containers/{id}/stop": ["post"], "/containers/{id}/restart": ["post"],
    "/containers/{id}/kill": ["post"], "/containers/{id}": ["delete"], "/containers/{id}/logs": ["get"],
    "/containers/{id}/exec": ["post"], "/exec/{id}/json": ["get"], "/exec/{id}/resize": ["post"],
    "/images/json": ["get"], "/images/{name}/json": ["get"], "/images/{name}": ["delete"],
    "/images/create": ["post"], "/images/load": ["post"],
}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    paths = {p: {m: spec["paths"][p][m] for m in methods} for p, methods in SERVED.items()}
    wanted, todo = set(), _refs(paths)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= _refs(spec["definitions"][name])
    return {
        "x-source": "github.com/moby/moby api/docs/v1.41.yaml, Apache License 2.0, Copyright Docker, Inc.; "
                    "trimmed by stress/swagger_trim.py to the operations berthd serves",
        "swagger": spec["swagger"], "basePath": spec.get("basePath", "/v1.41"), "info": spec["info"],
        "paths": paths, "definitions": {n: spec["definitions"][n] for n in sorted(wanted)},
    }


if __name__ == "__main__":
    import yaml

    OUT.write_text(json.dumps(trim(yaml.safe_load(Path(sys.argv[1]).read_text())), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
