"""factory diff: a real git repository, each kind of change, text / Markdown / JSON item by item."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from factory.cli.main import main
from factory.review.diff import DiffError, diff_specs, diff_tables, read_side, render

A = "a" * 40
B = "b" * 40
H1, H2 = "1a" * 32, "2b" * 32

TASKS = """\
schema_version: 1
kind: tasks
tasks:
  - name: model
    group: generic
    summary: The bare model.
    auto_class: AutoModel
    aliases: [base]
  - name: causal-lm
    group: nlp
    summary: Next-token prediction.
    auto_class: AutoModelForCausalLM
    aliases: [text-generation, gen]
  - name: config
    group: component
    summary: The config.
    auto_class: AutoConfig
"""

FOO = """\
schema_version: 1
kind: architecture
architecture: foo
summary: Foo
config: pkg.foo:FooConfig
tasks:
  model: pkg.foo:FooModel
  causal-lm: pkg.foo:FooForCausalLM
rules:
  - when: {has_key: x}
    dispatch_as: bar
    reason: x means bar
"""

BAR = """\
schema_version: 1
kind: architecture
architecture: bar
summary: Bar
config: pkg.bar:BarConfig
tasks:
  model: pkg.bar:BarModel
"""

CKPTS = f"""\
schema_version: 1
kind: checkpoints
checkpoints:
  tiny-foo:
    architecture: foo
    hub: {{repo: org/tiny-foo, revision: {A}}}
    sha256: {{model.safetensors: {H1}}}
  old-one:
    hub: {{repo: org/old, revision: {A}}}
"""

OVERRIDE_FOO_CONFIG = """\
schema_version: 1
kind: architecture
architecture: foo
tasks: {}
config: {target: pkg.patched:FooConfig, override: patched config for the base commit}
"""

# --- the second commit: one change of each kind ---
TASKS_2 = (
    TASKS.replace("summary: The bare model.", "summary: The bare model, no head.")
    .replace("    aliases: [base]\n", "")
    .replace("aliases: [text-generation, gen]", "aliases: [text-generation, lm]")
    + """\
  - name: seq2seq-lm
    group: nlp
    summary: Encoder-decoder generation.
    auto_class: AutoModelForSeq2SeqLM
    aliases: [gen]
"""
)
FOO_2 = (
    FOO.replace("  causal-lm: pkg.foo:FooForCausalLM\n", "")
    .replace("model: pkg.foo:FooModel", "model: pkg.foo2:FooModel")
    .replace("dispatch_as: bar", "dispatch_as: baz")
    + """\
  - when: {has_key: y}
    dispatch_as: bar
"""
)
BAR_2 = BAR + "  causal-lm: pkg.bar:BarForCausalLM\n"
BAZ = BAR.replace("bar", "baz").replace("Bar", "Baz")
CKPTS_2 = f"""\
schema_version: 1
kind: checkpoints
checkpoints:
  tiny-foo:
    architecture: foo
    hub: {{repo: org/tiny-foo, revision: {B}}}
    sha256: {{model.safetensors: {H2}}}
  local-bar:
    architecture: bar
    path: ../weights/bar
"""
OVERRIDE_BAR_MODEL = """\
schema_version: 1
kind: architecture
architecture: bar
tasks:
  model: {target: pkg.fast:BarModel, override: faster kernels}
"""

DIRS = ("registry.d", "overrides.d")


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    out = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def write(repo: Path, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    """A repository whose second commit makes one change of each kind."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(
        root,
        {
            "registry.d/tasks.yaml": TASKS,
            "registry.d/models/foo.yaml": FOO,
            "registry.d/models/bar.yaml": BAR,
            "registry.d/checkpoints/hub.yaml": CKPTS,
            "overrides.d/foo.yaml": OVERRIDE_FOO_CONFIG,
            "README": "not registry\n",
        },
    )
    commit(root, "base")
    write(
        root,
        {
            "registry.d/tasks.yaml": TASKS_2,
            "registry.d/models/foo.yaml": FOO_2,
            "registry.d/models/bar.yaml": BAR_2,
            "registry.d/models/baz.yaml": BAZ,
            "registry.d/checkpoints/hub.yaml": CKPTS_2,
            "overrides.d/foo.yaml": None,
            "overrides.d/bar.yaml": OVERRIDE_BAR_MODEL,
        },
    )
    commit(root, "change everything")
    monkeypatch.chdir(root)
    monkeypatch.delenv("FACTORY_REGISTRY_PATH", raising=False)
    return root


