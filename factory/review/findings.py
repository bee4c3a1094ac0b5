"""Findings (problems found in a registry) as plain dicts, and their output formats.

One shape for every finding, whether a load error, a lint finding or an import check:
``severity``, ``code``, ``file`` (as shown), ``line``, ``column``, ``message``, ``hint``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from factory.errors import FactoryError
from factory.paths import display_path

FORMATS = ("text", "json", "github")


def finding_dict(err: FactoryError, severity: str = "error", code: str | None = None) -> dict[str, Any]:
    """A :class:`FactoryError` as a finding."""
    return {
        "severity": severity,
        "code": code or type(err).__name__,
        "file": display_path(err.file) if err.file else None,
        "line": err.line,
        "column": err.column,
        "message": err.message,
        "hint": err.hint,
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _github(f: dict[str, Any], message: str) -> str:
    level = {"error": "error", "warning": "warning"}.get(f["severity"], "notice")
    props = []
    if f.get("file"):
        props.append(f"file={_escape_prop(f['file'])}")
        if f.get("line"):
            props.append(f"line={f['line']}")
            if f.get("column"):
                props.append(f"col={f['column']}")
    props.append(f"title={_escape_prop(f['code'])}")
    return f"::{level} {','.join(props)}::{_escape_data(message)}"


def _text(f: dict[str, Any], message: str) -> str:
    where = f["file"] or ""
    if f.get("line"):
        where += f":{f['line']}" + (f":{f['column']}" if f.get("column") else "")
    head = f"{where}: " if where else ""
    return f"{head}{f['severity']}: [{f['code']}] {message}"


def format_findings(findings: Sequence[dict[str, Any]], fmt: str) -> str:
    """Render findings as text, JSON or GitHub Actions workflow commands."""
    if fmt == "json":
        return json.dumps(list(findings), indent=2)
    render = _github if fmt == "github" else _text
    return "\n".join(render(f, f["message"] + (f" (hint: {f['hint']})" if f.get("hint") else "")) for f in findings)
