"""factory lint: every code has a failing and a passing fixture; suppressions are reported, never silent."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from factory.cli.main import main
from factory.registry.loader import load_sources
from factory.registry.sources import Source
from factory.registry.table import Provenance
from factory.review.lint import CODES, Finding, has_failures, lint_table, table_version

TASKS = """\
schema_version: 1
kind: tasks
tasks:
  - {name: model, group: generic, summary: Bare., auto_class: AutoModel}
  - {name: causal-lm, group: nlp, summary: LM., auto_class: AutoModelForCausalLM}
  - {name: config, group: component, summary: Config., auto_class: AutoConfig}
  - {name: tokenizer, group: component, summary: Tokenizer., auto_class: AutoTokenizer}
"""


def arch(name: str, body: str = "", *, tasks: str = "  model: pkg.{name}:Model\n") -> str:
    return (
        f"schema_version: 1\nkind: architecture\narchitecture: {name}\ntasks:\n"
        + tasks.format(name=name)
        + textwrap.dedent(body)
    )


def ckpts(body: str) -> str:
    return "schema_version: 1\nkind: checkpoints\ncheckpoints:\n" + textwrap.indent(textwrap.dedent(body), "  ")


def build(
    tmp_path: Path,
    files: dict[str, str],
    *,
    later: dict[str, str] | None = None,
    kind: str = "path",
    dist: str | None = None,
    version: str | None = None,
):
    """A table from a self-contained registry (``files``) plus an optional later source."""
    base = tmp_path / "base"
    for name, text in {"tasks.yaml": TASKS, **files}.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text, encoding="utf-8")
    sources = [Source("builtin", base)]
    if later is not None:
        extra = tmp_path / "later"
        for name, text in later.items():
            (extra / name).parent.mkdir(parents=True, exist_ok=True)
            (extra / name).write_text(text, encoding="utf-8")
        sources.append(Source(kind, extra, dist, version))
    result = load_sources(sources)
    assert not result.errors, [str(e) for e in result.errors]
    return result.table


def codes(findings, code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


@pytest.fixture()
def models(tmp_path, monkeypatch) -> str:
    """An importable module with classes for the import checks; returns its name."""
    name = f"lint_fixture_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent("""\
        class FooConfig:
            model_type = "foo"
        class OtherConfig:
            model_type = "other"
        class FooModel:
            config_class = FooConfig
        class MismatchedModel:
            config_class = OtherConfig
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_every_code_is_documented_with_an_example():
    import factory.review.lint as lint

    for code, (severity, _what) in CODES.items():
        assert f"| {code} |" in lint.__doc__
        assert severity in ("error", "warning")


def test_f001_target_does_not_import(tmp_path, models):
    bad = build(tmp_path / "bad", {"foo.yaml": arch("foo", tasks=f"  model: {models}:FooModle\n")})
    [f] = codes(lint_table(bad, imports=True), "F001")
    assert f.severity == "error" and f.file.endswith("foo.yaml") and f.line == 5
    assert f"module {models!r} has no attribute 'FooModle'" in f.message
    good = build(tmp_path / "good", {"foo.yaml": arch("foo", tasks=f"  model: {models}:FooModel\n")})
    assert codes(lint_table(good, imports=True), "F001") == []
    assert codes(lint_table(bad), "F001") == []  # only with imports=True


def test_f002_config_model_type(tmp_path, models):
    def only_config(cls: str) -> str:
        return f"schema_version: 1\nkind: architecture\narchitecture: foo\nconfig: {models}:{cls}\ntasks: {{}}\n"

    bad = build(tmp_path / "bad", {"foo.yaml": only_config("OtherConfig")})
    [f] = codes(lint_table(bad, imports=True), "F002")
    assert f.severity == "error" and f.line == 4
    assert "has model_type 'other', but is registered for architecture 'foo'" in f.message
    good = build(tmp_path / "good", {"foo.yaml": only_config("FooConfig")})
    assert codes(lint_table(good, imports=True), "F002") == []


