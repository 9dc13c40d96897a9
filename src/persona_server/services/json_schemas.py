"""Caller-supplied JSON Schemas: parsed, bounded and checked once, the same way everywhere.

A schema is input like any other: it may be huge, nested thousands of levels deep (which makes
the JSON parser and the schema checker recurse until Python gives up), point at remote
documents, or use keywords whose evaluation Persona cannot bound. Every check is made before
the schema is used, so a bad one is one clear problem about `json_schema` and nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_NODES = 2000
MAX_SCHEMA_DEPTH = 32
_UNSUPPORTED_KEYS = ("$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor")


class SchemaProblem(ValueError):
    """What is wrong with a schema, as a sentence about it (without the field name)."""


def _text_depth(text: str) -> int:
    """The deepest nesting of objects and arrays in JSON text, brackets inside strings not
    counted. Linear and without recursion, so it runs before the parser does."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _finite(number: str) -> float:
    value = float(number)
    if value in (float("inf"), float("-inf")):
        raise SchemaProblem(f"has a number too large for a float: {number[:40]}")
    return value


def _not_json(constant: str) -> None:
    # Python's parser accepts NaN and Infinity; JSON does not, and neither would the model.
    raise SchemaProblem(f"is not valid JSON: {constant} is not a JSON value")


def parse(text: str) -> dict[str, Any]:
    """The schema in `text`, or `SchemaProblem` saying why it cannot be used."""
    if not text.strip():
        raise SchemaProblem("is required")
    size = len(text.encode("utf-8"))
    if size > MAX_SCHEMA_BYTES:
        raise SchemaProblem(f"must be at most {MAX_SCHEMA_BYTES} bytes, got {size}")
    # A schema's own depth counts from 0 at the root; its text's brackets from 1.
    if _text_depth(text) > MAX_SCHEMA_DEPTH + 1:
        raise SchemaProblem(f"is nested more than {MAX_SCHEMA_DEPTH} levels deep")
    try:
        schema = json.loads(text, parse_float=_finite, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        # ValueError covers malformed JSON and numbers Python refuses to read (an integer of
        # more than 4,300 digits).
        raise SchemaProblem(f"is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(schema, dict):
        raise SchemaProblem("must be a JSON object")
    check(schema)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path) or "(root)"
        raise SchemaProblem(f"is not a valid JSON Schema at {path}: {exc.message}") from None
    return schema


def check(schema: Any) -> None:
    """Bounds and supported features of a parsed schema (`SchemaProblem` if not)."""
    nodes = 0

    def walk(node: Any, depth: int) -> None:
        nonlocal nodes
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise SchemaProblem(f"is too large: more than {MAX_SCHEMA_NODES} nodes")
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaProblem(f"is nested more than {MAX_SCHEMA_DEPTH} levels deep")
        if isinstance(node, dict):
            for key in _UNSUPPORTED_KEYS:
                if key in node:
                    raise SchemaProblem(f"uses {key}, which is not supported")
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                raise SchemaProblem(
                    f"has a remote $ref ({ref[:100]}); only local refs (#/$defs/...) are supported"
                )
            for value in node.values():
                walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    walk(schema, 0)
