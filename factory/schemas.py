"""The JSON Schemas of registry documents, and validating a parsed document.

Every registry YAML file is one document of a ``kind`` (``tasks``,
``architecture``, ``checkpoints``); each kind has a draft 2020-12 schema in
``schemas/<kind>.schema.json``, shipped in the wheel next to ``registry.d/``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import SchemaError
from .yamlio import Document

KINDS = ("tasks", "architecture", "checkpoints")
SCHEMA_VERSION = 1


def data_dir() -> Path:
    """Directory holding ``schemas/`` and ``registry.d/`` (wheel and editable installs alike)."""
    return Path(__file__).resolve().parent / "_data"


def schema_path(kind: str) -> Path:
    return data_dir() / "schemas" / f"{kind}.schema.json"


@lru_cache(maxsize=None)
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a document kind."""
    if kind not in KINDS:
        raise SchemaError(f"unknown document kind {kind!r}", hint=f"kinds: {', '.join(KINDS)}")
    return json.loads(schema_path(kind).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _validator(kind: str):
    import jsonschema

    return jsonschema.Draft202012Validator(schema(kind))


def validate(doc: Document) -> list[SchemaError]:
    """All schema violations of ``doc``, each with file, line, column and JSON path."""
    data = doc.data
    if not isinstance(data, dict):
        return [SchemaError(
            f"a registry document is a mapping, found {type(data).__name__}",
            file=doc.path, line=1, json_path="$", hint=f"start with schema_version: {SCHEMA_VERSION} and kind: one of {', '.join(KINDS)}",
        )]
    kind = data.get("kind")
    if kind not in KINDS:
        line, col = doc.where(("kind",))
        return [SchemaError(
            f"'kind' must be one of {', '.join(KINDS)}, found {kind!r}",
            file=doc.path, line=line, column=col, json_path="$.kind",
            hint="every registry file declares its kind (and schema_version)",
        )]
    from jsonschema.exceptions import best_match

    errors = []
    for err in sorted(_validator(kind).iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        err = best_match([err])
        path = tuple(err.absolute_path)
        line, col = doc.where(path)
        errors.append(SchemaError(
            _describe(err), file=doc.path, line=line, column=col,
            json_path=_json_path(path), hint=err.schema.get("description") if isinstance(err.schema, dict) else None,
        ))
    return errors


def _json_path(path: tuple) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _describe(err) -> str:
    where = _json_path(tuple(err.absolute_path))
    if err.validator == "pattern":
        return f"{where}: {err.instance!r} is malformed (expected to match {err.validator_value})"
    if err.validator == "additionalProperties":
        return f"{where}: {err.message}"
    if err.validator == "const":
        return f"{where}: expected {err.validator_value!r}, found {err.instance!r}"
    return f"{where}: {err.message}"
