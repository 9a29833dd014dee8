"""An app answer checked against the schema openapi.json documents for its route, method and status."""

from __future__ import annotations

import json
from typing import Any

import requests
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from tests.support.helpers import ROOT

SPEC = json.loads((ROOT / "openapi.json").read_text())


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref`s and turn OpenAPI's `nullable` into JSON Schema."""
    if "$ref" in schema:
        node: Any = SPEC
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return _resolve(node)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "nullable":
            continue
        if isinstance(value, dict):
            out[key] = _resolve(value) if key != "properties" else {k: _resolve(v) for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [_resolve(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def check(route: str, method: str, response: requests.Response) -> None:
    spec = SPEC["paths"][f"/{route}"][method.lower()]["responses"].get(str(response.status_code))
    assert spec is not None, f"{method} /{route} answered an undocumented {response.status_code}"
    if "$ref" in spec:
        spec = _resolve(spec)
    schema = _resolve(spec["content"]["application/json"]["schema"])
    errors = sorted(Draft7Validator(schema).iter_errors(response.json()), key=str)
    assert not errors, f"{method} /{route} {response.status_code}: {errors[0].message}"
