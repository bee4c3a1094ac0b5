"""Shared registry fixtures (no torch here).

Helpers are fixtures (``arch_yaml``, ``reg_env``); helper modules live beside the tests
that use them (``tests.build.hub_server``, ``tests.models.parity``).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from factory.registry import loader, sources

# Property-based tests (hypothesis): a short profile by default and in CI, so that `make test` keeps its
# budget; HYPOTHESIS_PROFILE=long searches much harder. Time bounds are asserted in the tests themselves
# (deadline=None: a busy shared machine must not turn a slow example into a flaky failure).
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=40, **_COMMON)
settings.register_profile("dev", max_examples=200, **_COMMON)
settings.register_profile("long", max_examples=3000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: The real task table, copied into every isolated registry.
TASKS_YAML = sources.builtin_dir() / "tasks.yaml"


def write(path: Path, text: str) -> Path:
    """Write dedented ``text`` to ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _arch_yaml(name: str, tasks: dict[str, str] | None = None, extra: str = "") -> str:
    """A small architecture document: ``tasks`` maps task -> target."""
    tasks = tasks or {"model": f"pkg.{name.replace('-', '_')}:Model"}
    body = "".join(f"  {task}: {target}\n" for task, target in tasks.items())
    return f"schema_version: 1\nkind: architecture\narchitecture: {name}\ntasks:\n{body}{textwrap.dedent(extra)}"


class RegistryEnv:
    """An isolated registry: a private built-in directory (the real tasks.yaml only), only the
    plugins this test installs, no FACTORY_REGISTRY_PATH, no cache, no default table yet."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp_path
        self.builtin = tmp_path / "builtin"
        self.builtin.mkdir()
        shutil.copy(TASKS_YAML, self.builtin / "tasks.yaml")
        self.plugins: set[str] = set()
        self._mp = monkeypatch
        real_entry_points = importlib.metadata.entry_points

        def entry_points(**params):
            return [ep for ep in real_entry_points(**params) if ep.dist and ep.dist.name in self.plugins]

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
        monkeypatch.setattr(sources, "builtin_dir", lambda: self.builtin)
        monkeypatch.setattr(loader, "_default", [])
        for var in ("FACTORY_REGISTRY_PATH", "FACTORY_DISABLE_PACKS", "FACTORY_CACHE_DIR"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("FACTORY_NO_CACHE", "1")

    def write(self, relpath: str, text: str, root: Path | None = None) -> Path:
        """Write a YAML file below ``root`` (default: the built-in directory)."""
        return write((root or self.builtin) / relpath, text)

    def plugin(
        self, dist: str, version: str, files: dict[str, str], *, module: str | None = None, value: str | None = None
    ) -> Path:
        """Install a fake distribution whose ``factory.registry`` entry point is ``value``
        (default ``<module>:registry.d``); ``files`` go below ``<module>/registry.d``."""
        module = module or dist.replace("-", "_")
        site = self.tmp / f"site-{dist}"
        (site / module).mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        for rel, text in files.items():
            write(site / module / "registry.d" / rel, text)
        info = site / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(
            f"[{sources.ENTRY_POINT_GROUP}]\n{module} = {value or module + ':registry.d'}\n"
        )
        self._mp.syspath_prepend(str(site))
        self.plugins.add(dist)
        return site / module / "registry.d"

    def load(self, *paths: Path | str, **kwargs):
        return loader.load_registry(list(paths) or None, **kwargs)

    def collect(self, *paths: Path | str, **kwargs):
        return loader.collect(list(paths) or None, **kwargs)


@pytest.fixture
def arch_yaml():
    """``arch_yaml(name, {task: target}, extra_yaml)``: the text of a small architecture document."""
    return _arch_yaml


@pytest.fixture
def reg_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RegistryEnv:
    return RegistryEnv(tmp_path, monkeypatch)


def _finishes(func, seconds: float = 5.0):
    """Run ``func`` in a thread; fail if it has not returned (or raised) within ``seconds``."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = func()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked?)"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


@pytest.fixture
def finishes():
    """``finishes(func, seconds=5)``: run ``func``, failing the test if it blocks (a FIFO read, a hang)."""
    return _finishes
