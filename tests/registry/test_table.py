"""factory.table: merge rules, the immutable table, its digest, queries and dispatch rules."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import shutil

import pytest

from factory.errors import (
    AliasError,
    ConfigError,
    ConflictError,
    FactoryError,
    NoRegistrationError,
    NotFoundError,
    OverrideError,
    RegistryError,
    UnknownArchitectureError,
    UnknownTaskError,
)
from factory.registry.table import FrozenDict, Registration, Table

MISTRAL = """\
schema_version: 1
kind: architecture
architecture: mistral
summary: Mistral decoder
config: pkg.mistral:MistralConfig
tasks:
  model: pkg.mistral:MistralModel
  causal-lm: pkg.mistral:MistralForCausalLM
rules:
  - when: {has_key: layer_types}
    dispatch_as: ministral
    reason: Ministral checkpoints say model_type mistral but carry per-layer attention types
"""

MINISTRAL = """\
schema_version: 1
kind: architecture
architecture: ministral
config: pkg.ministral:MinistralConfig
tasks:
  model: pkg.ministral:MinistralModel
  causal-lm: pkg.ministral:MinistralForCausalLM
"""

BERT = """\
schema_version: 1
kind: architecture
architecture: bert
summary: encoder
config: pkg.bert:BertConfig
tasks:
  model: pkg.bert:BertModel
  fill-mask: pkg.bert:BertForMaskedLM
  sequence-classification:
    target: pkg.bert:BertForSequenceClassification
    deprecated: {since: "0.1", replacement: pkg.bert:Other}
    lint: {F001: reviewed}
components:
  tokenizer: pkg.text:Tokenizer
"""

CHECKPOINTS = """\
schema_version: 1
kind: checkpoints
checkpoints:
  tiny-bert:
    architecture: bert
    hub: {repo: org/tiny-bert, revision: 0123456789abcdef0123456789abcdef01234567}
    sha256: {model.safetensors: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}
  local:
    path: ../weights