def by_key(diff) -> dict[tuple[str, str], object]:
    out = {(c.section, c.key): c for c in diff.changes}
    assert len(out) == len(diff.changes), "one item per (section, key)"
    return out


def test_each_kind_of_change_item_by_item(repo):
    diff = diff_specs("HEAD~1", "HEAD", dirs=DIRS)
    items = by_key(diff)
    expected = {
        ("task", "model"): ("changed", False),
        ("task", "seq2seq-lm"): ("added", True),
        ("alias", "base"): ("removed", True),
        ("alias", "lm"): ("added", True),
        ("alias", "gen"): ("moved", True),
        ("architecture", "baz"): ("added", True),
        ("registration", "causal-lm / bar"): ("added", True),
        ("registration", "causal-lm / foo"): ("removed", True),
        ("registration", "model / foo"): ("retargeted", True),
        ("registration", "config / baz"): ("added", True),
        ("registration", "model / baz"): ("added", True),
        ("override", "model / bar"): ("added", True),
        ("override", "config / foo"): ("removed", True),
        ("rule", "foo: foo config that has key 'x' -> baz"): ("changed", True),
        ("rule", "foo: foo config that has key 'y' -> bar"): ("added", True),
        ("checkpoint", "tiny-foo"): ("re-pinned", True),
        ("checkpoint", "old-one"): ("removed", True),
        ("checkpoint", "local-bar"): ("added", True),
    }
    assert {k: (c.change, c.dispatch) for k, c in items.items()} == expected
    assert diff.dispatch_changed and diff.base.digest != diff.head.digest

    retarget = items[("registration", "model / foo")]
    assert retarget.summary == "model / foo: pkg.foo:FooModel -> pkg.foo2:FooModel"
    assert retarget.old_at == retarget.new_at == "registry.d/models/foo.yaml:7"
    removed = items[("registration", "causal-lm / foo")]
    assert removed.old_at == "registry.d/models/foo.yaml:8" and removed.new_at is None
    added = items[("registration", "causal-lm / bar")]
    assert added.new_at == "registry.d/models/bar.yaml:8" and added.old_at is None

    over = items[("override", "model / bar")]
    assert over.summary == "model / bar: override added (faster kernels): pkg.bar:BarModel -> pkg.fast:BarModel"
    assert over.new_at == "overrides.d/bar.yaml:5"
    assert over.details == ("shadows pkg.bar:BarModel (registry.d/models/bar.yaml:7, builtin)",)
    gone = items[("override", "config / foo")]
    assert gone.summary == "config / foo: override removed: pkg.patched:FooConfig -> pkg.foo:FooConfig"
    assert gone.old_at == "overrides.d/foo.yaml:5" and gone.new_at == "registry.d/models/foo.yaml:5"

    rule = items[("rule", "foo: foo config that has key 'x' -> baz")]
    assert rule.summary == "rule changed: foo config that has key 'x' -> baz (was -> bar)"
    assert rule.old_at == "registry.d/models/foo.yaml:10"

    pin = items[("checkpoint", "tiny-foo")]
    assert pin.summary == f"checkpoint tiny-foo re-pinned: org/tiny-foo {A} -> {B}"
    assert pin.details == (f"sha256 model.safetensors: {H1[:16]}… -> {H2[:16]}…",)
    assert pin.old["hub"]["revision"] == A and pin.new["hub"]["revision"] == B
    assert items[("checkpoint", "local-bar")].summary == "checkpoint local-bar (bar) -> path ../weights/bar"
    assert items[("alias", "gen")].summary == "alias gen: causal-lm -> seq2seq-lm"
    assert items[("task", "model")].summary == "task model: summary: 'The bare model.' -> 'The bare model, no head.'"


