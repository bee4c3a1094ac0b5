"""Parallel plans in the registry: schema, provenance, merge, cache, show, lint (F012-F014),
``validate --import`` against meta-built models, and ``factory diff`` of a changed style."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from factory.cli.main import main
from factory.errors import ConflictError, SchemaError
from factory.paths import data_dir
from factory.registry import cache
from factory.registry.loader import load_sources
from factory.registry.sources import Source
from factory.review.diff import diff_specs
from factory.review.lint import lint_table

REGISTRY = data_dir() / "registry.d"

LLAMA = """\
schema_version: 1
kind: architecture
architecture: llama
config: factory.models.llama:LlamaConfig
tasks:
  model: factory.models.llama:LlamaModel
  causal-lm: factory.models.llama:LlamaForCausalLM
parallel:
  tp:
    embed_tokens: embedding_rowwise
    layers.*.self_attn.q_proj: colwise
    layers.*.self_attn.o_proj: rowwise
    lm_head: colwise_gather_output
{extra}  divisible:
    num_attention_heads: tp
{divisible}  fsdp: [layers.*]
"""


def llama(extra: str = "", divisible: str = "") -> str:
    return LLAMA.format(extra=textwrap.indent(extra, "    "), divisible=textwrap.indent(divisible, "    "))


def registry(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REGISTRY / "tasks.yaml", root / "tasks.yaml")
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def load(*roots: Path):
    sources = [Source("builtin", roots[0])] + [Source("path", r) for r in roots[1:]]
    return load_sources(sources)


def table(root: Path):
    result = load(root)
    assert not result.errors, [str(e) for e in result.errors]
    return result.table


def test_plan_entries_keep_their_file_and_line(tmp_path):
    root = registry(tmp_path / "r", {"llama.yaml": llama()})
    plan = table(root).architectures["llama"].parallel_for("native")
    assert plan is not None and plan.builder == "native"
    assert [(e.path, e.style, e.provenance.line) for e in plan.tp] == [
        ("embed_tokens", "embedding_rowwise", 10),
        ("layers.*.self_attn.q_proj", "colwise", 11),
        ("layers.*.self_attn.o_proj", "rowwise", 12),
        ("lm_head", "colwise_gather_output", 13),
    ]
    assert [(r.key, r.otherwise, r.provenance.line) for r in plan.divisible] == [("num_attention_heads", "error", 15)]
    assert [(u.path, u.provenance.line) for u in plan.fsdp] == [("layers.*", 16)]
    assert plan.provenance.file.endswith("llama.yaml") and plan.provenance.line == 8


@pytest.mark.parametrize(
    "bad, where",
    [
        ("layers.*.mlp.up_proj: colwize\n", "colwize"),
        ("layers.*.mlp.up_proj: {style: colwise, parts: 2}\n", "parts"),
        ("layers..up_proj: colwise\n", "layers..up_proj"),
    ],
    ids=["unknown-style", "parts-on-plain-style", "bad-path"],
)
def test_schema_rejects_malformed_plans(tmp_path, bad, where):
    root = registry(tmp_path / "r", {"llama.yaml": llama(extra=bad)})
    errors = load(root).errors
    assert errors and all(isinstance(e, SchemaError) for e in errors)
    assert any(e.file and e.file.endswith("llama.yaml") for e in errors), [str(e) for e in errors]


def test_replicate_needs_its_modules(tmp_path):
    root = registry(tmp_path / "r", {"llama.yaml": llama(divisible="num_key_value_heads: {by: tp, else: replicate}\n")})
    assert [type(e) for e in load(root).errors] == [SchemaError]


def test_two_plans_for_one_builder_conflict_unless_overridden(tmp_path):
    root = registry(tmp_path / "r", {"llama.yaml": llama(), "llama-again.yaml": llama()})
    errors = load(root).errors
    assert any(
        isinstance(e, ConflictError) and "parallel plan 'llama / native' is defined twice" in str(e) for e in errors
    ), [str(e) for e in errors]
    later = tmp_path / "later"
    later.mkdir()
    (later / "llama.yaml").write_text(
        "schema_version: 1\nkind: architecture\narchitecture: llama\ntasks: {}\nparallel:\n"
        "  override: our own split\n  tp:\n    lm_head: colwise\n"
    )
    result = load(registry(tmp_path / "one", {"llama.yaml": llama()}), later)
    assert not result.errors, [str(e) for e in result.errors]
    plan = result.table.architectures["llama"].parallel_for("native")
    assert [e.path for e in plan.tp] == ["lm_head"] and plan.override == "our own split"
    assert plan.shadows[0].provenance.file.endswith("one/llama.yaml")


def test_the_cache_keeps_plans(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    root = registry(tmp_path / "r", {"llama.yaml": llama()})
    cold = table(root)
    state = json.loads(json.dumps(cache.to_state(cold)))
    warm = cache.from_state(state)
    assert warm.digest == cold.digest
    assert warm.architectures["llama"].parallel == cold.architectures["llama"].parallel


def test_a_plan_changes_the_digest(tmp_path):
    a = table(registry(tmp_path / "a", {"llama.yaml": llama()}))
    b = table(registry(tmp_path / "b", {"llama.yaml": llama().replace("o_proj: rowwise", "o_proj: rowwise_rep")}))
    assert a.digest != b.digest


def test_show_lists_the_plan_with_file_and_line(capsys):
    assert main(["show", "qwen3"]) == 0
    out = capsys.readouterr().out
    assert "parallel plans:" in out and "builder native" in out
    assert "tp    layers.*.self_attn.q_norm" in out and "replicated_with_grad_allreduce" in out
    assert "check num_key_value_heads divisible by tp, else replicate" in out
    assert "registry.d/models/qwen3.yaml:" in out


def findings(root: Path, imports: bool):
    return [f for f in lint_table(table(root), imports=imports) if f.code in ("F012", "F013", "F014")]


def test_lint_flags_a_style_the_native_builder_cannot_apply(tmp_path):
    root = registry(tmp_path / "r", {"llama.yaml": llama(extra="layers.*.input_layernorm: sequence_parallel\n")})
    [f] = findings(root, imports=False)
    assert (f.code, f.severity, f.line) == ("F012", "error", 14)
    assert "'sequence_parallel' of layers.*.input_layernorm is not applied by the native builder" in f.message


def test_lint_warns_only_for_styles_the_pack_builder_cannot_apply(tmp_path):
    pack = llama(extra="layers.*.input_layernorm: sequence_parallel\n").replace(
        "kind: architecture\n", "kind: architecture\nbuilder: transformers\nlayer: pack\n"
    )
    assert findings(registry(tmp_path / "r", {"llama.yaml": pack}), imports=False) == []  # transformers applies it


def test_divisible_modules_must_be_plan_entries(tmp_path):
    rule = "num_key_value_heads: {by: tp, else: replicate, modules: [layers.*.self_attn.kproj]}\n"
    [f] = findings(registry(tmp_path / "r", {"llama.yaml": llama(divisible=rule)}), imports=False)
    assert (
        f.code == "F014" and "names module layers.*.self_attn.kproj, which is not a tensor-parallel entry" in f.message
    )


def test_import_check_builds_the_models_on_meta_and_finds_typos(tmp_path):
    root = registry(
        tmp_path / "r",
        {
            "llama.yaml": llama(
                extra="layers.*.self_attn.qproj: colwise\nlayers.*.input_layernorm: colwise\n",
                divisible="num_kv_heads: tp\n",
            )
        },
    )
    found = {(f.code, f.line): f for f in findings(root, imports=True)}
    assert set(found) == {("F013", 14), ("F013", 15), ("F014", 18)}, [
        (f.code, f.line, f.message) for f in found.values()
    ]
    assert (
        "path layers.*.self_attn.qproj names no module or parameter of LlamaForCausalLM, LlamaModel"
        in found[("F013", 14)].message
    )
    assert (
        "colwise on model.layers.*.input_layernorm (RMSNorm): the native builder shards nn.Linear"
        in found[("F013", 15)].message
    )
    assert "num_kv_heads=None is not a positive integer" in found[("F014", 18)].message


def test_validate_import_reports_a_plan_naming_a_missing_module(tmp_path, capsys):
    root = registry(tmp_path / "r", {"llama.yaml": llama(extra="layers.*.self_attn.qproj: colwise\n")})
    assert main(["validate", "--import", "--quiet", str(root)]) == 1
    out = capsys.readouterr().out
    assert "llama.yaml:14" in out and "F013" in out and "layers.*.self_attn.qproj names no module" in out


def test_the_shipped_native_plans_are_clean(tmp_path):
    root = registry(tmp_path / "r", {p.name: p.read_text() for p in (REGISTRY / "models").glob("*.yaml")})
    assert findings(root, imports=True) == []


def test_every_shipped_native_architecture_has_a_plan():
    """Each native family says how it splits (tensor-parallel rules or FSDP2 units only); the test above
    checks every plan's paths against its meta-built models."""
    shipped = table(REGISTRY)
    native = {r.architecture for r in shipped.registrations.values() if r.builder == "native"}
    missing = sorted(a for a in native if shipped.architectures[a].parallel_for("native") is None)
    assert missing == []
    for arch in native:
        plan = shipped.architectures[arch].parallel_for("native")
        assert plan.fsdp, arch  # every plan names its FSDP2 units


