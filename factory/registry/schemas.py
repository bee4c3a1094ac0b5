"""The JSON Schemas of registry documents, and validating a parsed document.

Every registry YAML file is one document of a ``kind`` (``tasks``,
``architecture``, ``checkpoints``); each kind has a draft 2020-12 schema in
``schemas/<kind>.schema.json``, shipped in the wheel next to ``registry.d/``.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.errors import SchemaError
from factory.paths import data_dir

if TYPE_CHECKING:
    from factory.registry.yamlio import Document

KINDS = ("tasks", "architecture", "checkpoints")
SCHEMA_VERSION = 1


def schema_path(kind: str) -> Path:
    return data_dir() / "schemas" / f"{kind}.schema.json"


@cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a document kind."""
    if kind not in KINDS:
        raise SchemaError(f"unknown document kind {kind!r}", hint=f"kinds: {', '.join(KINDS)}")
    loaded: dict[str, Any] = json.loads(schema_path(kind).read_text(encoding="utf-8"))
    return loaded


@cache
def _validator(kind: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(_inline_refs(schema(kind)))


def _inline_refs(node: Any, defs: dict[str, Any] | None = None) -> Any:
    """The schema with its local ``#/$defs/...`` references replaced by their targets.

    Same meaning (our schemas are not recursive), but validation skips the reference
    resolution that otherwise takes a third of a cold registry load.
    """
    if defs is None:
        defs = node.get("$defs", {}) if isinstance(node, dict) else {}
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    ref = out.pop("$ref", None)
    if ref is None:
        return out
    target = _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
    annotations = {"description", "title", "default", "examples"}
    if set(out) <= annotations and not set(out) & set(target):
        return {**target, **out}
    return {**out, "allOf": [target]}


def validate(doc: Document) -> list[SchemaError]:
    """All schema violations of ``doc``, each with file, line, column and JSON path."""
    data = doc.data
    if not isinstance(data, dict):
        line, col = doc.where(())
        return [
            SchemaError(
                f"a registry document is a mapping, found {type(data).__name__}",
                file=doc.path,
                line=line,
                column=col,
                json_path="$",
                hint=f"start with schema_version: {SCHEMA_VERSION} and kind: one of {', '.join(KINDS)}",
            )
        ]
    kind = data.get("kind")
    if kind not in KINDS:
        line, col = doc.where(("kind",))
        return [
            SchemaError(
                f"'kind' must be one of {', '.join(KINDS)}, found {kind!r}",
                file=doc.path,
                line=line,
                column=col,
                json_path="$.kind",
                hint="every registry file declares its kind (and schema_version)",
            )
        ]
    from jsonschema.exceptions import best_match

    errors = []
    for err in _validator(kind).iter_errors(data):
        path, message, hint = _describe(best_match([err]))
        line, col = doc.where(path)
        errors.append(SchemaError(message, file=doc.path, line=line, column=col, json_path=_json_path(path), hint=hint))
    return sorted(errors, key=lambda e: (e.line, e.column or 0, e.message))


def _json_path(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _describe(err: Any) -> tuple[tuple[str | int, ...], str, str | None]:
    """(JSON path of the offending value, message, hint) for one jsonschema error.

    Messages name what was expected in words (the schema's ``description``)
    rather than a regular expression, and point at the offending key itself for
    unknown keys and malformed key names.
    """
    path = tuple(err.absolute_path)
    schema_ = err.schema if isinstance(err.schema, dict) else {}
    description = schema_.get("description")
    where = _json_path(path)
    validator = err.validator
    if path and path[-1] == "override" and validator in ("type", "minLength"):
        return (
            path,
            (f"{where}: an override needs a reason, found {err.instance!r}"),
            (
                "write `override: <why this replaces the entry of an earlier source>`; "
                "without an override, remove the key"
            ),
        )
    if "propertyNames" in err.relative_schema_path and isinstance(err.instance, str):
        key_path = path + (err.instance,)
        expected = description or f"a name matching {err.validator_value}"
        return key_path, f"{_json_path(key_path)}: key {err.instance!r} is malformed, expected {expected}", None
    if validator == "additionalProperties" and err.validator_value is False and isinstance(err.instance, dict):
        allowed = list(schema_.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        if extra:
            key = extra[0]
            close = difflib.get_close_matches(str(key), allowed, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            return (
                path + (key,),
                f"{_json_path(path + (key,))}: unknown key {key!r}{guess}",
                (f"allowed keys here: {', '.join(allowed)}"),
            )
    if validator == "pattern":
        expected = description or f"a value matching {err.validator_value}"
        return path, f"{where}: {err.instance!r} is malformed, expected {expected}", None
    if validator in ("oneOf", "anyOf") and description:
        return path, f"{where}: expected {description}, found {err.instance!r}", None
    if validator == "const":
        return path, f"{where}: expected {err.validator_value!r}, found {err.instance!r}", description
    if validator in ("required", "additionalProperties"):
        return path, f"{where}: {err.message}", None
    return path, f"{where}: {err.message}", description