def test_f003_config_class(tmp_path, models):
    bad = build(
        tmp_path / "bad",
        {"foo.yaml": arch("foo", f"config: {models}:FooConfig\n", tasks=f"  model: {models}:MismatchedModel\n")},
    )
    [f] = codes(lint_table(bad, imports=True), "F003")
    assert f.severity == "error" and "declares config_class" in f.message and "OtherConfig" in f.message
    good = build(
        tmp_path / "good",
        {"foo.yaml": arch("foo", f"config: {models}:FooConfig\n", tasks=f"  model: {models}:FooModel\n")},
    )
    assert [f for f in lint_table(good, imports=True) if f.code in ("F001", "F002", "F003")] == []


def test_f004_branch_pins(tmp_path):
    table = build(
        tmp_path,
        {
            "foo.yaml": arch("foo"),
            "c.yaml": ckpts(f"""\
        on-branch: {{hub: {{repo: org/a, revision: main}}}}
        unpinned: {{hub: {{repo: org/b}}}}
        pinned: {{hub: {{repo: org/c, revision: {"0123456789abcdef" * 2 + "01234567"}}}}}
        local: {{path: ./weights}}
    """),
        },
    )
    found = codes(lint_table(table), "F004")
    assert [(f.severity, f.line) for f in found] == [("warning", 4), ("warning", 5)]
    assert "pinned to revision 'main', a branch or tag, not a commit" in found[0].message
    assert "no revision (the default branch)" in found[1].message


def test_f005_shared_targets(tmp_path):
    shared = "  model: pkg.shared:Model\n  tokenizer: pkg.shared:Tokenizer\n"
    bad = build(tmp_path / "bad", {"a.yaml": arch("a", tasks=shared), "b.yaml": arch("b", tasks=shared)})
    [f] = codes(lint_table(bad), "F005")  # the shared tokenizer (a component) is not flagged
    assert f.file.endswith("b.yaml") and f.message == "model / b -> pkg.shared:Model is also the target of model / a"
    assert "shares_targets_with: [a]" in f.hint
    good = build(
        tmp_path / "good",
        {"a.yaml": arch("a", tasks=shared), "b.yaml": arch("b", "shares_targets_with: [a]\n", tasks=shared)},
    )
    assert codes(lint_table(good), "F005") == []
    # the same class written with a dot instead of a colon is the same target
    dotted = build(
        tmp_path / "dotted",
        {
            "a.yaml": arch("a", tasks="  model: pkg.shared:Model\n"),
            "b.yaml": arch("b", tasks="  model: pkg.shared.Model\n"),
        },
    )
    assert len(codes(lint_table(dotted), "F005")) == 1


def test_f006_useless_override(tmp_path):
    base = {"foo.yaml": arch("foo")}
    same = arch("foo", tasks="  model: {{target: pkg.foo:Model, override: faster}}\n")
    [f] = codes(lint_table(build(tmp_path / "bad", base, later={"foo.yaml": same})), "F006")
    assert f.severity == "warning" and "changes nothing: it shadows the same target pkg.foo:Model" in f.message
    other = arch("foo", tasks="  model: {{target: pkg.fast:Model, override: faster}}\n")
    assert codes(lint_table(build(tmp_path / "good", base, later={"foo.yaml": other})), "F006") == []
    ck = {"c.yaml": ckpts("x: {path: ./w}\n")}
    again = {"c.yaml": ckpts("x: {path: ./w, override: same again}\n")}
    assert len(codes(lint_table(build(tmp_path / "ck", {**base, **ck}, later=again)), "F006")) == 1


def test_f007_deprecated_warns_then_fails(tmp_path):
    entry = (
        "  model: {{target: pkg.foo:Model, deprecated: {{since: '0.1', remove_in: '{v}', replacement: pkg.new:M}}}}\n"
    )
    table = build(tmp_path / "future", {"foo.yaml": arch("foo", tasks=entry.replace("{v}", "99.0"))})
    [f] = codes(lint_table(table), "F007")
    assert f.severity == "warning" and "deprecated since 0.1, removed in 99.0; use pkg.new:M" in f.message
    [f] = codes(lint_table(table, as_of="99.0"), "F007")
    assert f.severity == "error" and "was to be removed in 99.0 and the table is at 99.0" in f.message
    past = build(tmp_path / "past", {"foo.yaml": arch("foo", tasks=entry.replace("{v}", "0.0.1"))})
    assert [f.severity for f in codes(lint_table(past), "F007")] == ["error"]
    bad = build(tmp_path / "bad", {"foo.yaml": arch("foo", tasks=entry.replace("{v}", "soon"))})
    [f] = codes(lint_table(bad), "F007")
    assert f.severity == "error" and "remove_in 'soon' is not a version" in f.message
    fine = build(tmp_path / "fine", {"foo.yaml": arch("foo")})
    assert codes(lint_table(fine), "F007") == []