"""


@pytest.fixture
def table(reg_env) -> Table:
    reg_env.write("models/mistral.yaml", MISTRAL)
    reg_env.write("models/ministral.yaml", MINISTRAL)
    reg_env.write("models/bert.yaml", BERT)
    reg_env.write("checkpoints/tiny.yaml", CHECKPOINTS)
    return reg_env.load()


def problems(reg_env, *paths, kind=RegistryError) -> list[FactoryError]:
    result = reg_env.collect(*paths)
    assert result.table is None
    assert result.errors
    for err in result.errors:
        assert isinstance(err, kind), err
        assert err.file and err.line, err
    return result.errors


# --- merge rules ----------------------------------------------------------------
def test_basic_table(table, reg_env):
    reg = table.resolve("masked-lm", "bert")
    assert reg.target == "pkg.bert:BertForMaskedLM"
    assert reg.task == "masked-lm"  # registered under the alias fill-mask
    assert reg.provenance.file == str(reg_env.builtin / "models/bert.yaml")
    assert reg.provenance.line == 8
    assert reg.provenance.source == "builtin"
    assert (reg.provenance.distribution, reg.provenance.version) == (None, None)
    assert table.resolve("config", "bert").target == "pkg.bert:BertConfig"
    assert table.resolve("tokenizer", "bert").provenance.line == 14
    seq = table.resolve("sequence-classification", "bert")
    assert seq.deprecated.since == "0.1" and seq.deprecated.replacement == "pkg.bert:Other"
    assert dict(seq.lint) == {"F001": "reviewed"}
    assert table.architecture("mistral").summary == "Mistral decoder"
    assert table.checkpoint("tiny-bert").hub["repo"] == "org/tiny-bert"
    assert table.checkpoint("local").path == str((reg_env.builtin / "weights").resolve())
    assert table.checkpoint("missing") is None


def test_same_registration_in_two_files(reg_env, arch_yaml):
    first = reg_env.write("models/a.yaml", arch_yaml("toy", {"model": "pkg.a:Model"}))
    second = reg_env.write("models/b.yaml", arch_yaml("toy", {"model": "pkg.b:Model", "causal-lm": "pkg.b:LM"}))
    [err] = problems(reg_env, kind=ConflictError)
    assert (err.file, err.line) == (str(second), 5)
    assert f"{first}:5" in err.message
    assert "'model / toy' is defined twice" in err.message
    assert err.first.startswith(f"{first}:5") and err.second.startswith(f"{second}:5")
    assert "override" in err.hint


def test_alias_and_canonical_name_in_one_file_conflict(reg_env, arch_yaml):
    path = reg_env.write("models/a.yaml", arch_yaml("toy", {"causal-lm": "pkg.a:LM", "text-generation": "pkg.a:LM2"}))
    [err] = problems(reg_env, kind=ConflictError)
    assert (err.file, err.line) == (str(path), 6)
    assert "causal-lm / toy" in err.message


def test_same_checkpoint_and_task_in_two_files(reg_env):
    reg_env.write("checkpoints/a.yaml", "schema_version: 1\nkind: checkpoints\ncheckpoints:\n  x: {path: a}\n")
    reg_env.write("checkpoints/b.yaml", "schema_version: 1\nkind: checkpoints\ncheckpoints:\n  x: {path: b}\n")
    reg_env.write(
        "more-tasks.yaml",
        """\
        schema_version: 1
        kind: tasks
        tasks:
          - {name: model, group: generic, summary: again, auto_class: AutoModel}
        """,
    )
    errors = problems(reg_env, kind=ConflictError)
    assert sorted(e.message.split(" is defined")[0] for e in errors) == ["checkpoint 'x'", "task 'model'"]


def test_override_within_the_same_source_is_refused(reg_env, arch_yaml):
    reg_env.write("models/a.yaml", arch_yaml("toy"))
    path = reg_env.write("models/b.yaml", arch_yaml("toy", {"model": "{target: pkg.b:Model, override: faster}"}))
    [err] = problems(reg_env, kind=OverrideError)
    assert (err.file, err.line) == (str(path), 5)
    assert "same source" in err.message
    assert "later source" in err.hint


def test_override_from_a_later_source_replaces_and_keeps_the_original(reg_env, arch_yaml):
    original = reg_env.write("models/toy.yaml", arch_yaml("toy", {"model": "pkg.toy:Model", "causal-lm": "pkg.toy:LM"}))
    extra = reg_env.tmp / "extra"
    replacement = reg_env.write(
        "toy.yaml",
        arch_yaml("toy", {"causal-lm": "{target: mine.toy:FastLM, override: 'fused kernels, reviewed in PR 1'}"}),
        root=extra,
    )
    table = reg_env.load(extra)
    reg = table.resolve("causal-lm", "toy")
    assert reg.target == "mine.toy:FastLM"
    assert reg.override == "fused kernels, reviewed in PR 1"
    assert (reg.provenance.file, reg.provenance.line, reg.provenance.source) == (str(replacement), 5, "path")
    [old] = reg.shadows
    assert old.target == "pkg.toy:LM"
    assert (old.provenance.file, old.provenance.source) == (str(original), "builtin")
    assert table.resolve("model", "toy").target == "pkg.toy:Model"  # untouched
    assert table.architecture("toy").files[1].file == str(replacement)


def test_env_source_overrides_builtin(reg_env, monkeypatch, arch_yaml):
    reg_env.write("models/toy.yaml", arch_yaml("toy"))
    env_dir = reg_env.tmp / "env"
    reg_env.write("t.yaml", arch_yaml("toy", {"model": "{target: env.toy:M, override: local build}"}), root=env_dir)
    monkeypatch.setenv("FACTORY_REGISTRY_PATH", str(env_dir))
    reg = reg_env.load().resolve("model", "toy")
    assert (reg.target, reg.provenance.source, reg.shadows[0].provenance.source) == ("env.toy:M", "env", "builtin")


def test_stale_override(reg_env, arch_yaml):
    extra = reg_env.tmp / "extra"
    path = reg_env.write(
        "toy.yaml", arch_yaml("toy", {"model": "{target: a.b:C, override: replaces nothing}"}), root=extra
    )
    [err] = problems(reg_env, extra, kind=OverrideError)
    assert (err.file, err.line) == (str(path), 5)
    assert "stale override" in err.message and "'model / toy' overrides nothing" in err.message


def test_stale_checkpoint_override(reg_env):
    extra = reg_env.tmp / "extra"
    reg_env.write(
        "c.yaml", "schema_version: 1\nkind: checkpoints\ncheckpoints:\n  x: {path: a, override: why}\n", root=extra
    )
    [err] = problems(reg_env, extra, kind=OverrideError)
    assert "checkpoint 'x' overrides nothing" in err.message and err.line == 4


@pytest.mark.parametrize("pack_file", ["packs/transformers/toy.yaml", "aaa-pack/toy.yaml"])
def test_pack_layer_yields_to_native_without_override(reg_env, pack_file, arch_yaml):
    # the pack file is read after models/ (packs/...) or before it (aaa-pack/...): same result
    native = reg_env.write("models/toy.yaml", arch_yaml("toy", {"model": "pkg.native:Model"}))
    reg_env.write(
        pack_file,
        arch_yaml(
            "toy",
            {"model": "transformers.toy:ToyModel", "causal-lm": "transformers.toy:ToyLM"},
            "layer: pack\nbuilder: transformers\n",
        ),
    )
    table = reg_env.load()
    reg = table.resolve("model", "toy")
    assert reg.target == "pkg.native:Model" and reg.layer == "native" and reg.override is None
    assert reg.provenance.file == str(native)
    [shadowed] = reg.shadows
    assert (shadowed.target, shadowed.layer, shadowed.builder) == ("transformers.toy:ToyModel", "pack", "transformers")
    lm = table.resolve("causal-lm", "toy")
    assert lm.layer == "pack" and lm.builder == "transformers"


def test_unknown_task(reg_env, arch_yaml):
    path = reg_env.write("models/toy.yaml", arch_yaml("toy", {"model": "a.b:C", "text-generaton": "a.b:D"}))
    [err] = problems(reg_env, kind=UnknownTaskError)
    assert (err.file, err.line) == (str(path), 6)
    assert "unknown task 'text-generaton' for architecture 'toy'" in err.message
    assert "did you mean 'text-generation'" in err.hint


def test_checkpoint_of_an_unknown_architecture(reg_env):
    path = reg_env.write(
        "c.yaml", "schema_version: 1\nkind: checkpoints\ncheckpoints:\n  x: {path: a, architecture: bret}\n"
    )
    reg_env.write("models/bert.yaml", BERT)
    [err] = problems(reg_env, kind=UnknownArchitectureError)
    assert (err.file, err.line) == (str(path), 4)
    assert "did you mean 'bert'" in err.hint


def test_ambiguous_alias(reg_env):
    extra = reg_env.tmp / "extra"
    path = reg_env.write(
        "more-tasks.yaml",
        root=extra,
        text="""\
        schema_version: 1
        kind: tasks
        tasks:
          - name: story-generation
            group: nlp
            summary: Long-form stories.
            auto_class: AutoModelForCausalLM
            aliases: [stories, text-generation]
        """,
    )
    [err] = problems(reg_env, extra, kind=AliasError)
    assert (err.file, err.line) == (str(path), 4)
    assert "ambiguous alias 'text-generation'" in err.message
    assert "'causal-lm'" in err.message and "'story-generation'" in err.message
    assert str(reg_env.builtin / "tasks.yaml") in err.message


def test_alias_that_is_a_task_name(reg_env):
    reg_env.write(
        "more-tasks.yaml",
        """\
        schema_version: 1
        kind: tasks
        tasks:
          - {name: story-generation, group: nlp, summary: s, auto_class: AutoModelForCausalLM, aliases: [causal-lm]}
        """,
    )
    [err] = problems(reg_env, kind=AliasError)
    assert "alias 'causal-lm' of task 'story-generation' is itself a task name" in err.message


def test_all_problems_are_collected(reg_env, arch_yaml):
    reg_env.write("models/a.yaml", arch_yaml("toy", {"model": "a.b:C", "nope": "a.b:D"}))
    reg_env.write("models/b.yaml", arch_yaml("toy", {"model": "a.b:E"}))
    reg_env.write("models/c.yaml", "kind: [\n")
    errors = reg_env.collect().errors
    assert sorted(type(e).__name__ for e in errors) == ["ConflictError", "UnknownTaskError", "YAMLSyntaxError"]


# --- the digest -------------------------------------------------------------------
def _digest_of(reg_env, files: dict[str, str], name: str) -> str:
    root = reg_env.tmp / name
    root.mkdir()
    shutil.copy(reg_env.builtin / "tasks.yaml", root / "tasks.yaml")
    for rel, text in files.items():
        reg_env.write(rel, text, root=root)
    return reg_env.load(root, include_builtin=False).digest


def test_digest_is_stable_under_renames_and_reordering(reg_env):
    files = {"models/mistral.yaml": MISTRAL, "models/bert.yaml": BERT, "checkpoints/c.yaml": CHECKPOINTS}
    digest = _digest_of(reg_env, files, "one")
    reordered_bert = """\
        # the same content, written differently
        kind: architecture
        schema_version: 1
        components: {tokenizer: "pkg.text:Tokenizer"}
        tasks:
          sequence-classification:
            lint: {F001: reviewed}
            deprecated: {replacement: pkg.bert:Other, since: "0.1"}
            target: pkg.bert:BertForSequenceClassification
          masked-lm: pkg.bert:BertForMaskedLM
          model: 'pkg.bert:BertModel'
        config: pkg.bert:BertConfig
        summary: encoder
        architecture: bert
        """
    renamed = {
        "z/last.yml": reordered_bert,
        "a/first.yaml": MISTRAL,
        "named/checkpoints.yaml": CHECKPOINTS.replace("  local:\n    path: ../weights\n", "").replace(
            "checkpoints:\n", "checkpoints:\n  local: {path: ../weights}\n"
        ),
    }
    assert _digest_of(reg_env, renamed, "two") == digest
    # the provenance differs, the content does not
    t1 = reg_env.load(reg_env.tmp / "one", include_builtin=False)
    t2 = reg_env.load(reg_env.tmp / "two", include_builtin=False)
    assert t1 == t2 and hash(t1) == hash(t2)
    assert t1.resolve("model", "bert").provenance != t2.resolve("model", "bert").provenance


def test_digest_ignores_the_order_of_the_task_table(reg_env):
    import yaml

    data = yaml.safe_load((reg_env.builtin / "tasks.yaml").read_text())
    data["tasks"].reverse()
    for task in data["tasks"]:
        task["aliases"] = list(reversed(task.get("aliases", []))) or None
        if task["aliases"] is None:
            del task["aliases"]
    root = reg_env.tmp / "reversed"
    root.mkdir()
    (root / "tasks.yaml").write_text(yaml.safe_dump(data, sort_keys=True))
    reversed_digest = reg_env.load(root, include_builtin=False).digest
    assert reversed_digest == reg_env.load().digest


SEMANTIC_EDITS = {
    "target": ("pkg.bert:BertModel\n", "pkg.bert:BertModel2\n"),
    "new task": ("  tokenizer: pkg.text:Tokenizer\n", "  tokenizer: pkg.text:Tokenizer\n  processor: pkg.text:Proc\n"),
    "removed task": ("  model: pkg.bert:BertModel\n", ""),
    "task moved to component": ("  tokenizer: pkg.text:Tokenizer\n", "  processor: pkg.text:Tokenizer\n"),
    "summary": ("summary: encoder", "summary: an encoder"),
    "deprecation": ('since: "0.1"', 'since: "0.2"'),
    "lint reason": ("F001: reviewed", "F001: reviewed twice"),
    "layer": ("summary: encoder", "summary: encoder\nlayer: pack"),
    "builder": ("summary: encoder", "summary: encoder\nbuilder: transformers"),
    "shares targets": ("summary: encoder", "summary: encoder\nshares_targets_with: [mistral]"),
    "rule condition": ("has_key: layer_types", "has_key: sliding_window"),
    "rule target": ("dispatch_as: ministral", "dispatch_as: bert"),
    "rule reason": ("reason: Ministral", "reason: Mistral"),
    "checkpoint revision": ("0123456789abcdef0123456789abcdef01234567", "1123456789abcdef0123456789abcdef01234567"),
    "checkpoint sha256": ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"),
    "checkpoint path": ("path: ../weights", "path: ../weights2"),
    "checkpoint architecture": ("architecture: bert\n    hub", "architecture: mistral\n    hub"),
}


@pytest.mark.parametrize("edit", sorted(SEMANTIC_EDITS))
def test_digest_changes_with_any_semantic_edit(reg_env, edit):
    old, new = SEMANTIC_EDITS[edit]
    files = {
        "models/mistral.yaml": MISTRAL,
        "models/ministral.yaml": MINISTRAL,
        "models/bert.yaml": BERT,
        "checkpoints/c.yaml": CHECKPOINTS,
    }
    before = _digest_of(reg_env, files, "before")
    edited = {name: text.replace(old, new, 1) for name, text in files.items()}
    assert edited != files, f"edit {edit!r} did not apply"
    assert _digest_of(reg_env, edited, "after") != before


def test_digest_changes_with_the_task_table(reg_env):
    before = reg_env.load().digest
    tasks = reg_env.builtin / "tasks.yaml"
    text = tasks.read_text()
    for old, new in [
        ("aliases: [text-generation]", "aliases: [text-generation, generate]"),
        ("auto_class: AutoModelForCausalLM", "auto_class: AutoModelForCausalLM2"),
        ("summary: Predict masked tokens.", "summary: Predict the masked tokens."),
    ]:
        assert old in text
        tasks.write_text(text.replace(old, new))
        assert reg_env.load().digest != before, old
    tasks.write_text(text)
    assert reg_env.load().digest == before


def test_digest_covers_overrides(reg_env, arch_yaml):
    reg_env.write("models/toy.yaml", arch_yaml("toy"))
    extra = reg_env.tmp / "extra"
    path = reg_env.write(
        "toy.yaml", arch_yaml("toy", {"model": "{target: pkg.toy:Model, override: reason one}"}), root=extra
    )
    plain = reg_env.load().digest
    first = reg_env.load(extra).digest
    path.write_text(path.read_text().replace("reason one", "reason two"))
    assert len({plain, first, reg_env.load(extra).digest}) == 3


# --- immutability and pickling ------------------------------------------------------
MAPPINGS = ("tasks", "aliases", "architectures", "registrations", "checkpoints")


def test_table_refuses_attribute_changes(table):
    for name in (*MAPPINGS, "digest", "sources", "new_attribute"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(table, name, {})
    with pytest.raises(AttributeError):
        del table.tasks
    with pytest.raises(AttributeError):
        table.__dict__  # noqa: B018  (slots only: no instance dict to write into)


@pytest.mark.parametrize("name", MAPPINGS)
def test_every_mapping_is_read_only(table, name):
    mapping = getattr(table, name)
    assert isinstance(mapping, FrozenDict) and len(mapping)
    key = next(iter(mapping))
    with pytest.raises(TypeError):
        mapping[key] = None
    with pytest.raises(TypeError):
        mapping["new"] = None
    with pytest.raises(TypeError):
        del mapping[key]
    for method in ("update", "pop", "popitem", "clear", "setdefault"):
        assert not hasattr(mapping, method)
    with pytest.raises(AttributeError, match="read-only"):
        mapping._data = {}


def test_entries_are_frozen(table):
    reg = table.resolve("sequence-classification", "bert")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.target = "evil:Class"
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.provenance.line = 1
    with pytest.raises(TypeError):
        reg.lint["F002"] = "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.task("causal-lm").aliases = ()
    assert isinstance(table.task("causal-lm").aliases, tuple)
    arch = table.architecture("mistral")
    assert isinstance(arch.rules, tuple) and isinstance(arch.files, tuple)
    with pytest.raises(TypeError):
        arch.rules[0].when["has_key"] = "x"
    ckpt = table.checkpoint("tiny-bert")
    with pytest.raises(TypeError):
        ckpt.hub["revision"] = "main"
    with pytest.raises(TypeError):
        ckpt.sha256["x"] = "y"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ckpt.path = "/tmp"
    assert table.resolve("sequence-classification", "bert") is reg


def test_pickle_round_trip(table):
    clone = pickle.loads(pickle.dumps(table))
    assert clone is not table
    assert clone.digest == table.digest and clone == table
    assert clone.content() == table.content()
    assert clone.resolve("causal-lm", "mistral") == table.resolve("causal-lm", "mistral")
    assert clone.architecture("mistral").rules == table.architecture("mistral").rules
    assert isinstance(clone.tasks, FrozenDict)
    with pytest.raises(AttributeError):
        clone.digest = "x"
    deep = copy.deepcopy(table)
    assert deep.digest == table.digest


def test_pickle_keeps_shadows_and_plugin_provenance(reg_env, arch_yaml):
    reg_env.write("models/toy.yaml", arch_yaml("toy"))
    reg_env.plugin("toy-plugin", "2.0", {"toy.yaml": arch_yaml("toy", {"model": "{target: p.t:M, override: why}"})})
    table = reg_env.load()
    clone = pickle.loads(pickle.dumps(table))
    reg = clone.resolve("model", "toy")
    assert reg == table.resolve("model", "toy")
    assert reg.provenance.distribution == "toy-plugin" and reg.shadows[0].target == "pkg.toy:Model"


def test_errors_pickle_with_their_fields(reg_env, arch_yaml):
    reg_env.write("models/a.yaml", arch_yaml("toy"))
    reg_env.write("models/b.yaml", arch_yaml("toy"))
    [err] = reg_env.collect().errors
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is ConflictError
    assert (clone.file, clone.line, clone.hint, clone.first) == (err.file, err.line, err.hint, err.first)
    assert str(clone) == str(err)


# --- queries ----------------------------------------------------------------------
def test_tasks_and_aliases(table):
    assert table.task("text-generation").name == "causal-lm"
    assert table.canonical_task("fill-mask") == "masked-lm"
    assert table.canonical_task("masked-lm") == "masked-lm"
    assert table.aliases["text-generation"] == "causal-lm"
    assert table.resolve("text-generation", "mistral").task == "causal-lm"
    assert table.task("config").group == "component"


def test_unknown_task_suggests(table):
    with pytest.raises(UnknownTaskError) as info:
        table.task("text-generaton")
    err = info.value
    assert isinstance(err, NotFoundError) and isinstance(err, LookupError)
    assert "unknown task 'text-generaton'" in err.message
    assert "did you mean 'text-generation'" in err.hint
    assert err.task == "text-generaton"
    with pytest.raises(UnknownTaskError) as info:
        table.resolve("zzzz", "bert")
    assert "factory tasks" in info.value.hint


def test_unknown_architecture_suggests(table):
    with pytest.raises(UnknownArchitectureError) as info:
        table.architecture("mistrall")
    assert "did you mean 'mistral'" in info.value.hint
    with pytest.raises(UnknownArchitectureError, match="unknown architecture 'brt'") as info:
        table.resolve("model", "brt")
    assert "'bert'" in info.value.hint
    with pytest.raises(UnknownArchitectureError) as info:
        table.architecture("qqqqqq")
    assert "factory list" in info.value.hint


def test_missing_registration_says_what_exists(table):
    with pytest.raises(NoRegistrationError) as info:
        table.resolve("text-generation", "bert")
    err = info.value
    assert "architecture 'bert' has no registration for task 'causal-lm'" in err.message
    assert "architecture 'bert' supports: config, masked-lm, model, sequence-classification, tokenizer" in err.hint
    assert "task 'causal-lm' is served by: ministral, mistral" in err.hint
    assert (err.task, err.architecture) == ("causal-lm", "bert")
    with pytest.raises(NoRegistrationError) as info:
        table.resolve("ctc", "bert")
    assert "is served by" not in info.value.hint


def test_find_with_wildcards(table):
    def keys(regs):
        return sorted((r.task, r.architecture) for r in regs)

    assert len(table.find()) == len(table.registrations)
    assert keys(table.find("causal-lm")) == [("causal-lm", "ministral"), ("causal-lm", "mistral")]
    assert keys(table.find("text-generation")) == keys(table.find("causal-lm"))
    assert {r.architecture for r in table.find("*", "*istral")} == {"mistral", "ministral"}
    assert {r.architecture for r in table.find(architecture="m?nistral")} == {"ministral"}
    assert keys(table.find("[cm]*", "bert")) == [("config", "bert"), ("masked-lm", "bert"), ("model", "bert")]
    assert keys(table.find("causal-*", "b*")) == []
    assert all(isinstance(r, Registration) for r in table.find())


def test_find_with_unknown_literal_names(table):
    with pytest.raises(UnknownTaskError):
        table.find("causal")
    with pytest.raises(UnknownArchitectureError, match="'mistrall'") as info:
        table.find("*", "mistrall")
    assert "did you mean 'mistral'" in info.value.hint
    assert table.find("*", "nothing*") == []


def test_reverse_lookup_by_class_name(table):
    [reg] = table.by_target("BertForMaskedLM")
    assert (reg.task, reg.architecture) == ("masked-lm", "bert")
    assert table.by_target("pkg.bert:BertForMaskedLM") == [reg]
    assert table.by_target("pkg.bert.BertForMaskedLM") == [reg]
    assert sorted(r.task for r in table.by_target("MistralForCausalLM")) == ["causal-lm"]
    assert table.by_target("NoSuchClass") == []


def test_reverse_lookup_finds_every_registration_of_a_shared_class(reg_env, arch_yaml):
    reg_env.write("models/a.yaml", arch_yaml("a", {"model": "pkg.shared:Model"}))
    reg_env.write("models/b.yaml", arch_yaml("b", {"model": "pkg.shared:Model", "causal-lm": "pkg.b:Outer.Inner"}))
    table = reg_env.load()
    assert sorted(r.architecture for r in table.by_target("Model")) == ["a", "b"]
    assert [r.architecture for r in table.by_target("Inner")] == ["b"]
    assert [r.architecture for r in table.by_target("Outer.Inner")] == ["b"]


# --- dispatch rules ---------------------------------------------------------------
def test_dispatch_by_model_type(table):
    d = table.dispatch({"model_type": "mistral", "hidden_size": 8})
    assert (d.architecture, d.via, d.model_type, d.rules) == ("mistral", "model_type", "mistral", ())


def test_dispatch_rule_mistral_with_layer_types_is_ministral(table, reg_env):
    d = table.dispatch({"model_type": "mistral", "layer_types": ["full_attention", "sliding_attention"]})
    assert d.architecture == "ministral" and d.via == "model_type" and d.model_type == "mistral"
    [rule] = d.rules
    assert rule.describe() == "mistral config that has key 'layer_types' -> ministral"
    assert rule.reason.startswith("Ministral checkpoints")
    assert (rule.provenance.file, rule.provenance.line) == (str(reg_env.builtin / "models/mistral.yaml"), 10)
    assert table.resolve("causal-lm", d.architecture).target == "pkg.ministral:MinistralForCausalLM"


def test_dispatch_rule_conditions(reg_env, arch_yaml):
    reg_env.write(
        "models/a.yaml",
        arch_yaml(
            "a",
            extra="""\
        rules:
          - when: {equals: {variant: big, layers: 2}, missing_key: legacy}
            dispatch_as: b
          - when: {has_key: legacy}
            dispatch_as: c
        """,
        ),
    )
    reg_env.write("models/b.yaml", arch_yaml("b", extra="rules:\n  - {when: {has_key: loop}, dispatch_as: a}\n"))
    reg_env.write("models/c.yaml", arch_yaml("c"))
    table = reg_env.load()

    def arch(config):
        return table.dispatch({"model_type": "a", **config}).architecture

    assert arch({"variant": "big", "layers": 2}) == "b"
    assert arch({"variant": "big", "layers": 3}) == "a"
    assert arch({"variant": "big"}) == "a"
    assert arch({"variant": "big", "layers": 2, "legacy": True}) == "c"  # first rule fails, second matches
    assert table.architecture("a").rules[0].describe() == (
        "a config that lacks key 'legacy' and variant == 'big' and layers == 2 -> b"
    )
    looped = table.dispatch({"model_type": "a", "variant": "big", "layers": 2, "loop": 1})
    assert [r.dispatch_as for r in looped.rules] == ["b", "a"]  # a cycle stops instead of spinning


def test_dispatch_rule_to_an_unregistered_architecture(reg_env, arch_yaml):
    path = reg_env.write(
        "models/a.yaml", arch_yaml("a", extra="rules:\n  - {when: {has_key: x}, dispatch_as: ghost}\n")
    )
    table = reg_env.load()
    with pytest.raises(ConfigError) as info:
        table.dispatch({"model_type": "a", "x": 1})
    assert (info.value.file, info.value.line) == (str(path), 7)
    assert "'ghost', which is not registered" in info.value.message


def test_dispatch_unknown_model_type(table):
    with pytest.raises(UnknownArchitectureError) as info:
        table.dispatch({"model_type": "mistrl"}, origin="ckpt/config.json")
    assert info.value.file == "ckpt/config.json"
    assert "model_type 'mistrl' is not a registered architecture" in info.value.message
    assert "did you mean 'mistral'" in info.value.hint


def test_dispatch_falls_back_to_architectures_class_names(table):
    d = table.dispatch({"architectures": ["BertForMaskedLM"]})
    assert (d.architecture, d.via, d.model_type) == ("bert", "architectures", None)
    d = table.dispatch({"model_type": "", "architectures": ["MistralForCausalLM"], "layer_types": []})
    assert d.architecture == "ministral" and d.via == "architectures"  # rules apply after the fallback


@pytest.mark.parametrize(
    "config, words",
    [
        ({}, "neither 'model_type' nor 'architectures'"),
        ({"architectures": ["GPT2LMHeadModel"]}, "no registered class matches"),
        ({"architectures": "BertModel"}, "neither 'model_type' nor 'architectures'"),
    ],
)
def test_dispatch_without_a_usable_hint(table, config, words):
    with pytest.raises(ConfigError, match=words) as info:
        table.dispatch(config, origin="x/config.json")
    assert info.value.file == "x/config.json"
    assert "model_type" in info.value.hint


def test_dispatch_with_ambiguous_class_names(reg_env, arch_yaml):
    reg_env.write("models/a.yaml", arch_yaml("a", {"model": "pkg.shared:Model"}))
    reg_env.write("models/b.yaml", arch_yaml("b", {"model": "pkg.shared:Model"}))
    with pytest.raises(ConfigError, match="match several architectures: a, b"):
        reg_env.load().dispatch({"architectures": ["Model"]})


def test_a_table_from_the_cache_keeps_every_property(table, reg_env, monkeypatch):
    """A warm load (the loader's on-disk cache) is the same table: digest, queries, immutability, pickling."""
    monkeypatch.delenv("FACTORY_NO_CACHE")
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(reg_env.tmp / "cache"))
    cold, warm = reg_env.load(), reg_env.load()
    assert cold.digest == warm.digest == table.digest and warm.content() == table.content()
    assert warm.resolve("masked-lm", "bert") == table.resolve("masked-lm", "bert")
    assert warm.dispatch({"model_type": "mistral", "layer_types": []}).architecture == "ministral"
    for name in MAPPINGS:
        mapping = getattr(warm, name)
        with pytest.raises(TypeError):
            mapping[next(iter(mapping))] = None
    with pytest.raises(AttributeError):
        warm.tasks = {}
    clone = pickle.loads(pickle.dumps(warm))
    assert clone.digest == table.digest and clone.content() == table.content()
