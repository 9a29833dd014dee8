"""An offline type check of Bicep resource bodies against Microsoft's resource type definitions
(bicep-types-az `types.json`), the schema the Bicep compiler checks them with.

For every `resource`: the `type@apiVersion` must be defined. For one that is declared (not
`existing`): every property written in literal object syntax must exist with exactly that case and
must not be read-only; literal strings, numbers and booleans must match the declared type (allowed
values, ranges, lengths); required properties must be present. An `existing` one may name only the
type's identifiers (`name`; `uniqueName`, `appId` of Graph types), each a string. Expressions that
are not literals (parameters, function calls, interpolated strings where a fixed value is wanted)
are not judged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tree_sitter_language_pack import get_parser

REQUIRED, READ_ONLY, IDENTIFIER = 1, 2, 16
# Resource-level keywords of the Bicep language, not properties of any type.
BICEP_KEYWORDS = {"parent", "scope", "dependsOn"}
# The grammar predates Bicep's `extension` statement; such lines are blanked (same length).
_EXTENSION = re.compile(rb"^extension [A-Za-z0-9_]+[ \t]*$", re.M)


@dataclass(frozen=True)
class Resource:
    file: str
    symbol: str
    type_name: str  # e.g. Microsoft.Web/sites
    api_version: str
    body: Any  # tree-sitter object node
    line: int
    existing: bool = False


class Types:
    """Every ResourceType in a folder of types.json files, by lower-cased `type@version`."""

    def __init__(self, folder: Path) -> None:
        self.resources: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
        for path in sorted(folder.glob("*.json")):
            nodes = json.loads(path.read_text())
            if not isinstance(nodes, list):
                continue
            for node in nodes:
                if node.get("$type") == "ResourceType":
                    self.resources[node["name"].lower()] = (nodes, node)

    def versions(self, type_name: str) -> list[str]:
        prefix = type_name.lower() + "@"
        return sorted(k.split("@", 1)[1] for k in self.resources if k.startswith(prefix))


def source(path: Path) -> bytes:
    return _EXTENSION.sub(lambda m: b" " * len(m.group(0)), path.read_bytes())


def resources(path: Path, text: bytes | None = None, *, existing: bool = False) -> Iterator[Resource]:
    """The resources of a Bicep file (the `existing` ones too if asked) and the object literal of
    each body."""
    data = source(path) if text is None else text
    root = get_parser("bicep").parse(data).root_node
    for node in root.children:
        if node.type != "resource_declaration":
            continue
        is_existing = any(c.type == "existing" for c in node.children)
        if is_existing and not existing:
            continue
        symbol = _text(data, next(c for c in node.children if c.type == "identifier"))
        type_text = _string_value(data, next(c for c in node.children if c.type == "string")) or ""
        type_name, _, version = type_text.partition("@")
        body = node.children[-1]
        while body.type in ("for_statement", "if_statement"):
            body = body.children[-2] if body.type == "for_statement" else body.children[-1]
        yield Resource(path.name, symbol, type_name, version, (data, body), node.start_point[0] + 1, is_existing)


def check_file(path: Path, types: Types, text: bytes | None = None) -> tuple[list[str], set[str]]:
    """(problems, resource types missing from the definitions) for one Bicep file."""
    problems: list[str] = []
    missing: set[str] = set()
    for res in resources(path, text, existing=True):
        where = f"{res.file}:{res.line} {res.symbol}"
        found = types.resources.get(f"{res.type_name}@{res.api_version}".lower())
        if found is None:
            known = types.versions(res.type_name)
            if known:
                problems.append(
                    f"{where}: {res.type_name}@{res.api_version} is not defined; known versions: {', '.join(known)}"
                )
            else:
                missing.add(res.type_name)
            continue
        nodes, resource_type = found
        data, body = res.body
        if body.type != "object":
            continue
        checker = _Checker(nodes, data, where, problems)
        if res.existing:
            checker.identifiers(body, resource_type["body"], res.type_name)
        else:
            checker.object(body, resource_type["body"], res.type_name, top=True)
    return problems, missing


class _Checker:
    def __init__(self, nodes: list[dict[str, Any]], data: bytes, where: str, problems: list[str]) -> None:
        self.nodes, self.data, self.where, self.problems = nodes, data, where, problems

    def deref(self, ref: dict[str, Any]) -> dict[str, Any]:
        target = ref["$ref"]
        if not target.startswith("#/"):
            raise ValueError(f"cross-file reference {target} is not supported")
        return self.nodes[int(target[2:])]

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{self.where}: {path}: {message}")

    # ------------------------------------------------------------------ objects

    def object_properties(self, node: Any, declared: dict[str, Any]) -> dict[str, Any]:
        """Properties of an ObjectType or DiscriminatedObjectType, the discriminator resolved
        from the literal object when it is written there."""
        if declared["$type"] == "ObjectType":
            return {"properties": declared.get("properties", {}), "additional": declared.get("additionalProperties")}
        properties = dict(declared.get("baseProperties", {}))
        key = declared["discriminator"]
        written = self.literal_of(node, key)
        elements = declared.get("elements", {})
        properties[key] = {"type": {"$ref": "__discriminator__"}, "flags": REQUIRED, "values": sorted(elements)}
        if isinstance(written, str) and written in elements:
            extra = self.deref(elements[written])
            properties.update(extra.get("properties", {}))
        else:  # unknown or not literal: any element's properties may appear
            for ref in elements.values():
                for name, prop in self.deref(ref).get("properties", {}).items():
                    properties.setdefault(name, {**prop, "flags": prop.get("flags", 0) & ~REQUIRED})
        return {"properties": properties, "additional": None}

    def literal_of(self, node: Any, key: str) -> Any:
        for prop in (c for c in node.children if c.type == "object_property"):
            if self.key(prop) == key:
                return self.literal(prop.children[-1])
        return None

    def key(self, prop: Any) -> str:
        first = prop.children[0]
        return _string_value(self.data, first) or "" if first.type == "string" else _text(self.data, first)

    def object(self, node: Any, ref: dict[str, Any], path: str, *, top: bool = False) -> None:
        declared = self.deref(ref) if "$ref" in ref else ref
        kind = declared["$type"]
        if kind == "AnyType":
            return
        if kind == "UnionType":
            objects = [self.deref(e) for e in declared["elements"]]
            objects = [o for o in objects if o["$type"] in ("ObjectType", "DiscriminatedObjectType", "AnyType")]
            if not objects:
                self.fail(path, f"an object is written where {self.describe(declared)} is expected")
            elif len(objects) == 1:
                self.object(node, objects[0], path)
            return
        if kind not in ("ObjectType", "DiscriminatedObjectType"):
            self.fail(path, f"an object is written where {self.describe(declared)} is expected")
            return
        shape = self.object_properties(node, declared)
        properties: dict[str, Any] = shape["properties"]
        by_lower = {name.lower(): name for name in properties}
        written: set[str] = set()
        for prop in (c for c in node.children if c.type == "object_property"):
            name = self.key(prop)
            value = prop.children[-1]
            here = f"{path}.{name}"
            if top and name in BICEP_KEYWORDS:
                continue
            if name not in properties:
                if name.lower() in by_lower:
                    self.fail(here, f"wrong case: the property is {by_lower[name.lower()]!r}")
                    name = by_lower[name.lower()]
                elif shape["additional"] is not None:
                    self.value(value, shape["additional"], here)
                    continue
                else:
                    close = ", ".join(sorted(properties)) or "none"
                    self.fail(here, f"unknown property {name!r}; allowed: {close}")
                    continue
            written.add(name)
            declared_prop = properties[name]
            flags = declared_prop.get("flags", 0)
            if flags & READ_ONLY:
                self.fail(here, "is read-only (set by Azure, not by a deployment)")
                continue
            if declared_prop["type"].get("$ref") == "__discriminator__":
                literal = self.literal(value)
                if isinstance(literal, str) and literal not in declared_prop["values"]:
                    self.fail(here, f"{literal!r} is not one of {', '.join(declared_prop['values'])}")
                continue
            self.value(value, declared_prop["type"], here)
        for name, declared_prop in properties.items():
            flags = declared_prop.get("flags", 0)
            if flags & REQUIRED and not flags & READ_ONLY and name not in written:
                self.fail(f"{path}.{name}", "is required but not set")

    def identifiers(self, node: Any, ref: dict[str, Any], path: str) -> None:
        """An `existing` reference names the resource by the type's identifiers, nothing else."""
        declared = self.deref(ref)
        properties = declared.get("properties", {})
        # Azure resource types are named by `name`; Graph types flag their identifiers.
        allowed = {name for name, prop in properties.items() if prop.get("flags", 0) & IDENTIFIER or name == "name"}
        for prop in (c for c in node.children if c.type == "object_property"):
            name = self.key(prop)
            if name in BICEP_KEYWORDS:
                continue
            if name not in allowed:
                self.fail(
                    f"{path}.{name}",
                    f"an existing resource is named by {', '.join(sorted(allowed)) or 'nothing'}, not {name!r}",
                )
                continue
            self.value(prop.children[-1], properties[name]["type"], f"{path}.{name}")

    # ------------------------------------------------------------------ values

    def value(self, node: Any, ref: dict[str, Any], path: str) -> None:
        declared = self.deref(ref) if "$ref" in ref else ref
        if node.type == "object":
            self.object(node, declared, path)
            return
        if node.type == "array":
            items = [c for c in node.children if c.type not in ("[", "]", ",")]
            if declared["$type"] == "ArrayType":
                for n, item in enumerate(items):
                    self.value(item, declared["itemType"], f"{path}[{n}]")
            elif declared["$type"] == "UnionType":
                arrays = [e for e in declared["elements"] if self.deref(e)["$type"] == "ArrayType"]
                if len(arrays) == 1:
                    self.value(node, arrays[0], path)
                elif not arrays and not self.accepts_any(declared):
                    self.fail(path, f"an array is written where {self.describe(declared)} is expected")
            elif declared["$type"] != "AnyType":
                self.fail(path, f"an array is written where {self.describe(declared)} is expected")
            return
        literal = self.literal(node)
        if literal is _NOT_LITERAL:
            if node.type == "string" and not self.accepts(declared, _INTERPOLATED):
                self.fail(path, f"a string is written where {self.describe(declared)} is expected")
            return
        if literal is None:
            return
        if not self.accepts(declared, literal):
            self.fail(path, f"{json.dumps(literal)} does not match {self.describe(declared)}")

    def literal(self, node: Any) -> Any:
        if node.type == "string":
            value = _string_value(self.data, node)
            return _NOT_LITERAL if value is None else value
        if node.type == "number":
            return int(_text(self.data, node))
        if node.type == "unary_expression" and _text(self.data, node).lstrip("-").strip().isdigit():
            return int(_text(self.data, node).replace(" ", ""))
        if node.type == "boolean":
            return _text(self.data, node) == "true"
        if node.type == "null":
            return None
        return _NOT_LITERAL

    def accepts_any(self, declared: dict[str, Any]) -> bool:
        return declared["$type"] == "AnyType" or (
            declared["$type"] == "UnionType" and any(self.deref(e)["$type"] == "AnyType" for e in declared["elements"])
        )

    def accepts(self, declared: dict[str, Any], value: Any) -> bool:
        kind = declared["$type"]
        if kind == "AnyType":
            return True
        if kind == "UnionType":
            return any(self.accepts(self.deref(e), value) for e in declared["elements"])
        if value is _INTERPOLATED:  # a string whose text is only known at deployment
            return kind in ("StringType", "StringLiteralType")
        if isinstance(value, bool):
            return bool(kind == "BooleanType")
        if isinstance(value, int):
            if kind != "IntegerType":
                return False
            return bool(declared.get("minValue", value) <= value <= declared.get("maxValue", value))
        if isinstance(value, str):
            if kind == "StringLiteralType":
                return bool(declared["value"] == value)
            if kind != "StringType":
                return False
            return bool(declared.get("minLength", 0) <= len(value) <= declared.get("maxLength", len(value)))
        return False

    def describe(self, declared: dict[str, Any]) -> str:
        kind = declared["$type"]
        if kind == "StringLiteralType":
            return repr(declared["value"])
        if kind == "UnionType":
            return " | ".join(self.describe(self.deref(e)) for e in declared["elements"])
        if kind == "IntegerType" and ("minValue" in declared or "maxValue" in declared):
            return f"int {declared.get('minValue', '')}..{declared.get('maxValue', '')}"
        if kind == "StringType" and ("minLength" in declared or "maxLength" in declared):
            return f"string of length {declared.get('minLength', 0)}..{declared.get('maxLength', '')}"
        names = {"StringType": "string", "IntegerType": "int", "BooleanType": "bool", "ArrayType": "array"}
        return str(names.get(kind, declared.get("name", kind)))


class _NotLiteral:
    pass


_NOT_LITERAL: Any = _NotLiteral()
_INTERPOLATED: Any = _NotLiteral()
_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


def _text(data: bytes, node: Any) -> str:
    return data[node.start_byte : node.end_byte].decode()


def _string_value(data: bytes, node: Any) -> str | None:
    """The text of a string literal, or None if it is interpolated."""
    parts = []
    for child in node.children:
        if child.type == "interpolation":
            return None
        if child.type == "string_content":
            parts.append(_text(data, child))
        elif child.type == "escape_sequence":
            raw = _text(data, child)
            parts.append(_ESCAPES.get(raw, raw))
    return "".join(parts)