def test_f007_plugin_entries_use_the_plugin_version(tmp_path):
    dep = arch("acme", tasks="  model: {{target: pkg.acme:M, deprecated: {{since: '1.0', remove_in: '1.5'}}}}\n")
    table = build(tmp_path, {}, later={"acme.yaml": dep}, kind="plugin", dist="acme-models", version="2.0")
    [f] = codes(lint_table(table), "F007")
    assert f.severity == "error" and "the table is at 2.0" in f.message
    assert table_version(Provenance("x", 1, "builtin")) == __import__("factory").__version__
    assert table_version(Provenance("x", 1, "plugin", "acme", "3.1")) == "3.1"
    assert table_version(Provenance("x", 1, "plugin", "acme", "3.1"), "4.0") == "4.0"


def test_f008_file_name(tmp_path):
    bad = build(tmp_path / "bad", {"models/bert-base.yaml": arch("bert")})
    [f] = codes(lint_table(bad), "F008")
    assert f.message == "file 'bert-base.yaml' defines architecture 'bert': the file name does not match the key"
    assert f.hint == "rename it to bert.yaml"
    good = build(
        tmp_path / "good",
        {"models/bert.yaml": arch("bert"), "x/gpt-2.v1.yml": arch("gpt-2.v1", tasks="  model: pkg.gpt2:Model\n")},
    )
    assert codes(lint_table(good), "F008") == []


def test_f009_rule_to_unregistered_architecture(tmp_path):
    rules = "rules:\n  - when: {has_key: layer_types}\n    dispatch_as: ministral\n"
    bad = build(tmp_path / "bad", {"mistral.yaml": arch("mistral", rules)})
    [f] = codes(lint_table(bad), "F009")
    assert (
        f.severity == "error" and f.line == 7 and "names architecture 'ministral', which is not registered" in f.message
    )
    good = build(tmp_path / "good", {"mistral.yaml": arch("mistral", rules), "ministral.yaml": arch("ministral")})
    assert codes(lint_table(good), "F009") == []


def test_f010_plugin_target_outside_its_distribution(tmp_path):
    # factory-registry ships the top-level package `factory`; `yaml` belongs to PyYAML
    outside = arch("acme", tasks="  model: yaml:SafeLoader\n")
    table = build(
        tmp_path / "bad", {}, later={"acme.yaml": outside}, kind="plugin", dist="factory-registry", version="0.1.0"
    )
    [f] = codes(lint_table(table), "F010")
    assert (
        f.severity == "warning"
        and "whose package 'yaml' belongs to distribution pyyaml, not to factory-registry" in f.message
    )
    inside = arch("acme", tasks="  model: factory.registry.table:Table\n")
    table = build(
        tmp_path / "good", {}, later={"acme.yaml": inside}, kind="plugin", dist="factory_registry", version="0.1.0"
    )
    assert codes(lint_table(table), "F010") == []
    # the same registration from a directory source is not a plugin: nothing to compare
    assert codes(lint_table(build(tmp_path / "path", {}, later={"acme.yaml": outside})), "F010") == []


def test_suppression_is_reported_with_its_reason(tmp_path):
    table = build(
        tmp_path,
        {
            "c.yaml": ckpts("""\
            edge: {hub: {repo: org/a, revision: main}, lint: {F004: "tracks main on purpose: nightly smoke test"}}
        """),
            "models/bert-base.yaml": arch("bert", 'lint: {F008: "historic name, kept for links"}\n'),
        },
    )
    found = lint_table(table)
    f4, f8 = codes(found, "F004")[0], codes(found, "F008")[0]
    assert (
        f4.suppressed == "tracks main on purpose: nightly smoke test"
        and f8.suppressed == "historic name, kept for links"
    )
    assert not has_failures(found, strict=True)
    d = f4.as_dict()
    assert d["severity"] == "suppressed" and d["suppressed_severity"] == "warning"
    assert d["message"].endswith("[suppressed: tracks main on purpose: nightly smoke test]")