def test_text_markdown_and_json_outputs(repo, capsys):
    assert main(["diff", "HEAD~1", "HEAD", "--registry-dir", "registry.d", "--registry-dir", "overrides.d"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("factory diff HEAD~1 (") and lines[0].endswith(")")
    assert lines[1].startswith("table digest ")
    assert lines[2] == "17 dispatch change(s); 1 other change(s)"
    for expected in (
        "  ~ model / foo: pkg.foo:FooModel -> pkg.foo2:FooModel",
        "      at registry.d/models/foo.yaml:7",
        "  - causal-lm / foo removed (was -> pkg.foo:FooForCausalLM)",
        "      was at registry.d/models/foo.yaml:8",
        "  + causal-lm / bar -> pkg.bar:BarForCausalLM",
        "      at registry.d/models/bar.yaml:8",
        "  + model / bar: override added (faster kernels): pkg.bar:BarModel -> pkg.fast:BarModel",
        "      shadows pkg.bar:BarModel (registry.d/models/bar.yaml:7, builtin)",
        "  - config / foo: override removed: pkg.patched:FooConfig -> pkg.foo:FooConfig",
        "      at overrides.d/foo.yaml:5 -> registry.d/models/foo.yaml:5",
        "  ~ rule changed: foo config that has key 'x' -> baz (was -> bar)",
        "  + rule added: foo config that has key 'y' -> bar",
        f"  ~ checkpoint tiny-foo re-pinned: org/tiny-foo {A} -> {B}",
        "  - checkpoint old-one removed (was -> hub org/old@" + A + ")",
        "  + alias lm -> causal-lm",
        "  ~ alias gen: causal-lm -> seq2seq-lm",
        "  - alias base removed (was -> model)",
        "  + task seq2seq-lm added (nlp, AutoModelForSeq2SeqLM)",
        "  ~ task model: summary: 'The bare model.' -> 'The bare model, no head.'  (no dispatch change)",
    ):
        assert expected in lines, expected
    for title in (
        "tasks",
        "task aliases",
        "architectures",
        "registrations",
        "overrides",
        "dispatch rules",
        "named checkpoints",
    ):
        assert title in lines

    assert (
        main(
            [
                "diff",
                "HEAD~1",
                "HEAD",
                "--format",
                "markdown",
                "--registry-dir",
                "registry.d",
                "--registry-dir",
                "overrides.d",
            ]
        )
        == 0
    )
    md = capsys.readouterr().out
    assert md.startswith("### factory diff: `HEAD~1 (")
    assert "**17 dispatch change(s); 1 other change(s)**" in md
    for row in (
        "| ~ retargeted | model / foo: pkg.foo:FooModel -&gt; pkg.foo2:FooModel | `registry.d/models/foo.yaml:7` |",
        "| - removed | causal-lm / foo removed (was -&gt; pkg.foo:FooForCausalLM) | `registry.d/models/foo.yaml:8` |",
        "| + added | model / bar: override added (faster kernels): pkg.bar:BarModel -&gt; pkg.fast:BarModel"
        "<br>shadows pkg.bar:BarModel (registry.d/models/bar.yaml:7, builtin) | `registry.d/models/bar.yaml:7` → "
        "`overrides.d/bar.yaml:5` |",
        f"| ~ re-pinned | checkpoint tiny-foo re-pinned: org/tiny-foo {A} -&gt; {B}<br>sha256 model.safetensors: "
        f"{H1[:16]}… -&gt; {H2[:16]}… | `registry.d/checkpoints/hub.yaml:4` |",
    ):
        assert row in md, row
    assert "#### Registrations (5)" in md and "#### Overrides (2)" in md
    # the metadata-only change is folded away
    assert "<details><summary>Tasks (1), no dispatch change</summary>" in md

    assert (
        main(
            [
                "diff",
                "HEAD~1",
                "HEAD",
                "--format",
                "json",
                "--registry-dir",
                "registry.d",
                "--registry-dir",
                "overrides.d",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["dispatch_changed"] is True and data["counts"] == {"dispatch": 17, "other": 1}
    assert data["base"]["commit"] == git(repo, "rev-parse", "HEAD~1")
    assert data["head"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert len(data["base"]["digest"]) == 64 and data["base"]["digest"] != data["head"]["digest"]
    items = {(c["section"], c["key"]): c for c in data["changes"]}
    assert items[("registration", "model / foo")] == {
        "section": "registration",
        "change": "retargeted",
        "key": "model / foo",
        "summary": "model / foo: pkg.foo:FooModel -> pkg.foo2:FooModel",
        "dispatch": True,
        "old_at": "registry.d/models/foo.yaml:7",
        "new_at": "registry.d/models/foo.yaml:7",
        "old": items[("registration", "model / foo")]["old"],
        "new": items[("registration", "model / foo")]["new"],
        "details": [],
    }
    assert items[("registration", "model / foo")]["old"]["target"] == "pkg.foo:FooModel"
    assert items[("override", "model / bar")]["new"]["shadows"][0]["target"] == "pkg.bar:BarModel"
    assert items[("checkpoint", "tiny-foo")]["new"]["sha256"] == {"model.safetensors": H2}
    assert items[("alias", "gen")]["old"] == "causal-lm" and items[("alias", "gen")]["new"] == "seq2seq-lm"


def test_rename_and_reformat_is_no_dispatch_change(repo, capsys):
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "mv", "registry.d/models/foo.yaml", "registry.d/models/renamed-foo.yaml")
    git(repo, "mv", "registry.d/checkpoints", "registry.d/catalog")
    # reorder keys and switch to flow style: same content
    (repo / "registry.d/models/bar.yaml").write_text(
        "# reformatted\nkind: architecture\nschema_version: 1\narchitecture: bar\nsummary: Bar\n"
        "tasks: {causal-lm: pkg.bar:BarForCausalLM, model: 'pkg.bar:BarModel'}\nconfig: pkg.bar:BarConfig\n"
    )
    commit(repo, "move files around")
    diff = diff_specs(base, "HEAD", dirs=DIRS)
    assert diff.changes == () and not diff.dispatch_changed
    assert diff.base.digest == diff.head.digest
    assert (
        main(["diff", base, "HEAD", "--exit-code", "--registry-dir", "registry.d", "--registry-dir", "overrides.d"])
        == 0
    )
    assert "no dispatch change (the tables are identical)" in capsys.readouterr().out.splitlines()
    assert (
        main(["diff", base, "--format", "markdown", "--registry-dir", "registry.d", "--registry-dir", "overrides.d"])
        == 0
    )
    assert "**no dispatch change (the tables are identical)**" in capsys.readouterr().out


def test_exit_code(repo, capsys):
    args = ["--registry-dir", "registry.d", "--registry-dir", "overrides.d"]
    assert main(["diff", "HEAD~1", "HEAD", "--exit-code", *args]) == 1
    assert main(["diff", "HEAD", "--exit-code", *args]) == 0  # the working tree is clean
    # a metadata-only edit: reported, but not a dispatch change
    (repo / "registry.d/models/bar.yaml").write_text(BAR_2.replace("summary: Bar", "summary: Bar, v2"))
    assert main(["diff", "HEAD", "--exit-code", *args]) == 0
    assert "no dispatch change; 1 other change(s)" in capsys.readouterr().out


def test_working_tree_is_the_default_head_and_is_not_touched(repo, capsys):
    (repo / "registry.d/models/bar.yaml").write_text(BAR_2.replace("pkg.bar:BarForCausalLM", "pkg.bar2:Lm"))
    (repo / "registry.d/models/untracked.yaml").write_text(BAR.replace("bar", "qux"))
    before = git(repo, "status", "--porcelain")
    diff = diff_specs("HEAD", dirs=DIRS)
    assert diff.head.label == "working tree" and diff.head.commit is None
    items = by_key(diff)
    assert items[("registration", "causal-lm / bar")].change == "retargeted"
    assert items[("architecture", "qux")].new_at == "registry.d/models/untracked.yaml:1"
    diff_specs("HEAD~1", "HEAD", dirs=DIRS)
    assert git(repo, "status", "--porcelain") == before
    assert "pkg.bar2:Lm" in (repo / "registry.d/models/bar.yaml").read_text()


def test_ranges_and_directories(repo, tmp_path):
    two_dots = diff_specs("HEAD~1..HEAD", dirs=DIRS)
    assert two_dots.changes == diff_specs("HEAD~1", "HEAD", dirs=DIRS).changes
    git(repo, "checkout", "-q", "-b", "side", "HEAD~1")
    (repo / "registry.d/models/bar.yaml").write_text(BAR.replace("pkg.bar:BarModel", "pkg.side:BarModel"))
    commit(repo, "side change")
    # A...B compares B with the merge base of A and B: only the side branch's change
    three = diff_specs("main...side", dirs=DIRS)
    assert [(c.section, c.key, c.change) for c in three.changes] == [("registration", "model / bar", "retargeted")]
    # two directories: plain registry directories, compared as they are
    old, new = tmp_path / "old" / "registry.d", tmp_path / "new" / "registry.d"
    write(old.parent, {"registry.d/tasks.yaml": TASKS, "registry.d/models/bar.yaml": BAR})
    write(new.parent, {"registry.d/tasks.yaml": TASKS, "registry.d/models/bar.yaml": BAR_2})
    by_dir = diff_specs(str(old), str(new))
    assert [(c.key, c.change, c.new_at) for c in by_dir.changes] == [
        ("causal-lm / bar", "added", "registry.d/models/bar.yaml:8")
    ]
    assert diff_specs(str(old.parent), str(new.parent)).changes == by_dir.changes


def test_a_plugin_registry_is_layered_over_the_installed_builtin(tmp_path, monkeypatch):
    root = tmp_path / "plugin"
    root.mkdir()
    git(root, "init", "-q")
    write(
        root,
        {
            "registry.d/acme.yaml": "schema_version: 1\nkind: architecture\narchitecture: acme\n"
            "tasks:\n  causal-lm: acme.modeling:AcmeForCausalLM\n"
        },
    )
    commit(root, "base")
    monkeypatch.setenv("FACTORY_DISABLE_PACKS", "all")  # a smaller built-in registry: faster, same rules
    (root / "registry.d/acme.yaml").write_text(
        "schema_version: 1\nkind: architecture\narchitecture: acme\ntasks:\n"
        "  causal-lm: acme.modeling:AcmeForCausalLM\n  text-encoding: acme.modeling:AcmeEncoder\n"
    )
    monkeypatch.chdir(root)
    diff = diff_specs("HEAD")  # built-in tasks (causal-lm, text-encoding) come from the installed factory
    assert [(c.section, c.key, c.change) for c in diff.changes] == [("registration", "text-encoding / acme", "added")]
    side = read_side("HEAD", builtin="installed")
    assert "causal-lm" in side.table.tasks and ("causal-lm", "acme") in side.table.registrations
    with pytest.raises(DiffError, match="does not load"):
        read_side("HEAD", builtin="side")  # no task table of its own: unknown tasks


def test_bad_sides_are_reported(repo, tmp_path, monkeypatch, capsys):
    assert main(["diff", "no-such-rev"]) == 2
    err = capsys.readouterr().err
    assert "'no-such-rev' is neither a directory nor a git revision of" in err and "hint:" in err
    (repo / "registry.d/models/broken.yaml").write_text(
        "schema_version: 1\nkind: architecture\narchitecture: broken\ntasks:\n  nosuch-task: a.b:C\n"
    )
    commit(repo, "broken")
    assert main(["diff", "HEAD~1", "HEAD"]) == 2
    err = capsys.readouterr().err
    assert "does not load: 1 problem(s)" in err
    assert "registry.d/models/broken.yaml:5: unknown task 'nosuch-task'" in err
    monkeypatch.chdir(tmp_path)  # not a git repository
    with pytest.raises(DiffError, match="not inside a git repository"):
        diff_specs("HEAD")


def test_diff_tables_of_equal_tables_and_renderers(repo):
    side = read_side("HEAD", dirs=DIRS)
    diff = diff_tables(side.table, side.table)
    assert diff.changes == () and render(diff, "json").startswith("{")
    assert json.loads(render(diff, "json"))["counts"] == {"dispatch": 0, "other": 0}
    from factory.errors import FactoryError

    with pytest.raises(FactoryError, match="unknown diff format 'yaml'"):
        render(diff, "yaml")