def test_diff_reports_a_changed_style_with_file_and_line(tmp_path, capsys):
    old = registry(tmp_path / "old" / "registry.d", {"llama.yaml": llama()})
    changed = (
        llama(divisible="num_key_value_heads: tp\n")
        .replace("o_proj: rowwise", "o_proj: rowwise_rep")
        .replace("    lm_head: colwise_gather_output\n", "")
    )
    new = registry(tmp_path / "new" / "registry.d", {"llama.yaml": changed})
    diff = diff_specs(str(old.parent), str(new.parent))
    items = {(c.change, c.key): c for c in diff.changes if c.section == "parallel"}
    assert set(items) == {
        ("changed", "llama (native builder): layers.*.self_attn.o_proj"),
        ("removed", "llama (native builder): lm_head"),
        ("added", "llama (native builder): divisible num_key_value_heads"),
    }
    style = items[("changed", "llama (native builder): layers.*.self_attn.o_proj")]
    assert style.dispatch and style.summary == "llama: tp layers.*.self_attn.o_proj: rowwise -> rowwise_rep"
    assert style.old_at.endswith("llama.yaml:12") and style.new_at.endswith("llama.yaml:12")
    assert main(["diff", str(old.parent), str(new.parent), "--exit-code"]) == 1
    text = capsys.readouterr().out
    assert "parallel plans" in text and "~ llama: tp layers.*.self_attn.o_proj: rowwise -> rowwise_rep" in text