def test_f011_unused_and_unknown_suppressions(tmp_path):
    table = build(
        tmp_path / "bad",
        {
            "foo.yaml": arch(
                "foo",
                tasks="  model: {{target: pkg.foo:M, lint: {{F004: not a checkpoint, F099: no such code, "
                "F001: only checked with --import}}}}\n",
            )
        },
    )
    found = codes(lint_table(table), "F011")
    assert sorted(f.message for f in found) == [
        "registration model / foo: lint suppression names unknown code F099",
        "registration model / foo: lint suppression of F004 suppresses nothing here",
    ]
    with_imports = lint_table(table, imports=True)  # pkg.foo does not import: F001 fires, and is suppressed
    assert [f.suppressed for f in codes(with_imports, "F001")] == ["only checked with --import"]
    assert len(codes(with_imports, "F011")) == 2
    good = build(tmp_path / "good", {"c.yaml": ckpts("e: {hub: {repo: o/a}, lint: {F004: why}}\n")})
    assert codes(lint_table(good), "F011") == []


def test_has_failures():
    warn = Finding("F004", "warning", "m")
    assert not has_failures([warn]) and has_failures([warn], strict=True)
    assert has_failures([Finding("F009", "error", "m")])
    assert has_failures([{"severity": "error"}]) and not has_failures([{"severity": "suppressed"}], strict=True)


# --- the CLI: a plugin-style registry (built-in tasks) named on the command line ---------
def plugin_repo(tmp_path: Path, extra: str = "") -> Path:
    reg = tmp_path / "registry.d"
    (reg / "models").mkdir(parents=True)
    (reg / "models" / "acme.yaml").write_text(arch("acme", tasks="  model: acme.modeling:AcmeModel\n"))
    (reg / "checkpoints.yaml").write_text(ckpts(f"acme-tiny: {{architecture: acme, hub: {{repo: org/acme{extra}}}}}\n"))
    return reg


def test_cli_lint_exit_codes_and_formats(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORY_DISABLE_PACKS", "all")
    monkeypatch.delenv("FACTORY_REGISTRY_PATH", raising=False)
    reg = plugin_repo(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["lint", "registry.d"]) == 0  # a warning does not fail ...
    captured = capsys.readouterr()
    assert captured.out.startswith("registry.d/checkpoints.yaml:4: warning: [F004] checkpoint 'acme-tiny' (org/acme)")
    assert "lint: 0 error(s), 1 warning(s), 0 suppressed" in captured.err
    assert main(["lint", "registry.d", "--strict"]) == 1  # ... unless --strict
    capsys.readouterr()
    assert main(["lint", "registry.d", "--format", "github"]) == 0
    assert capsys.readouterr().out.startswith("::warning file=registry.d/checkpoints.yaml,line=4,title=F004::")
    assert main(["lint", str(reg / "models" / "acme.yaml")]) == 0  # findings of named files only
    assert capsys.readouterr().out == ""
    (reg / "models" / "acme.yaml").write_text(arch("acme", "rules:\n  - {when: {has_key: x}, dispatch_as: nope}\n"))
    assert main(["lint", "registry.d", "--format", "json"]) == 1
    import json

    found = json.loads(capsys.readouterr().out)
    assert {(f["code"], f["severity"]) for f in found} == {("F004", "warning"), ("F009", "error")}


def test_cli_lint_reports_load_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORY_DISABLE_PACKS", "all")
    reg = plugin_repo(tmp_path)
    (reg / "models" / "acme.yaml").write_text(arch("acme", tasks="  nosuch: a.b:C\n"))
    monkeypatch.chdir(tmp_path)
    assert main(["lint", "registry.d"]) == 1
    out = capsys.readouterr().out
    assert "registry.d/models/acme.yaml:5: error: [UnknownTaskError] unknown task 'nosuch'" in out
