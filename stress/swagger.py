"""The Engine API fuzzed from Docker's own description of it (``engine-api-v1.41.json``: moby's
swagger for API v1.41, trimmed to the operations berthd serves; see ``swagger_trim.py``).

Each case picks an operation and draws its path, query and body parameters from their schemas, with
a share of values of the wrong type or shape mixed in at every level. Every answer must be a success
or a clear refusal: never a 500 (beyond the ones Docker itself gives), a malformed answer or a hang.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from stress import ops
from stress.hostile import Probe, _run, json_values
from stress.stage import Stage

SCENARIO = "swagger"
SPEC = Path(__file__).with_name("engine-api-v1.41.json")
MAX_DEPTH = 4
REFS = ("bridge", "host", "none", "stress-none")  # path values that exist, or not; never the image the suite runs


class Strategies:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.defs = spec["definitions"]

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = {**self.defs[schema["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in schema.items() if k != "$ref"}}
        if "allOf" in schema:
            merged: dict[str, Any] = {"type": "object", "properties": {}}
            for part in schema["allOf"]:
                merged["properties"].update(self._resolve(part).get("properties", {}))
            schema = merged
        return schema

    def of(self, schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
        """Values that fit ``schema``, and (one draw in four) any JSON value instead."""
        if depth > MAX_DEPTH:
            return st.none()
        fitting = self._fitting(self._resolve(schema), depth)
        return st.one_of(fitting, fitting, fitting, json_values)

    def _fitting(self, schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            props = {k: self.of(v, depth + 1) for k, v in (schema.get("properties") or {}).items()}
            extra = schema.get("additionalProperties")
            base = st.fixed_dictionaries({}, optional=props)
            if isinstance(extra, dict):
                return st.one_of(base, st.dictionaries(st.text(max_size=12), self.of(extra, depth + 1), max_size=3))
            return base
        if kind == "array":
            return st.lists(self.of(schema.get("items") or {}, depth + 1), max_size=3)
        if kind == "integer":
            return st.integers(-2**63, 2**64)
        if kind == "number":
            return st.floats(allow_nan=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "string":
            return st.one_of(st.text(max_size=40), st.sampled_from(REFS), st.ip_addresses().map(str))
        return json_values


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return value if isinstance(value, str) else json.dumps(value)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, methods in sorted(spec["paths"].items()) for method, op in sorted(methods.items())]


def run(stage: Stage) -> None:
    report = stage.report
    spec = json.loads(SPEC.read_text())
    strategies = Strategies(spec)
    described = operations(spec)
    api = stage.api()
    probe = Probe(stage, api)

    def case(data: st.DataObject) -> None:
        path, method, op = data.draw(st.sampled_from(described))
        query: dict[str, str] = {}
        body: Any = None
        raw: bytes | None = None
        url = path
        for param in op.get("parameters", []):
            where, name = param["in"], param["name"]
            if where == "path":
                value = data.draw(st.one_of(st.sampled_from(REFS), st.text(min_size=1, max_size=30)))
                url = url.replace("{" + name + "}", quote(value, safe=""))
            elif where == "query" and data.draw(st.booleans()):
                query[name] = _query_value(data.draw(strategies.of(param)))
            elif where == "body":
                schema = param.get("schema") or {}
                if schema.get("format") == "binary" or schema.get("type") == "string":
                    raw = data.draw(st.binary(max_size=2048))
                else:
                    body = data.draw(strategies.of(schema))
        if method == "delete" and path == "/images/{name}" and ops.is_suite_image(api, url[len("/images/"):]):
            return
        if "/wait" in url or (query.get("follow") not in (None, "0", "false") and "/logs" in url):
            query.pop("follow", None)  # a follow on a live container is meant to block
        reply = api.call(method.upper(), url, body=body, query=query or None, raw=raw)
        probe.judge(f"{method.upper()} {url}", {"query": query, "body": body if raw is None else f"{len(raw)} bytes"},
                    reply)

    try:
        _run(stage.profile.swagger_cases, st.data(), case)
    finally:
        api.close()
    report.inputs += probe.inputs
    report.crashes += len(probe.problems)
    report.figure(SCENARIO, "operations described", len(described))
    report.figure(SCENARIO, "requests", probe.inputs)
    report.figure(SCENARIO, "crashes", len(probe.problems))
    for problem in probe.problems:
        report.violation(SCENARIO, problem)
    stage.settle(SCENARIO)
