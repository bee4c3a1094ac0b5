"""factory.schemas: draft 2020-12 schemas; violations carry file, line, column and JSON path."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import jsonschema
import pytest

from factory.errors import SchemaError
from factory.registry import schemas
from factory.registry.sources import builtin_dir
from factory.registry.yamlio import load_document


def violations(tmp_path: Path, text: str, name: str = "doc.yaml") -> list[SchemaError]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    errors = schemas.validate(load_document(path))
    for err in errors:
        assert isinstance(err, SchemaError)
        assert err.file == str(path)
        assert err.line is not None and err.column is not None
        assert str(err).startswith(f"{path}:{err.line}:{err.column}: ")
    return errors


def one(tmp_path: Path, text: str) -> SchemaError:
    errors = violations(tmp_path, text)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


@pytest.mark.parametrize("kind", schemas.KINDS)
def test_schemas_are_valid_draft_2020_12(kind):
    doc = schemas.schema(kind)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(doc)
    assert schemas.schema_path(kind).is_file()
    assert doc["properties"]["schema_version"] == {**doc["properties"]["schema_version"], "const": 1}


def test_unknown_schema_kind():
    with pytest.raises(SchemaError, match="unknown document kind 'nope'") as info:
        schemas.schema("nope")
    assert "architecture" in info.value.hint


def test_every_builtin_file_names_its_schema():
    """Each registry.d YAML file starts with the yaml-language-server line for its kind's schema."""
    files = sorted(p for p in builtin_dir().rglob("*") if p.suffix in (".yaml", ".yml"))
    assert files
    pattern = re.compile(r"# yaml-language-server: \$schema=(\S+)")
    for path in files:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        match = pattern.fullmatch(first)
        assert match, f"{path}: first line must be '# yaml-language-server: $schema=...', found {first!r}"
        kind = load_document(path).data["kind"]
        target = (path.parent / match.group(1)).resolve()
        assert target == schemas.schema_path(kind).resolve(), f"{path} points at {match.group(1)}"


def test_valid_documents_pass(tmp_path, arch_yaml):
    assert (
        violations(
            tmp_path,
            arch_yaml(
                "toy",
                {"model": "pkg.mod:Model", "causal-lm": "pkg.mod.LM"},
                """\
        config: {target: pkg.mod:Cfg, deprecated: {since: "0.1", replacement: x}, lint: {F001: reviewed}}
        components:
          tokenizer: pkg.tok:Tok
        rules:
          - when: {has_key: layer_types, equals: {sliding_window: 4096}}
            dispatch_as: other
            reason: why
        layer: pack
        builder: transformers
        """,
            ),
        )
        == []
    )
    assert (
        violations(
            tmp_path,
            """\
        schema_version: 1
        kind: checkpoints
        checkpoints:
          org/name-1.5:
            hub: {repo: org/name, revision: 0123456789abcdef0123456789abcdef01234567}
            sha256: {model.safetensors: '0000000000000000000000000000000000000000000000000000000000000000'}
          here: {path: ../ckpt}
          shipped: {package: {distribution: some-dist, path: some_dist/model}}
        """,
        )
        == []
    )


def test_violation_deep_in_a_document(tmp_path, arch_yaml):
    err = one(
        tmp_path,
        arch_yaml(
            "toy",
            extra="""\
        rules:
          - when: {has_key: a}
            dispatch_as: other
          - when:
              equals: {}
            dispatch_as: other
        """,
        ),
    )
    assert err.json_path == "$.rules[1].when.equals"
    assert (err.line, err.column) == (10, 7)
    assert err.message.startswith("$.rules[1].when.equals: ")
    assert "non-empty" in err.message


def test_deep_violation_in_checkpoints(tmp_path):
    err = one(
        tmp_path,
        """\
        schema_version: 1
        kind: checkpoints
        checkpoints:
          a: {path: x}
          b:
            hub: {repo: org/b}
            sha256:
              model.safetensors: not-a-sha
        """,
    )
    assert err.json_path == "$.checkpoints.b.sha256.model.safetensors"
    assert err.line == 8


@pytest.mark.parametrize("override", ['""', "true", "[]", "null"])
def test_override_without_a_reason(tmp_path, override, arch_yaml):
    err = one(tmp_path, arch_yaml("toy", {"model": "a.b:C", "causal-lm": f"{{target: a.b:D, override: {override}}}"}))
    assert err.json_path == "$.tasks.causal-lm.override"
    assert err.line == 6
    assert "an override needs a reason" in err.message
    assert "override: <why" in err.hint


@pytest.mark.parametrize(
    "target",
    [
        "pkg..mod:X",
        "pkg mod",
        "pkg.mod:",
        ":X",
        "1pkg.mod:X",
        "pkg.mod:X:Y",
        "pkg-name.mod:X",
        "pkg/mod.py:X",
        "",
    ],
)
def test_malformed_dotted_path(tmp_path, target, arch_yaml):
    err = one(tmp_path, arch_yaml("toy", {"model": json.dumps(target)}))
    assert err.json_path == "$.tasks.model"
    assert err.line == 5
    assert "malformed" in err.message
    assert "package.module:Attr" in err.message


