"""The ``factory`` command line: verbs, formats, exit codes 0/1/2, and no torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from factory.cli.main import main
from factory.cli.output import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

MISTRAL = """\
schema_version: 1
kind: architecture
architecture: mistral
tasks:
  model: pkg.m:MistralModel
  causal-lm: pkg.m:MistralForCausalLM
summary: Mistral decoder
config: pkg.m:MistralConfig
rules:
  - when: {has_key: layer_types}
    dispatch_as: ministral
    reason: per-layer attention types
"""
MINISTRAL = (
    "schema_version: 1\nkind: architecture\narchitecture: ministral\ntasks:\n  causal-lm: pkg.mi:MinistralForCausalLM\n"
)

GITHUB_LINE = re.compile(
    r"::(?P<level>error|warning|notice) file=(?P<file>[^,:]+),line=(?P<line>\d+)(,col=(?P<col>\d+))?"
    r"(,title=(?P<title>[^,:]+))?::(?P<message>.+)"
)


@pytest.fixture
def env(reg_env, monkeypatch):
    """An isolated registry with mistral and ministral; the working directory is its parent."""
    reg_env.write("models/mistral.yaml", MISTRAL)
    reg_env.write("models/ministral.yaml", MINISTRAL)
    monkeypatch.chdir(reg_env.tmp)
    return reg_env


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- validate --------------------------------------------------------------------------
def test_validate_ok(env, capsys):
    code, out, err = run(capsys, "validate")
    assert (code, out) == (EXIT_OK, "")
    assert "3 file(s) checked: ok" in err
    code, out, err = run(capsys, "validate", "builtin")
    assert code == EXIT_OK and "3 file(s) checked: ok" in err


def test_validate_a_broken_file_names_file_and_line(env, capsys, arch_yaml):
    env.write("extra/bad.yaml", arch_yaml("toy", {"model": "pkg..mod:X"}), root=env.tmp)
    code, out, err = run(capsys, "validate", "extra")
    assert code == EXIT_FINDINGS
    assert out.startswith("extra/bad.yaml:5:3: error: [SchemaError] $.tasks.model: 'pkg..mod:X' is malformed")
    assert "1 problem(s)" in err


def test_validate_reports_every_problem(env, capsys, arch_yaml):
    env.write("extra/a.yaml", "kind: [\n", root=env.tmp)
    env.write("extra/b.yaml", arch_yaml("mistral", {"model": "x.y:Z"}), root=env.tmp)
    (env.tmp / "extra/c.yaml").write_bytes(b"kind: \xff\n")
    code, out, _ = run(capsys, "validate", "extra")
    assert code == EXIT_FINDINGS
    lines = out.splitlines()
    assert [line.split(": error: ")[0] for line in lines] == ["extra/a.yaml:2:1", "extra/c.yaml:1", "extra/b.yaml:5"]
    assert "[YAMLSyntaxError]" in lines[0] and "[ConflictError]" in lines[2]
    assert "builtin/models/mistral.yaml:5" in lines[2]


def test_validate_json(env, capsys, arch_yaml):
    env.write("extra/bad.yaml", arch_yaml("toy", {"model": "{target: a.b:C, override: ''}"}), root=env.tmp)
    code, out, _ = run(capsys, "validate", "extra", "--format", "json")
    assert code == EXIT_FINDINGS
    [finding] = json.loads(out)
    assert finding == {
        "severity": "error",
        "code": "SchemaError",
        "file": "extra/bad.yaml",
        "line": 5,
        "column": 26,
        "message": "$.tasks.model.override: an override needs a reason, found ''",
        "hint": finding["hint"],
    }
    assert "override: <why" in finding["hint"]
    code, out, _ = run(capsys, "validate", "--format", "json")
    assert (code, json.loads(out)) == (EXIT_OK, [])


def test_validate_github(env, capsys, arch_yaml):
    env.write("extra/a.yaml", "tasks:\n  model: a\n  model: b\n", root=env.tmp)
    env.write("extra/b.yaml", arch_yaml("mistral", {"model": "x.y:Z"}), root=env.tmp)
    code, out, _ = run(capsys, "validate", "extra", "--format", "github")
    assert code == EXIT_FINDINGS
    lines = out.splitlines()
    assert len(lines) == 2
    found = [GITHUB_LINE.fullmatch(line) for line in lines]
    assert all(found), lines
    first, second = (m.groupdict() for m in found)
    assert (first["level"], first["file"], first["line"], first["col"], first["title"]) == (
        "error",
        "extra/a.yaml",
        "3",
        "3",
        "YAMLSyntaxError",
    )
    assert "duplicate key 'model'" in first["message"]
    assert (second["file"], second["line"], second["col"], second["title"]) == (
        "extra/b.yaml",
        "5",
        None,
        "ConflictError",
    )
    assert "'model / mistral' is defined twice" in second["message"]


def test_github_format_escapes_newlines_and_properties(env, capsys):
    from factory.review.findings import format_findings

    out = format_findings(
        [
            {
                "severity": "error",
                "code": "X",
                "file": "a,b:c.yaml",
                "line": 2,
                "column": None,
                "message": "two\nlines 100%",
                "hint": None,
            }
        ],
        "github",
    )
    assert out == "::error file=a%2Cb%3Ac.yaml,line=2,title=X::two%0Alines 100%25"


# --- validate --import ---------------------------------------------------------------------
@pytest.fixture
def pkg(env, monkeypatch):
    """A throw-away importable module with config and model classes (no torch);
    the built-in mistral files go, since their targets do not exist."""
    for path in (env.builtin / "models").iterdir():
        path.unlink()
    name = f"factory_test_pkg_{uuid.uuid4().hex[:8]}"
    env.write(
        f"src/{name}.py",
        root=env.tmp,
        text="""\
        class GoodConfig:
            model_type = "good"

        class GoodModel:
            config_class = GoodConfig

        class SubConfig(GoodConfig):
            pass

        class WrongTypeConfig:
            model_type = "something-else"

        class OtherConfig:
            model_type = "mismatch"

        class MismatchConfig:
            model_type = "mismatch"

        class MismatchModel:
            config_class = OtherConfig
        """,
    )
    monkeypatch.syspath_prepend(str(env.tmp / "src"))
    yield name
    sys.modules.pop(name, None)


def _import_findings(capsys, env, name: str, text: str) -> tuple[int, list[dict]]:
    env.write(f"imports/{name}.yaml", text, root=env.tmp)
    code, out, _ = run(capsys, "validate", "--import", "imports", "--format", "json")
    return code, [f for f in json.loads(out) if f["file"].startswith("imports/")]


def test_import_check_passes_for_consistent_classes(env, pkg, capsys, arch_yaml):
    text = arch_yaml("good", {"model": f"{pkg}:GoodModel"}, f"config: {pkg}:GoodConfig\n")
    assert _import_findings(capsys, env, "good", text) == (EXIT_OK, [])
    # a model whose config_class is a base of the registered config is accepted
    text = arch_yaml("good", {"model": f"{pkg}.GoodModel"}, f"config: {pkg}.SubConfig\n")
    assert _import_findings(capsys, env, "good", text)[1] == []


def test_import_check_config_model_type_must_equal_the_architecture(env, pkg, capsys, arch_yaml):
    text = arch_yaml("good", {"model": f"{pkg}:GoodModel"}, f"config: {pkg}:WrongTypeConfig\n")
    code, findings = _import_findings(capsys, env, "good", text)
    assert code == EXIT_FINDINGS
    by_code = {f["code"]: f for f in findings}
    f002 = by_code["F002"]
    assert (f002["file"], f002["line"]) == ("imports/good.yaml", 6)
    assert "has model_type 'something-else', but is registered for architecture 'good'" in f002["message"]
    # GoodModel.config_class is GoodConfig, not the registered WrongTypeConfig
    assert by_code["F003"]["line"] == 5


def test_import_check_model_config_class_must_be_the_registered_config(env, pkg, capsys, arch_yaml):
    text = arch_yaml("mismatch", {"model": f"{pkg}:MismatchModel"}, f"config: {pkg}:MismatchConfig\n")
    code, findings = _import_findings(capsys, env, "mismatch", text)
    assert code == EXIT_FINDINGS
    [f003] = findings
    assert (f003["code"], f003["line"]) == ("F003", 5)
    assert f"declares config_class {pkg}.OtherConfig" in f003["message"]
    assert f"registers config {pkg}:MismatchConfig" in f003["message"]


def test_import_check_reports_targets_that_do_not_import(env, pkg, capsys, arch_yaml):
    text = arch_yaml("good", {"model": f"{pkg}:goodmodel", "causal-lm": "no_such_module_zz.sub:X"})
    code, findings = _import_findings(capsys, env, "good", text)
    assert code == EXIT_FINDINGS
    assert [(f["code"], f["line"]) for f in findings] == [("F001", 5), ("F001", 6)]
    assert "has no attribute 'goodmodel'" in findings[0]["message"]
    assert findings[0]["hint"] == "did you mean 'GoodModel'?"
    assert "cannot import module 'no_such_module_zz.sub'" in findings[1]["message"]


def test_import_check_is_skipped_when_the_table_is_broken(env, pkg, capsys, arch_yaml):
    env.write("imports/bad.yaml", arch_yaml("good", {"model": "no_such_module_zz:X", "nope": "a.b:C"}), root=env.tmp)
    code, out, _ = run(capsys, "validate", "--import", "imports", "--format", "json")
    assert code == EXIT_FINDINGS
    assert [f["code"] for f in json.loads(out)] == ["UnknownTaskError"]


# --- list / tasks / show / schema ------------------------------------------------------------
def test_list(env, capsys):
    code, out, err = run(capsys, "list")
    assert code == EXIT_OK
    header, *rows = out.splitlines()
    assert header.split() == ["TASK", "ARCHITECTURE", "TARGET", "SOURCE", "DEFINED_AT"]
    assert [r.split()[:2] for r in rows] == [["causal-lm", "ministral"], ["causal-lm", "mistral"], ["model", "mistral"]]
    assert rows[1].split()[3:] == ["builtin", "builtin/models/mistral.yaml:6"]
    assert "3 registration(s)" in err


def test_list_filters_and_json(env, capsys):
    code, out, _ = run(capsys, "list", "--task", "text-generation", "--arch", "mi*", "--format", "json")
    rows = json.loads(out)
    assert code == EXIT_OK
    assert [(r["task"], r["architecture"]) for r in rows] == [("causal-lm", "ministral"), ("causal-lm", "mistral")]
    assert rows[1] == {
        "task": "causal-lm",
        "architecture": "mistral",
        "target": "pkg.m:MistralForCausalLM",
        "builder": "native",
        "layer": "native",
        "defined_at": "builtin/models/mistral.yaml:6",
        "source": "builtin",
    }
    code, out, _ = run(capsys, "list", "--components", "--arch", "mistral", "--format", "json")
    assert sorted(r["task"] for r in json.loads(out)) == ["causal-lm", "config", "model"]
    code, out, _ = run(capsys, "list", "--task", "config", "--format", "json")
    assert [r["architecture"] for r in json.loads(out)] == ["mistral"]


def test_list_shows_plugin_distribution(env, capsys, arch_yaml):
    env.plugin("toy-plugin", "1.2.3", {"toy.yaml": arch_yaml("toy")})
    code, out, _ = run(capsys, "list", "--arch", "toy")
    assert code == EXIT_OK
    assert "plugin (toy-plugin 1.2.3)" in out.splitlines()[1]
    code, out, _ = run(capsys, "list", "--arch", "toy", "--format", "json")
    [row] = json.loads(out)
    assert (row["source"], row["distribution"], row["version"]) == ("plugin", "toy-plugin", "1.2.3")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["list", "--task", "text-generaton"], "did you mean 'text-generation'"),
        (["list", "--arch", "mistrall"], "did you mean 'mistral'"),
        (["show", "mistrl"], "did you mean 'mistral'"),
    ],
)
def test_not_found_is_a_finding_with_suggestions(env, capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code == EXIT_FINDINGS
    assert err.startswith("error: unknown ")
    assert words in err


def test_registry_option_adds_a_source(env, capsys, arch_yaml):
    env.write("more/toy.yaml", arch_yaml("toy"), root=env.tmp)
    code, out, _ = run(capsys, "list", "--registry", "more", "--arch", "toy", "--format", "json")
    assert code == EXIT_OK and json.loads(out)[0]["source"] == "path"


def test_broken_registry_makes_reading_verbs_fail(env, capsys):
    env.write("models/broken.yaml", "kind: [\n")
    code, out, err = run(capsys, "list")
    assert code == EXIT_FINDINGS
    assert "error: " in err and "builtin/models/broken.yaml:2" in err


def test_tasks(env, capsys):
    code, out, _ = run(capsys, "tasks", "--format", "json")
    assert code == EXIT_OK
    rows = {r["task"]: r for r in json.loads(out)}
    assert rows["causal-lm"]["architectures"] == 2 and rows["model"]["architectures"] == 1
    assert "text-generation" in rows["causal-lm"]["aliases"].split(",")
    assert rows["tokenizer"]["group"] == "component" and rows["masked-lm"]["auto_class"] == "AutoModelForMaskedLM"
    code, out, _ = run(capsys, "tasks")
    assert out.splitlines()[0].split() == ["TASK", "GROUP", "AUTO_CLASS", "ALIASES", "ARCHITECTURES"]


def test_show(env, capsys):
    code, out, _ = run(capsys, "show", "mistral")
    assert code == EXIT_OK
    assert out.splitlines()[0] == "mistral: Mistral decoder"
    assert "defined in builtin/models/mistral.yaml:1 (builtin)" in out
    assert (
        "mistral config that has key 'layer_types' -> ministral  [builtin/models/mistral.yaml:10]"
        "  (per-layer attention types)"
    ) in out
    assert re.search(r"causal-lm +pkg\.m:MistralForCausalLM  \[builtin/models/mistral\.yaml:6\]", out)
    assert out.index("  model ") < out.index("  config ")  # components last


def test_show_json_with_shadows(env, capsys, arch_yaml):
    env.write("more/m.yaml", arch_yaml("mistral", {"model": "{target: mine.m:Fast, override: faster}"}), root=env.tmp)
    code, out, _ = run(capsys, "show", "mistral", "--registry", "more", "--format", "json")
    info = json.loads(out)
    assert code == EXIT_OK
    assert info["rules"][0]["defined_at"] == "builtin/models/mistral.yaml:10"
    model = next(r for r in info["registrations"] if r["task"] == "model")
    assert model["target"] == "mine.m:Fast" and model["source"] == "path"
    assert model["shadows"] == ["pkg.m:MistralModel (builtin/models/mistral.yaml:5)"]
    code, out, _ = run(capsys, "show", "mistral", "--registry", "more")
    assert "shadows pkg.m:MistralModel (builtin/models/mistral.yaml:5)" in out


def test_schema(env, capsys):
    code, out, _ = run(capsys, "schema")
    assert code == EXIT_OK
    assert [line.split("\t")[0] for line in out.splitlines()] == ["tasks", "architecture", "checkpoints"]
    for line in out.splitlines():
        assert line.split("\t")[1].endswith(".schema.json")
    code, out, _ = run(capsys, "schema", "architecture")
    assert code == EXIT_OK and json.loads(out)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# --- usage errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["validate", "--format", "xml"],
        ["list", "--format", "github"],
        ["show"],
        ["schema", "nope"],
        ["list", "--bogus"],
    ],
)
def test_usage_errors_exit_2(env, capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert "usage: factory" in out + err


def test_help_exits_0(env, capsys):
    code, out, _ = run(capsys, "--help")
    assert code == EXIT_OK
    for verb in ("validate", "list", "tasks", "show", "schema"):
        assert verb in out


# --- processes: entry points and torch ----------------------------------------------------
def _subprocess_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
    env["FACTORY_CACHE_DIR"] = str(tmp / "cache")
    return env


def test_python_dash_m_and_console_script(tmp_path):
    env = _subprocess_env(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "factory", "schema"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.startswith("tasks\t")
    script = Path(sys.executable).with_name("factory")
    assert script.exists(), "the console script is missing: pip install -e ."
    proc = subprocess.run([str(script), "frobnicate"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_reading_verbs_never_import_torch(tmp_path, arch_yaml):
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra/toy.yaml").write_text(arch_yaml("toy-arch", {"model": "factory_missing_pkg.toy:Model"}))
    verbs = [
        ["validate"],
        ["validate", "extra", "--format", "github"],
        ["list"],
        ["list", "--format", "json"],
        ["tasks"],
        ["show", "toy-arch"],
        ["schema"],
        ["schema", "architecture"],
        ["explain", "--no-build", "model", "toy-arch"],
    ]
    code = (
        "import json, sys\n"
        "from factory.cli.main import main\n"
        "assert 'torch' not in sys.modules\n"
        "report = []\n"
        f"for argv in {verbs!r}:\n"
        "    rc = main(argv)\n"
        "    report.append((argv, rc, sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3]))\n"
        "print(json.dumps(report), file=sys.stderr)\n"
    )
    env = {**_subprocess_env(tmp_path), "FACTORY_REGISTRY_PATH": str(tmp_path / "extra")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert [(argv, rc) for argv, rc, _ in report] == [(argv, 0) for argv in verbs], proc.stdout[-2000:]
    assert [(argv, mods) for argv, _, mods in report if mods] == []


def test_import_factory_does_not_import_torch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import factory"],
        capture_output=True,
        text=True,
        env=_subprocess_env(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "factory" in modules
    assert [m for m in modules if m.split(".")[0] in ("torch", "transformers", "safetensors")] == []


# --- hardening: targets that exit at import, errors from every verb, --debug --------------------
@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
        ("raise SystemExit('bye')\n", "called sys.exit('bye')"),
        ("raise GeneratorExit()\n", "raised GeneratorExit"),
        ("raise RuntimeError('broken at import')\n", "raised RuntimeError: broken at import"),
        ("class Boom(BaseException):\n    pass\nraise Boom('custom')\n", "raised Boom: custom"),
        ("import os\nos.environ['X'] = '1'\n1/0\n", "raised ZeroDivisionError"),
    ],
    ids=["sys-exit", "system-exit", "generator-exit", "runtime", "base-exception", "zero-division"],
)
def test_validate_import_survives_targets_that_exit_or_raise(env, capsys, arch_yaml, monkeypatch, body, said):
    name = f"factory_exits_{uuid.uuid4().hex[:8]}"
    env.write(f"src/{name}.py", body, root=env.tmp)
    monkeypatch.syspath_prepend(str(env.tmp / "src"))
    for path in (env.builtin / "models").iterdir():
        path.unlink()
    code, findings = _import_findings(capsys, env, "exits", arch_yaml("exits", {"model": f"{name}:Model"}))
    assert code == EXIT_FINDINGS  # the verb itself went on to report, whatever the module did
    [f001] = findings
    assert f001["code"] == "F001" and f001["line"] == 5 and said in f001["message"]
    assert name not in sys.modules


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "causal-lm", ""],
        ["build", "causal-lm", "x" * 5000],
        ["build", "causal-lm", "gpt2", "--dtype", "int8"],
        ["build", "causal-lm", "gpt2", "--dtype", "float8_e4m3fn"],
        ["build", "causal-lm", "gpt2", "--device", "nosuchdevice"],
        ["build", "no-such-task", "gpt2"],
        ["explain", "causal-lm", "nope"],
        ["show", "nope"],
        ["list", "--registry", "missing-dir"],
        ["tasks", "--registry", "missing-dir"],
        ["diff", "no-such-ref"],  # a usage error: exit 2
        ["lint", "missing-dir"],
    ],
)
def test_every_verb_reports_errors_as_one_message_and_exit_1(request, capsys, argv):
    if argv[0] in ("list", "tasks", "lint", "show"):
        request.getfixturevalue("env")  # an isolated registry: these need no built-in files to fail
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == (EXIT_USAGE if argv[0] == "diff" else EXIT_FINDINGS), (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert err.startswith("error: ") or "error:" in out + err


def test_a_bad_checkpoint_on_the_command_line_is_one_message(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "gpt2", "n_head": 0}')
    code = main(["build", "causal-lm", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert code == EXIT_FINDINGS and "Traceback" not in err
    assert err.startswith(f"error: {tmp_path / 'ckpt' / 'config.json'}: GPT2Config: n_head must be")


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_shows_the_traceback(capsys, monkeypatch, where):
    argv = ["build", "causal-lm", ""]
    if where == "before":
        argv = ["--debug", *argv]
    elif where == "after":
        argv = [*argv, "--debug"]
    else:
        monkeypatch.setenv("FACTORY_DEBUG", "1")
    assert main(argv) == EXIT_FINDINGS
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "error: the name to build is empty" in err


def test_an_unexpected_error_is_called_a_bug(capsys, monkeypatch):
    from factory.cli import registry_verbs

    def broken(args):
        raise KeyError("internal")

    monkeypatch.setattr(registry_verbs, "cmd_tasks", broken)
    assert main(["tasks"]) == EXIT_FINDINGS
    err = capsys.readouterr().err
    assert err.startswith("error: KeyError: 'internal'") and "this is a bug" in err and "Traceback" not in err
