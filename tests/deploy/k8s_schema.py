"""Validate a Kubernetes object against a CRD's OpenAPI v3 schema, as the API server would.

jsonschema checks types, enums, required fields and formats it knows; on top, fields the schema
does not declare are errors (`kubectl apply --validate=strict`: the API server would otherwise
drop them silently) unless the schema preserves unknown fields. CEL rules
(`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

from typing import Any

import jsonschema


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of fields in `value` that `schema` does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        found: list[str] = []
        for key, item in value.items():
            where = f"{path}.{key}"
            if props is not None and key in props:
                found += unknown_fields(item, props[key], where)
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, where)
            elif props is not None and extra in (None, False):
                found.append(where)
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            error
            for i, item in enumerate(value)
            for error in unknown_fields(item, schema["items"], f"{path}[{i}]")
        ]
    return []


def problems(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every schema violation and undeclared field of `document` (empty: valid)."""
    validator = jsonschema.Draft4Validator(schema)
    found = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    return found + [
        f"{path}: field not declared by the schema" for path in unknown_fields(document, schema)
    ]
