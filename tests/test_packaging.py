"""The wheel ships schemas/ and registry.d/, and works in a fresh environment without torch.

The fresh venv gets the wheel's runtime dependencies without a network: a ``.pth``
file points at a directory of links to exactly the distributions that
factory-registry requires (transitively, extras excluded) in this environment, so
pip sees them installed and torch is not importable there. The example plugin is
built and installed the same way, then found through its entry point.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import factory
from factory.registry import sources

REPO = Path(factory.__file__).resolve().parent.parent
PLUGIN = REPO / "examples" / "factory-example-plugin"
DIST = "factory-registry"


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(
        src, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "dist", "*.egg-info")
    )


def _build_wheel(source: Path, outdir: Path) -> Path:
    """``python -m build --wheel``; without build isolation when setuptools is here (offline, fast)."""
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(source)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(4, "--no-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [wheel] = outdir.glob("*.whl")
    return wheel


def _runtime_closure(name: str) -> dict[str, md.Distribution]:
    """The installed distributions ``name`` needs at run time (no extras), itself excluded."""
    todo, seen = [name], {}
    while todo:
        key = canonicalize_name(todo.pop())
        if key in seen:
            continue
        seen[key] = dist = md.distribution(key)
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    del seen[canonicalize_name(name)]
    return seen


def _link_dependencies(deps: Path) -> list[str]:
    deps.mkdir()
    for dist in _runtime_closure(DIST).values():
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            if (base / top).exists() and not (deps / top).exists():
                (deps / top).symlink_to(base / top)
    return sorted(p.name for p in deps.iterdir())


class FreshEnv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.bin = self.venv / "bin"
        self.cwd = root / "elsewhere"  # outside the repository
        self.cwd.mkdir()
        self.env = {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(root),
            "FACTORY_CACHE_DIR": str(root / "cache"),
            "LC_ALL": "C.UTF-8",
        }

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=self.cwd)
        if check:
            assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def pip_install(self, *wheels: Path, deps: bool = True) -> None:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(self.bin / "python"),
            "install",
            "--no-index",
            "--disable-pip-version-check",
            "--no-input",
            *(() if deps else ("--no-deps",)),
            *map(str, wheels),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.cwd)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> FreshEnv:
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    for name in ("factory", "schemas", "registry.d"):
        _copy_tree(REPO / name, src / name)
    wheel = _build_wheel(src, root / "dist")

    env = FreshEnv(root)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env.venv)], check=True)
    linked = _link_dependencies(root / "deps")
    assert "yaml" in linked and "jsonschema" in linked
    assert not {"torch", "transformers"} & set(linked)
    purelib = subprocess.run(
        [str(env.bin / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "_factory_test_deps.pth").write_text(f"{root / 'deps'}\n")
    env.pip_install(wheel)  # dependencies are checked (and found), nothing is downloaded
    env.wheel = wheel
    return env


def test_wheel_contents(fresh):
    import zipfile

    names = set(zipfile.ZipFile(fresh.wheel).namelist())
    for name in (
        "factory/__init__.py",
        "factory/cli/main.py",
        "factory/py.typed",
        "factory/components/tokenizer_classes.json",
        "factory/_data/registry.d/tasks.yaml",
        "factory/_data/schemas/tasks.schema.json",
        "factory/_data/schemas/architecture.schema.json",
        "factory/_data/schemas/checkpoints.schema.json",
    ):
        assert name in names, name
    shipped = {n.removeprefix("factory/_data/registry.d/") for n in names if n.startswith("factory/_data/registry.d/")}
    here = {
        p.relative_to(sources.builtin_dir()).as_posix()
        for p in sources.builtin_dir().rglob("*")
        if p.suffix in (".yaml", ".yml")
    }
    assert here <= shipped
    assert not [n for n in names if n.startswith(("tests/", "examples/"))]


def test_installed_wheel_finds_its_registry_and_schemas(fresh):
    code = (
        "import factory, factory.registry.sources as l, factory.registry.schemas as s, sys;"
        "print(factory.__file__); print(l.builtin_dir()); print(s.schema_path('architecture'));"
        "print('torch' in sys.modules)"
    )
    out = fresh.run(str(fresh.bin / "python"), "-c", code).stdout.split()
    site = str(fresh.venv)
    assert all(line.startswith(site) for line in out[:3]), out
    assert Path(out[1]).is_dir() and Path(out[2]).is_file() and out[3] == "False"
    proc = fresh.run(str(fresh.bin / "python"), "-c", "import torch", check=False)
    assert proc.returncode == 1 and "No module named 'torch'" in proc.stderr

    proc = fresh.run(str(fresh.bin / "factory"), "validate")
    n = len([p for p in sources.builtin_dir().rglob("*") if p.suffix in (".yaml", ".yml")])
    assert proc.stderr.strip().endswith(f"{n} file(s) checked: ok")

    proc = fresh.run(str(fresh.bin / "factory"), "tasks", "--format", "json")
    assert {"causal-lm", "masked-lm", "config", "tokenizer", "time-series-prediction"} <= {
        row["task"] for row in json.loads(proc.stdout)
    }
    proc = fresh.run(str(fresh.bin / "factory"), "list", "--format", "json")
    rows = json.loads(proc.stdout)
    assert all(row["source"] == "builtin" and "site-packages" in row["defined_at"] for row in rows)
    proc = fresh.run(str(fresh.bin / "factory"), "schema")
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == ["tasks", "architecture", "checkpoints"]
    assert all(Path(fresh.cwd, line.split("\t")[1]).resolve().is_file() for line in proc.stdout.splitlines())


def test_installed_wheel_reports_a_broken_file(fresh):
    bad = fresh.cwd / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "x.yaml").write_text("schema_version: 1\nkind: architecture\narchitecture: x\ntasks:\n  model: a..b\n")
    proc = fresh.run(str(fresh.bin / "factory"), "validate", "bad", check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("bad/x.yaml:5:3: error: [SchemaError]")


def test_example_plugin_is_picked_up_once_installed(fresh):
    src = fresh.root / "plugin-src"
    _copy_tree(PLUGIN, src)
    wheel = _build_wheel(src, fresh.root / "plugin-dist")
    fresh.pip_install(wheel, deps=False)

    proc = fresh.run(str(fresh.bin / "factory"), "list", "--arch", "toy-mlp", "--components")
    header, *rows = proc.stdout.splitlines()
    assert [r.split()[:3] for r in rows] == [
        ["config", "toy-mlp", "factory_example_plugin.configuration:ToyMLPConfig"],
        ["model", "toy-mlp", "factory_example_plugin.modeling:ToyMLPModel"],
    ]
    assert all("plugin (factory-example-plugin 0.1.0)" in r for r in rows)

    proc = fresh.run(str(fresh.bin / "factory"), "list", "--arch", "toy-mlp", "--format", "json")
    [row] = json.loads(proc.stdout)
    assert (row["task"], row["source"], row["distribution"], row["version"]) == (
        "model",
        "plugin",
        "factory-example-plugin",
        "0.1.0",
    )
    assert row["defined_at"].endswith("site-packages/factory_example_plugin/registry.d/toy.yaml:10")

    proc = fresh.run(str(fresh.bin / "factory"), "show", "toy-mlp")
    assert "(plugin)" in proc.stdout and "factory_example_plugin.modeling:ToyMLPModel" in proc.stdout
    proc = fresh.run(str(fresh.bin / "factory"), "validate")
    assert proc.stderr.strip().endswith("file(s) checked: ok")


def test_example_plugin_classes_pass_the_import_checks(tmp_path, monkeypatch):
    """In this environment (with torch): the plugin's targets import and follow the seed page's rules."""
    from factory.review.lint import check_imports

    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setenv("FACTORY_NO_CACHE", "1")
    table = factory.load_registry(
        [sources.builtin_dir() / "tasks.yaml", PLUGIN / "factory_example_plugin" / "registry.d"],
        include_builtin=False,
        include_plugins=False,
    )
    assert sorted(table.registrations) == [("config", "toy-mlp"), ("model", "toy-mlp")]
    assert check_imports(table) == []

    import torch
    from factory_example_plugin.configuration import ToyMLPConfig
    from factory_example_plugin.modeling import ToyMLPModel

    config = ToyMLPConfig.from_dict({"model_type": "toy-mlp", "hidden_size": 4, "extra_key": 1})
    assert (config.hidden_size, config.input_size, config.extra_key) == (4, 8, 1)
    model = ToyMLPModel(config)
    out = model(torch.zeros(2, 8))
    assert out.last_hidden_state.shape == (2, 4) and out["last_hidden_state"] is out.last_hidden_state
