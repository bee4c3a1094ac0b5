"""factory.loader: sources in a fixed order, plugins, packs, and the default table."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

import factory
from factory.errors import (
    ConflictError,
    OverrideError,
    RegistryError,
    SchemaError,
    UnknownTaskError,
    YAMLSyntaxError,
)
from factory.registry import loader
from factory.registry.table import Table

SEED_TASKS = {
    "generic": ["model", "pretraining"],
    "nlp": [
        "causal-lm",
        "masked-lm",
        "mask-generation",
        "seq2seq-lm",
        "sequence-classification",
        "multiple-choice",
        "next-sentence-prediction",
        "token-classification",
        "question-answering",
        "text-encoding",
    ],
    "vision": [
        "depth-estimation",
        "image-classification",
        "video-classification",
        "masked-image-modeling",
        "object-detection",
        "image-segmentation",
        "image-to-image",
        "semantic-segmentation",
        "instance-segmentation",
        "universal-segmentation",
        "zero-shot-image-classification",
        "zero-shot-object-detection",
    ],
    "audio": [
        "audio-classification",
        "audio-frame-classification",
        "ctc",
        "speech-seq2seq",
        "audio-xvector",
        "text-to-spectrogram",
        "text-to-waveform",
    ],
    "multimodal": [
        "table-question-answering",
        "document-question-answering",
        "visual-question-answering",
        "image-text-to-text",
    ],
    "time-series": ["time-series-prediction"],
    "component": ["config", "tokenizer", "feature-extractor", "image-processor", "processor"],
}


# --- the shipped task table -----------------------------------------------------------
def test_shipped_task_table(reg_env):
    table = reg_env.load()
    assert sum(map(len, SEED_TASKS.values())) == 41
    for group, names in SEED_TASKS.items():
        for name in names:
            task = table.tasks[name]
            assert task.group == group, name
            assert task.summary and task.auto_class.startswith("Auto"), name
    assert table.tasks["model"].auto_class == "AutoModel"
    assert table.tasks["causal-lm"].auto_class == "AutoModelForCausalLM"
    assert table.tasks["tokenizer"].auto_class == "AutoTokenizer"
    assert table.canonical_task("text-generation") == "causal-lm"
    assert table.canonical_task("fill-mask") == "masked-lm"
    # names two tasks (ctc, speech-seq2seq): deliberately not an alias
    assert "automatic-speech-recognition" not in table.aliases
    assert set(table.aliases).isdisjoint(table.tasks)


# --- sources and provenance -------------------------------------------------------------
def test_source_kinds_in_order(reg_env, monkeypatch, arch_yaml):
    reg_env.write("models/a.yaml", arch_yaml("a"))
    env1, env2, extra = reg_env.tmp / "env1", reg_env.tmp / "env2", reg_env.tmp / "extra"
    reg_env.write("b.yaml", arch_yaml("b"), root=env1)
    reg_env.write("c.yaml", arch_yaml("c"), root=env2)
    single = reg_env.write("d.yml", arch_yaml("d"), root=extra)
    site = reg_env.plugin("p-dist", "1.0", {"e.yaml": arch_yaml("e")})
    monkeypatch.setenv("FACTORY_REGISTRY_PATH", os.pathsep.join([str(env1), "", str(env2)]))
    table = reg_env.load(single)
    sources = {a: table.resolve("model", a).provenance.source for a in "abcde"}
    assert sources == {"a": "builtin", "b": "env", "c": "env", "d": "path", "e": "plugin"}
    assert [s.split(":", 1)[0] for s in table.sources] == ["builtin", "plugin", "env", "env", "path"]
    assert table.sources[1] == f"plugin:{site}"


def test_missing_sources_are_errors(reg_env, monkeypatch):
    monkeypatch.setenv("FACTORY_REGISTRY_PATH", str(reg_env.tmp / "no-such-dir"))
    errors = reg_env.collect(reg_env.tmp / "missing.yaml").errors
    assert [type(e) for e in errors] == [RegistryError, RegistryError]
    assert "FACTORY_REGISTRY_PATH names" in errors[0].message and "not a directory" in errors[0].message
    assert "does not exist" in errors[1].message and errors[1].file == str(reg_env.tmp / "missing.yaml")


def test_only_yaml_files_are_read_in_sorted_order(reg_env, arch_yaml):
    reg_env.write("models/README.md", "not yaml: [")
    reg_env.write("models/notes.txt", "kind: [")
    reg_env.write("models/b/x.yaml", arch_yaml("toy", {"model": "pkg.b:M"}))
    first = reg_env.write("models/a/z.yml", arch_yaml("toy", {"model": "pkg.a:M"}))
    result = reg_env.collect()
    [err] = result.errors
    # a/z.yml sorts before b/x.yaml whatever the directory listing says: the conflict is reported at b
    assert isinstance(err, ConflictError) and err.file.endswith("b/x.yaml") and str(first) in err.message


def test_include_builtin_false(reg_env, arch_yaml):
    extra = reg_env.tmp / "extra"
    path = reg_env.write("a.yaml", arch_yaml("toy"), root=extra)
    [err] = reg_env.collect(extra, include_builtin=False).errors
    assert isinstance(err, UnknownTaskError) and err.file == str(path)  # no task table without the built-ins
    table = reg_env.load(reg_env.builtin / "tasks.yaml", extra, include_builtin=False)
    assert table.resolve("model", "toy").provenance.source == "path"


def test_load_registry_raises_the_first_problem_and_counts_the_rest(reg_env, arch_yaml):
    reg_env.write("models/a.yaml", "kind: [\n")
    reg_env.write("models/b.yaml", arch_yaml("toy", {"model": "a..b"}))
    reg_env.write("models/c.yaml", arch_yaml("toy", {"bogus-task": "a.b:C"}))
    with pytest.raises(YAMLSyntaxError) as info:
        reg_env.load()
    assert info.value.file.endswith("a.yaml")
    assert "2 more problem(s)" in info.value.hint and "factory validate" in info.value.hint
    assert "2 more problem(s)" in str(info.value)
    kinds = [type(e) for e in reg_env.collect().errors]
    assert kinds == [YAMLSyntaxError, SchemaError, UnknownTaskError]


def test_load_registry_returns_a_new_table_each_time(reg_env, arch_yaml):
    reg_env.write("models/a.yaml", arch_yaml("a"))
    one, two = reg_env.load(), reg_env.load()
    assert isinstance(one, Table) and one is not two and one == two
    assert factory.load_registry is loader.load_registry


# --- plugins ------------------------------------------------------------------------------
def test_plugin_entry_point_package_colon_directory(reg_env, arch_yaml):
    site = reg_env.plugin("toy-plugin", "1.2.3", {"models/toy.yaml": arch_yaml("toy")})
    reg = reg_env.load().resolve("model", "toy")
    p = reg.provenance
    assert (p.source, p.distribution, p.version) == ("plugin", "toy-plugin", "1.2.3")
    assert (p.file, p.line) == (str(site / "models/toy.yaml"), 5)
    assert str(p) == f"{site / 'models/toy.yaml'}:5 (plugin toy-plugin 1.2.3)"


def test_plugin_entry_point_naming_a_package(reg_env, arch_yaml):
    site = reg_env.plugin("flat-plugin", "0.1", {"toy.yaml": arch_yaml("toy")}, value="flat_plugin")
    reg = reg_env.load().resolve("model", "toy")
    assert reg.provenance.file == str(site / "toy.yaml")  # the package directory is searched recursively
    assert reg.provenance.distribution == "flat-plugin"


def test_plugin_is_not_imported_to_load(reg_env, arch_yaml):
    site = reg_env.plugin("loud-plugin", "0.1", {"toy.yaml": arch_yaml("toy")})
    (site.parent / "__init__.py").write_text("raise RuntimeError('imported!')\n")
    assert reg_env.load().resolve("model", "toy").provenance.source == "plugin"
    assert "loud_plugin" not in sys.modules


@pytest.mark.parametrize(
    "value, words",
    [
        ("no_such_module_xyz:registry.d", "cannot be found"),
        ("broken_plugin:missing-dir", "not a directory"),
    ],
)
def test_broken_plugin_entry_points(reg_env, value, words):
    reg_env.plugin("broken-plugin", "0.1", {}, value=value)
    [err] = reg_env.collect().errors
    assert isinstance(err, RegistryError)
    assert words in err.message and "broken-plugin" in err.message


def test_plugin_override_with_a_reason_replaces_and_keeps_what_it_replaced(reg_env, arch_yaml):
    builtin = reg_env.write("models/toy.yaml", arch_yaml("toy", {"model": "pkg.toy:Model", "causal-lm": "pkg.toy:LM"}))
    site = reg_env.plugin(
        "fast-toy",
        "0.9.1",
        {
            "toy.yaml": arch_yaml(
                "toy", {"causal-lm": "{target: fast_toy.lm:FusedLM, override: fused attention kernels}"}
            )
        },
    )
    table = reg_env.load()
    reg = table.resolve("causal-lm", "toy")
    assert reg.target == "fast_toy.lm:FusedLM" and reg.override == "fused attention kernels"
    p = reg.provenance
    assert (p.file, p.line, p.source, p.distribution, p.version) == (
        str(site / "toy.yaml"),
        5,
        "plugin",
        "fast-toy",
        "0.9.1",
    )
    [old] = reg.shadows
    assert (old.target, old.provenance.file, old.provenance.line, old.provenance.source) == (
        "pkg.toy:LM",
        str(builtin),
        6,
        "builtin",
    )
    assert table.resolve("model", "toy").provenance.source == "builtin"


def test_plugin_without_override_conflicts(reg_env, arch_yaml):
    builtin = reg_env.write("models/toy.yaml", arch_yaml("toy"))
    site = reg_env.plugin("rude-plugin", "1.0", {"toy.yaml": arch_yaml("toy", {"model": "rude.toy:Model"})})
    [err] = reg_env.collect().errors
    assert isinstance(err, ConflictError)
    assert err.file == str(site / "toy.yaml") and f"{builtin}:5" in err.message
    assert "(plugin rude-plugin 1.0)" in err.second


def test_plugin_stale_override(reg_env, arch_yaml):
    site = reg_env.plugin(
        "stale-plugin", "1.0", {"toy.yaml": arch_yaml("toy", {"model": "{target: a.b:C, override: x}"})}
    )
    [err] = reg_env.collect().errors
    assert isinstance(err, OverrideError) and err.file == str(site / "toy.yaml") and "stale" in err.message


# --- packs -------------------------------------------------------------------------------
@pytest.fixture
def packs(reg_env, arch_yaml):
    for name in ("alpha", "beta"):
        reg_env.write(f"packs/{name}/{name}.yaml", arch_yaml(name, extra="layer: pack\n"))
    return reg_env


@pytest.mark.parametrize(
    "env, packs_arg, expected",
    [
        ("", None, {"alpha", "beta"}),
        ("", True, {"alpha", "beta"}),
        ("beta", None, {"alpha"}),
        (" alpha , beta ", None, set()),
        ("all", None, set()),
        ("*", True, set()),
        ("", False, set()),
        ("", ["beta"], {"beta"}),
        ("beta", ["beta"], set()),
    ],
)
def test_disabling_packs(packs, monkeypatch, env, packs_arg, expected):
    monkeypatch.setenv("FACTORY_DISABLE_PACKS", env)
    table = packs.load(packs=packs_arg)
    assert set(table.architectures) == expected


def test_packs_of_other_sources_are_always_read(packs, arch_yaml):
    extra = packs.tmp / "extra"
    packs.write("packs/gamma/gamma.yaml", arch_yaml("gamma"), root=extra)
    assert "gamma" in packs.load(extra, packs=False).architectures


# --- the default table -------------------------------------------------------------------
def test_registry_is_loaded_once(reg_env, monkeypatch, arch_yaml):
    reg_env.write("models/a.yaml", arch_yaml("a"))
    calls = []
    real = loader.load_registry
    monkeypatch.setattr(loader, "load_registry", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert loader._default == []
    first = factory.registry()
    assert factory.registry() is first and len(calls) == 1
    assert "a" in first.architectures


def test_registry_from_two_threads_yields_one_table(reg_env, monkeypatch, arch_yaml):
    for i in range(20):  # enough files that the two loads would overlap
        reg_env.write(f"models/m{i}.yaml", arch_yaml(f"m{i}"))
    calls = []
    real = loader.load_registry
    monkeypatch.setattr(loader, "load_registry", lambda *a, **k: calls.append(1) or real(*a, **k))
    barrier = threading.Barrier(2)
    results: list[Table] = []

    def worker():
        barrier.wait()
        results.append(factory.registry())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] is results[1]
    assert len(calls) == 1


def test_registry_is_lazy():
    code = "import factory, factory.registry.loader as l; print(len(l._default)); factory.registry(); print(len(l._default))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "FACTORY_NO_CACHE": "1", "FACTORY_DISABLE_PACKS": "all"},
    ).stdout.split()
    assert out == ["0", "1"]