def test_malformed_dotted_path_in_a_mapping_entry(tmp_path, arch_yaml):
    err = one(tmp_path, arch_yaml("toy", {"model": "{target: 'pkg..mod:X'}"}))
    assert err.json_path == "$.tasks.model.target"
    assert "'pkg..mod:X' is malformed, expected a dotted import path" in err.message


@pytest.mark.parametrize("target", ["pkg.mod:Model", "pkg.mod.Model", "pkg:Outer.Inner", "_p.m2:X_1", "pkg"])
def test_well_formed_dotted_paths(tmp_path, target, arch_yaml):
    assert violations(tmp_path, arch_yaml("toy", {"model": target})) == []


def test_entry_of_the_wrong_type(tmp_path, arch_yaml):
    err = one(tmp_path, arch_yaml("toy", {"model": "3"}))
    assert "expected a target 'package.module:Attr', or a mapping with 'target'" in err.message
    assert err.message.endswith("found 3")


def test_unknown_key_points_at_the_key_and_guesses(tmp_path, arch_yaml):
    err = one(tmp_path, arch_yaml("toy", extra="sumary: typo\n"))
    assert err.json_path == "$.sumary"
    assert err.line == 6
    assert "unknown key 'sumary' (did you mean 'summary'?)" in err.message
    assert "allowed keys here" in err.hint
    err = one(tmp_path, arch_yaml("toy", {"model": "{target: a.b:C, overide: why}"}))
    assert err.json_path == "$.tasks.model.overide"
    assert "did you mean 'override'?" in err.message


def test_malformed_key(tmp_path, arch_yaml):
    err = one(tmp_path, arch_yaml("toy", {"model": "a.b:C", "Causal LM": "a.b:D"}))
    assert err.json_path == "$.tasks.Causal LM"
    assert err.line == 6
    assert "key 'Causal LM' is malformed, expected a lower-case name" in err.message


def test_missing_required_key(tmp_path):
    err = one(tmp_path, "schema_version: 1\nkind: architecture\narchitecture: toy\n")
    assert err.json_path == "$"
    assert "'tasks' is a required property" in err.message


def test_schema_version_must_be_known(tmp_path, arch_yaml):
    err = one(tmp_path, arch_yaml("toy").replace("schema_version: 1", "schema_version: 2"))
    assert err.json_path == "$.schema_version"
    assert err.line == 1
    assert "expected 1, found 2" in err.message


@pytest.mark.parametrize(
    "text, found",
    [
        ("schema_version: 1\narchitecture: toy\n", "None"),
        ("schema_version: 1\nkind: model\n", "'model'"),
    ],
)
def test_kind_is_required(tmp_path, text, found):
    err = one(tmp_path, text)
    assert err.json_path == "$.kind"
    assert f"found {found}" in err.message
    assert "kind" in err.hint


def test_document_must_be_a_mapping(tmp_path):
    err = one(tmp_path, "- kind: architecture\n")
    assert err.json_path == "$" and err.line == 1
    assert "mapping, found list" in err.message


def test_checkpoint_needs_exactly_one_source(tmp_path):
    errors = violations(
        tmp_path,
        """\
        schema_version: 1
        kind: checkpoints
        checkpoints:
          both: {hub: {repo: a/b}, path: x}
          neither: {summary: nothing to load}
        """,
    )
    assert [(e.json_path, e.line) for e in errors] == [("$.checkpoints.both", 4), ("$.checkpoints.neither", 5)]
    assert all("exactly one source: 'hub', 'path' or 'package'" in e.message for e in errors)


def test_task_table_violations(tmp_path):
    errors = violations(
        tmp_path,
        """\
        schema_version: 1
        kind: tasks
        tasks:
          - name: ok-task
            group: nlp
            summary: fine
            auto_class: AutoModel
          - name: bad-task
            group: cooking
            summary: ""
            auto_class: NotAuto
            aliases: [x, x]
        """,
    )
    assert [e.json_path for e in errors] == [
        "$.tasks[1].group",
        "$.tasks[1].summary",
        "$.tasks[1].auto_class",
        "$.tasks[1].aliases",
    ]
    assert [e.line for e in errors] == [9, 10, 11, 12]


def test_all_violations_are_reported_in_line_order(tmp_path, arch_yaml):
    errors = violations(
        tmp_path,
        arch_yaml(
            "toy",
            {"model": "a..b", "causal-lm": "{target: x, override: ''}"},
            """\
        layer: sideways
        rules:
          - {when: {}, dispatch_as: other}
        """,
        ),
    )
    assert [e.line for e in errors] == sorted(e.line for e in errors)
    assert [e.json_path for e in errors] == [
        "$.tasks.model",
        "$.tasks.causal-lm.override",
        "$.layer",
        "$.rules[0].when",
    ]
