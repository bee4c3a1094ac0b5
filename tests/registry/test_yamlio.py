"""factory.yamlio: safe YAML with positions; every bad input is a YAMLSyntaxError with file:line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory.errors import FactoryError, RegistryError, YAMLSyntaxError
from factory.registry.yamlio import MAX_DEPTH, NODE_BUDGET, load_document, parse_text
from factory.untrusted import MAX_YAML_BYTES

GOOD = """\
# a comment
schema_version: 1
kind: architecture
architecture: toy
tasks:
  model: pkg.mod:Model
  causal-lm:
    target: pkg.mod:LM
rules:
  - when: {has_key: layer_types}
    dispatch_as: other
"""


def load(tmp_path: Path, text: str | bytes, name: str = "doc.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_document(path), path


def raises_at(tmp_path: Path, text: str | bytes, line: int, *words: str) -> YAMLSyntaxError:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(YAMLSyntaxError) as info:
        load_document(path)
    err = info.value
    assert err.file == str(path)
    assert err.line == line
    assert str(err).startswith(f"{path}:{line}")
    for word in words:
        assert word in err.message
    return err


def test_values_and_positions(tmp_path):
    doc, path = load(tmp_path, GOOD)
    assert doc.path == path
    assert doc.data["tasks"] == {"model": "pkg.mod:Model", "causal-lm": {"target": "pkg.mod:LM"}}
    assert doc.data["rules"][0]["when"] == {"has_key": "layer_types"}
    assert doc.where(("kind",)) == (3, 1)
    assert doc.line("tasks", "model") == 6
    assert doc.where(("tasks", "causal-lm", "target")) == (8, 5)
    assert doc.line("rules", 0) == 10
    assert doc.where(("rules", 0, "dispatch_as")) == (11, 5)
    # an unknown path falls back to its nearest known parent
    assert doc.line("tasks", "causal-lm", "nope", 3) == 7
    assert doc.where(("nothing",)) == doc.where(()) == (2, 1)  # the root mapping, after the comment


def test_plain_scalars_and_aliases_within_budget(tmp_path):
    doc, _ = load(tmp_path, "a: &x [1, 2.5, true, null, '007']\nb: *x\nwhen: 2024-01-02\n")
    assert doc.data["a"] == [1, 2.5, True, None, "007"]
    assert doc.data["b"] == doc.data["a"]
    assert doc.data["when"] == "2024-01-02"  # timestamps stay text: JSON Schema speaks strings


def test_bom_is_accepted(tmp_path):
    doc, _ = load(tmp_path, b"\xef\xbb\xbfkind: tasks\n")
    assert doc.data == {"kind": "tasks"}


def test_parse_text_names_the_given_path():
    with pytest.raises(YAMLSyntaxError) as info:
        parse_text("a: [1\n", "blob/at/HEAD.yaml")
    assert info.value.file == "blob/at/HEAD.yaml"


def test_syntax_error(tmp_path):
    err = raises_at(tmp_path, "kind: architecture\ntasks: [model, causal-lm\nsummary: x\n", 3, "invalid YAML")
    assert err.column is not None
    assert isinstance(err, RegistryError) and isinstance(err, FactoryError)


def test_bad_indentation(tmp_path):
    raises_at(tmp_path, "tasks:\n  model: a.b:C\n causal-lm: a.b:D\n", 3, "invalid YAML")


def test_duplicate_key_names_both_lines(tmp_path):
    err = raises_at(
        tmp_path,
        "kind: architecture\ntasks:\n  model: a.b:C\n  other: a.b:E\n  model: a.b:D\n",
        5,
        "duplicate key 'model'",
        "line 3",
    )
    assert err.column == 3
    assert "last value" in err.hint


def test_duplicate_key_in_flow_mapping(tmp_path):
    raises_at(tmp_path, "a: 1\nb: {x: 1, y: 2, x: 3}\n", 2, "duplicate key 'x'")


def test_duplicate_top_level_key(tmp_path):
    raises_at(tmp_path, "kind: tasks\nschema_version: 1\nkind: architecture\n", 3, "duplicate key 'kind'", "line 1")


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object:os.system {}",
        "!!python/object/apply:os.system ['touch MARKER']",
        "!!python/name:os.system",
        "!custom {a: 1}",
        "!!binary aGVsbG8=",
        "!!set {a, b}",
    ],
)
def test_custom_tags_are_rejected(tmp_path, tagged, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = raises_at(tmp_path, f"kind: architecture\nsummary: {tagged}\n", 2, "tag", "not allowed")
    assert "plain values" in err.hint
    assert not (tmp_path / "MARKER").exists()


def test_python_object_tag_at_document_root(tmp_path):
    raises_at(tmp_path, "!!python/object:collections.OrderedDict\nx: 1\n", 1, "python/object")


def test_merge_keys_are_rejected(tmp_path):
    raises_at(tmp_path, "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", 3, "merge keys")


def test_non_scalar_keys_are_rejected(tmp_path):
    raises_at(tmp_path, "? [a, b]\n: 1\n", 1, "keys must be plain scalars")


def test_billion_laughs_fails_fast(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    start = time.perf_counter()
    # the error names the entry whose expansion crossed the budget (f: 9**6 values), not the anchor
    err = raises_at(tmp_path, "\n".join(lines) + "\n", 6, "alias-expansion bomb", str(NODE_BUDGET))
    assert time.perf_counter() - start < 10  # ~9**9 values if expanded; stops after the budget
    assert "aliases" in err.hint


def test_deep_nesting_is_an_error_not_a_crash(tmp_path):
    depth = MAX_DEPTH + 10
    raises_at(tmp_path, "a: " + "[" * depth + "]" * depth + "\n", 1, "nested")
    # beyond what the parser itself accepts: still a YAMLSyntaxError
    raises_at(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n", 1)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n"])
def test_empty_file(tmp_path, text):
    err = raises_at(tmp_path, text, 1, "empty")
    assert "delete the file" in err.hint


def test_non_utf8_file(tmp_path):
    err = raises_at(tmp_path, b"kind: architecture\nsummary: caf\xe9\n", 2, "not valid UTF-8", "0xe9")
    assert "UTF-8" in err.hint


def test_utf16_file_is_not_utf8(tmp_path):
    raises_at(tmp_path, "kind: tasks\n".encode("utf-16"), 1, "not valid UTF-8")


def test_several_documents_in_one_file(tmp_path):
    raises_at(tmp_path, "kind: tasks\n---\nkind: architecture\n", 2, "invalid YAML", "single document")


def test_unreadable_path_is_a_registry_error(tmp_path):
    with pytest.raises(RegistryError) as info:
        load_document(tmp_path)  # a directory
    assert info.value.file == str(tmp_path)
    assert "is a directory, not a regular file" in info.value.message
    with pytest.raises(RegistryError, match="file does not exist"):
        load_document(tmp_path / "missing.yaml")


# --- sizes, kinds and budgets --------------------------------------------------------------------
@pytest.mark.parametrize("size", [MAX_YAML_BYTES + 1, 50 * 2**20, 2**40])
def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path, size):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:  # sparse: the size without the bytes
        fh.truncate(size)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="larger than the 1 MiB limit for a registry YAML file") as info:
        load_document(path)
    assert info.value.file == str(path) and "alias" not in str(info.value)
    assert time.monotonic() - started < 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path, finishes):
    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(RegistryError, match="is a FIFO"):
        finishes(lambda: load_document(tmp_path / "pipe.yaml"))


def test_the_value_budget_fits_in_the_size_limit():
    """A file under the size limit can hold more values than the budget: the budget message must be honest."""
    assert len(("a: [" + "1," * (NODE_BUDGET + 1) + "]\n").encode()) <= MAX_YAML_BYTES


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "a: [" + ", ".join(["1"] * (n + 1)) + "]\n",
        lambda n: "{" + ",".join(f"{i}: 0" for i in range(n // 2 + 1)) + "}",
        lambda n: "a:\n" + "- 1\n" * (n + 1),
    ],
    ids=["flow-list", "many-keys", "block-list"],
)
def test_a_file_with_too_many_values_says_so_without_blaming_aliases(tmp_path, monkeypatch, make):
    from factory.registry import yamlio

    monkeypatch.setattr(yamlio, "NODE_BUDGET", 2000)  # the real budget (200,000) takes seconds to reach
    path = tmp_path / "many.yaml"
    path.write_text(make(2000))
    with pytest.raises(YAMLSyntaxError, match="document holds more than 2000 values") as info:
        load_document(path)
    assert "alias" not in str(info.value)


@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_text_parses_or_is_a_yaml_syntax_error(text):
    started = time.monotonic()
    try:
        doc = parse_text(text, "x.yaml")
    except YAMLSyntaxError as err:
        assert err.file == "x.yaml"
    else:
        assert doc.path == Path("x.yaml")
    assert time.monotonic() - started < 2


_YAML_PIECES = st.sampled_from(
    [
        "a",
        ":",
        " ",
        "\n",
        "  ",
        "- ",
        "&x ",
        "*x",
        "[",
        "]",
        "{",
        "}",
        ",",
        "!!python/object:os.system",
        "<<: ",
        "'",
        '"',
        "#",
        "---",
        "1",
        "null",
        "\t",
    ]
)


@given(pieces=st.lists(_YAML_PIECES, max_size=60))
def test_any_yaml_like_text_parses_or_is_a_yaml_syntax_error(pieces):
    started = time.monotonic()
    try:
        parse_text("".join(pieces), "x.yaml")
    except YAMLSyntaxError as err:
        assert err.file == "x.yaml"
    assert time.monotonic() - started < 2
