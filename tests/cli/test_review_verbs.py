"""CI-facing output: GitHub workflow commands, the pre-commit hook, explain for reviewers, no torch."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from factory.cli.main import main
from factory.review.findings import format_findings

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOW = re.compile(r"^::(?P<level>error|warning|notice)(?: (?P<props>[^:]*))?::(?P<message>.*)$")


def unescape(text: str) -> str:
    return text.replace("%3A", ":").replace("%2C", ",").replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def parse_workflow_command(line: str) -> dict:
    """Parse one line the way the Actions runner does; fails the test when it is not a command."""
    m = WORKFLOW.match(line)
    assert m, f"not a workflow command: {line!r}"
    props = {}
    for item in (m["props"] or "").split(","):
        key, sep, value = item.partition("=")
        assert sep and key in ("file", "line", "col", "endLine", "endColumn", "title"), item
        props[key] = unescape(value)
    return {"level": m["level"], **props, "message": unescape(m["message"])}


def arch(name: str, tasks: str) -> str:
    return f"schema_version: 1\nkind: architecture\narchitecture: {name}\ntasks:\n{tasks}"


@pytest.fixture()
def env(monkeypatch):
    """A small built-in registry (packs off), no extra sources."""
    monkeypatch.setenv("FACTORY_DISABLE_PACKS", "all")
    monkeypatch.delenv("FACTORY_REGISTRY_PATH", raising=False)
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture()
def other_repo(tmp_path, env):
    """Another repository with its own registry.d that refers to built-in tasks, plus unrelated YAML."""
    root = tmp_path / "other"
    files = {
        "registry.d/models/acme.yaml": arch("acme", "  causal-lm: acme.modeling:AcmeForCausalLM\n"),
        "registry.d/checkpoints/acme.yaml": "schema_version: 1\nkind: checkpoints\ncheckpoints:\n  acme-tiny:\n    architecture: acme\n"
        "    hub: {repo: acme/tiny, revision: " + "c" * 40 + "}\n",
        ".github/workflows/ci.yml": "on: [push]\njobs: {}\n",
        ".pre-commit-config.yaml": "repos: []\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_validate_github_lines_are_workflow_commands(other_repo, env, monkeypatch, capsys):
    bad = other_repo / "registry.d/models/acme.yaml"
    bad.write_text(
        arch("acme", "  causal-lm: acme.modeling:AcmeForCausalLM\n  nosuch-task: a.b:C\n  model: 'not a target'\n")
    )
    monkeypatch.chdir(other_repo)
    assert main(["validate", "--format", "github", "registry.d/models/acme.yaml"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines
    commands = [parse_workflow_command(line) for line in lines]
    for cmd in commands:
        assert cmd["level"] == "error" and cmd["file"] == "registry.d/models/acme.yaml"
        assert int(cmd["line"]) > 0 and (other_repo / cmd["file"]).is_file()
    assert {c["title"] for c in commands} == {"SchemaError"}
    assert "'not a target' is malformed" in commands[0]["message"] and commands[0]["line"] == "7"
    assert commands[0]["col"] == "3"


def test_lint_github_lines_are_workflow_commands(other_repo, env, monkeypatch, capsys):
    ck = other_repo / "registry.d/checkpoints/acme.yaml"
    ck.write_text(ck.read_text().replace("c" * 40, "main"))
    monkeypatch.chdir(other_repo)
    assert main(["lint", "--format", "github", "registry.d"]) == 0
    [cmd] = [parse_workflow_command(line) for line in capsys.readouterr().out.splitlines()]
    assert cmd == {
        "level": "warning",
        "file": "registry.d/checkpoints/acme.yaml",
        "line": "4",
        "title": "F004",
        "message": cmd["message"],
    }
    assert cmd["message"].startswith("checkpoint 'acme-tiny' (acme/tiny) is pinned to revision 'main'")


def test_github_format_escapes_data_and_properties():
    finding = {
        "severity": "suppressed",
        "code": "F004",
        "file": "a,b:c.yaml",
        "line": 3,
        "column": 2,
        "message": "100% sure\nsecond line",
        "hint": None,
    }
    line = format_findings([finding], "github")
    assert line == "::notice file=a%2Cb%3Ac.yaml,line=3,col=2,title=F004::100%25 sure%0Asecond line"
    cmd = parse_workflow_command(line)
    assert cmd["file"] == "a,b:c.yaml" and cmd["message"] == "100% sure\nsecond line"
    no_file = format_findings([{**finding, "file": None, "severity": "error"}], "github")
    assert parse_workflow_command(no_file) == {"level": "error", "title": "F004", "message": "100% sure\nsecond line"}


# --- the pre-commit hook -----------------------------------------------------------------
def hook(hook_id: str) -> dict:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    [found] = [h for h in hooks if h["id"] == hook_id]
    return found


def run_hook(hook_id: str, repo: Path, env: dict, changed: list[str]) -> subprocess.CompletedProcess:
    """Run a hook the way pre-commit does: entry + the changed files its `files` pattern selects, from the repo root."""
    spec = hook(hook_id)
    files = [f for f in changed if re.search(spec["files"], f)]
    assert spec.get("pass_filenames", True) is True
    return subprocess.run(
        [*shlex.split(spec["entry"]), *files], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )


def test_pre_commit_hook_definition():
    spec = hook("factory-validate")
    assert spec["entry"] == "factory validate" and spec["language"] == "python"
    pattern = re.compile(spec["files"])
    assert pattern.search("registry.d/models/acme.yaml") and pattern.search("pkg/registry.d/x.yml")
    assert not pattern.search(".github/workflows/ci.yml") and not pattern.search(".pre-commit-config.yaml")
    assert hook("factory-lint")["entry"] == "factory lint"


def test_pre_commit_hook_on_changed_files(other_repo, env):
    changed = ["registry.d/checkpoints/acme.yaml", ".github/workflows/ci.yml", ".pre-commit-config.yaml"]
    # only the checkpoint file changed: it names architecture acme, defined in a file pre-commit did not pass
    ok = run_hook("factory-validate", other_repo, env, changed)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "file(s) checked: ok" in ok.stderr

    ck = other_repo / "registry.d/checkpoints/acme.yaml"
    ck.write_text(ck.read_text().replace("architecture: acme", "architecture: acme\n    revsion: x"))
    bad = run_hook("factory-validate", other_repo, env, changed)
    assert bad.returncode == 1
    assert "registry.d/checkpoints/acme.yaml:6:5: error: [SchemaError]" in bad.stdout
    assert "unknown key 'revsion'" in bad.stdout


def test_pre_commit_hook_reports_named_files_only(other_repo, env):
    (other_repo / "registry.d/models/zeta.yaml").write_text(arch("zeta", "  nosuch-task: z.m:Z\n"))
    res = run_hook("factory-validate", other_repo, env, ["registry.d/checkpoints/acme.yaml"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == ""
    assert "note: 1 problem(s) in other files of the same registry directory, not named here" in res.stderr
    res = run_hook("factory-validate", other_repo, env, ["registry.d/models/zeta.yaml"])
    assert res.returncode == 1 and "registry.d/models/zeta.yaml:5: error: [UnknownTaskError]" in res.stdout
    lint = run_hook("factory-lint", other_repo, env, ["registry.d/checkpoints/acme.yaml"])
    assert lint.returncode == 0 and "lint: 0 error(s), 0 warning(s), 0 suppressed" in lint.stderr


def test_pre_commit_hook_in_another_checkout_of_factory(tmp_path, env):
    """A complete registry.d (with the task table) stands in for the installed one: nothing is defined twice."""
    import shutil

    from factory.registry.sources import builtin_dir

    root = tmp_path / "checkout"
    shutil.copytree(builtin_dir(), root / "registry.d", ignore=shutil.ignore_patterns("packs"))
    res = run_hook("factory-validate", root, env, ["registry.d/tasks.yaml", "README.md"])
    assert res.returncode == 0, res.stdout + res.stderr
    tasks = root / "registry.d/tasks.yaml"
    tasks.write_text(tasks.read_text().replace("auto_class: AutoModel\n", "auto_class: NotAnAutoClass\n", 1))
    res = run_hook("factory-validate", root, env, ["registry.d/tasks.yaml"])
    assert res.returncode == 1 and "registry.d/tasks.yaml:" in res.stdout and "NotAnAutoClass" in res.stdout


def test_validate_named_builtin_file_is_not_loaded_twice(env, capsys):
    builtin = REPO / "registry.d" / "tasks.yaml"
    assert main(["validate", str(builtin)]) == 0
    assert "ok" in capsys.readouterr().err


# --- explain, for reviewers -----------------------------------------------------------------
def test_explain_shows_each_step_with_file_line_and_what_it_shadows(tmp_path, env, monkeypatch, capsys):
    base, over = tmp_path / "base", tmp_path / "over"
    base.mkdir(), over.mkdir()
    (base / "acme.yaml").write_text(arch("acme", "  causal-lm: acme.modeling:AcmeForCausalLM\n"))
    (over / "acme.yaml").write_text(
        arch("acme", "  causal-lm: {target: acme.fast:AcmeForCausalLM, override: fused kernels}\n")
    )
    monkeypatch.setenv("FACTORY_REGISTRY_PATH", str(base))
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "causal-lm", "acme", "--registry", str(over)]) == 0
    out = capsys.readouterr().out
    assert "registration: causal-lm / acme -> acme.fast:AcmeForCausalLM" in out
    assert "at over/acme.yaml:5" in out
    assert "shadows: acme.modeling:AcmeForCausalLM" in out and "at base/acme.yaml:5" in out


# --- no torch for the verbs that do not build ---------------------------------------------------
def test_review_verbs_do_not_import_torch(other_repo, env, tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=other_repo, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "empty",
        ],
        cwd=other_repo,
        check=True,
    )
    code = (
        "import sys\n"
        "from factory.cli.main import main\n"
        "assert main(['diff', 'HEAD']) == 0\n"
        "assert main(['diff', 'HEAD', '--format', 'markdown']) == 0\n"
        "assert main(['lint', 'registry.d']) == 0\n"
        "assert main(['validate', 'registry.d/models/acme.yaml', '--format', 'github']) == 0\n"
        "assert main(['explain', 'causal-lm', 'acme', '--registry', 'registry.d']) == 0\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'safetensors'))\n"
        "assert not bad, bad\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=other_repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "+ architecture acme added" in res.stdout  # the working tree's registry.d versus an empty commit
