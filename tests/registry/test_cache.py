"""The registry cache: warm loads skip YAML, edits are never served stale, corrupt or torn files are not read."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest

import factory
from factory.registry import cache, loader
from factory.registry.cache import CacheWarning

ARCH = textwrap.dedent("""
    schema_version: 1
    kind: architecture
    architecture: {name}
    config: pkg.mod:{cls}Config
    tasks:
      model: pkg.mod:{cls}Model
""")


@pytest.fixture()
def registry_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FACTORY_NO_CACHE", raising=False)
    reg = tmp_path / "reg"
    reg.mkdir()
    (reg / "alpha.yaml").write_text(ARCH.format(name="alpha", cls="Alpha"))
    (reg / "beta.yaml").write_text(ARCH.format(name="beta", cls="Beta"))
    return reg


def _load(reg: Path):
    return factory.load_registry(paths=[reg], include_plugins=False, packs=False)


def _no_yaml(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("YAML was read although the cache should have served the table")

    monkeypatch.setattr(loader, "read_sources", refuse)


def test_warm_load_is_served_from_the_cache(registry_dir, monkeypatch, tmp_path):
    cold = _load(registry_dir)
    assert list((tmp_path / "cache").glob("registry-*.json"))
    _no_yaml(monkeypatch)
    warm = _load(registry_dir)
    assert warm.digest == cold.digest
    assert warm.content() == cold.content()
    assert warm.resolve("model", "beta").target == "pkg.mod:BetaModel"
    assert warm.resolve("model", "beta").provenance == cold.resolve("model", "beta").provenance
    assert [r.key for r in warm.find("*", "al*")] == [r.key for r in cold.find("*", "al*")]
    assert pickle.loads(pickle.dumps(warm)).digest == cold.digest
    with pytest.raises(TypeError):
        warm.registrations[("model", "beta")] = None  # still read-only


@pytest.mark.parametrize("change", ["edit", "add", "remove", "rename"])
def test_any_change_to_the_files_gives_a_new_table(registry_dir, change):
    before = _load(registry_dir)
    if change == "edit":
        (registry_dir / "beta.yaml").write_text(ARCH.format(name="beta", cls="Gamma"))
    elif change == "add":
        (registry_dir / "gamma.yaml").write_text(ARCH.format(name="gamma", cls="Gamma"))
    elif change == "remove":
        (registry_dir / "beta.yaml").unlink()
    else:
        (registry_dir / "beta.yaml").rename(registry_dir / "b.yaml")
    after = _load(registry_dir)
    if change == "rename":
        assert after.digest == before.digest
        assert after.resolve("model", "beta").provenance.file.endswith("b.yaml")
    else:
        assert after.digest != before.digest
    if change == "edit":
        assert after.resolve("model", "beta").target == "pkg.mod:GammaModel"
    if change == "add":
        assert "gamma" in after.architectures
    if change == "remove":
        assert "beta" not in after.architectures


def test_a_broken_edit_is_reported_not_served_from_the_cache(registry_dir):
    _load(registry_dir)
    (registry_dir / "beta.yaml").write_text("schema_version: 1\nkind: architecture\narchitecture: [\n")
    with pytest.raises(factory.YAMLSyntaxError) as info:
        _load(registry_dir)
    assert info.value.file.endswith("beta.yaml")


def test_corrupt_cache_is_rebuilt_with_a_warning(registry_dir, tmp_path):
    table = _load(registry_dir)
    (entry,) = (tmp_path / "cache").glob("registry-*.json")
    entry.write_text(entry.read_text()[: len(entry.read_text()) // 2])  # a torn file
    with pytest.warns(CacheWarning, match="ignoring corrupt registry cache"):
        again = _load(registry_dir)
    assert again.digest == table.digest
    json.loads(entry.read_text())  # rewritten whole
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _load(registry_dir).digest == table.digest


def test_cache_of_another_key_or_format_is_not_used(registry_dir, tmp_path):
    _load(registry_dir)
    (entry,) = (tmp_path / "cache").glob("registry-*.json")
    state = json.loads(entry.read_text())
    state["format"] = -1
    entry.write_text(json.dumps(state))
    with pytest.warns(CacheWarning, match="key or format mismatch"):
        _load(registry_dir)


def test_no_cache_and_unwritable_cache(registry_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_NO_CACHE", "1")
    _load(registry_dir)
    assert not (tmp_path / "cache").exists()
    monkeypatch.delenv("FACTORY_NO_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(CacheWarning, match="cannot write the registry cache"):
        assert "alpha" in _load(registry_dir).architectures


def test_concurrent_writers_never_leave_a_torn_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    values = [{"writer": i, "blob": "x" * 200_000} for i in range(4)]
    seen: list = []
    errors: list = []

    def writer(value):
        for _ in range(15):
            cache.write_json("registry", "k" * 64, value)

    def reader():
        for _ in range(60):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                got = cache.read_json("registry", "k" * 64)
            errors.extend(caught)
            if got is not None:
                seen.append(got["writer"])
                assert got in values

    threads = [threading.Thread(target=writer, args=(v,)) for v in values] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, [str(w.message) for w in errors]
    assert not list((tmp_path / "cache").glob(".*.tmp"))
    assert cache.read_json("registry", "k" * 64) in values


def test_two_processes_loading_at_once(registry_dir, tmp_path):
    code = (
        "import warnings, factory; warnings.simplefilter('error');"
        f"t = factory.load_registry(paths=[{str(registry_dir)!r}], include_plugins=False, packs=False);"
        "print(t.digest)"
    )
    env = {**os.environ, "FACTORY_CACHE_DIR": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1


@pytest.mark.parametrize("how", ["in-place-utime", "cp-p", "rsync-t"])
def test_a_file_replaced_with_the_same_size_mtime_and_inode_is_not_served_stale(registry_dir, how):
    """`cp -p`, `rsync -t` and utime() restore size and mtime (in place: the inode too); ctime still moves."""
    import shutil

    _load(registry_dir)
    path = registry_dir / "beta.yaml"
    before = path.stat()
    new_text = ARCH.format(name="beta", cls="Zeta")  # as long as "Beta"
    assert len(new_text) == before.st_size
    if how == "in-place-utime":
        with open(path, "r+", encoding="utf-8") as fh:  # same inode
            fh.write(new_text)
    else:
        staged = registry_dir.parent / "staged.yaml"
        staged.write_text(new_text)
        os.utime(staged, ns=(before.st_atime_ns, before.st_mtime_ns))
        if how == "cp-p":
            shutil.copy2(staged, path)  # cp -p: writes into the existing inode, keeps the times
        else:
            os.replace(staged, path)  # rsync -t: a new inode, renamed over, times kept
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if how != "rsync-t":
        assert after.st_ino == before.st_ino
    assert _load(registry_dir).resolve("model", "beta").target == "pkg.mod:ZetaModel"


def test_a_plugin_directory_renamed_after_the_scan_was_cached(reg_env, arch_yaml, tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FACTORY_NO_CACHE", raising=False)
    root = reg_env.plugin("acme-models", "1.0", {"models/acme.yaml": arch_yaml("acme")})
    assert "acme" in reg_env.load(packs=False).architectures
    moved = root.rename(root.parent / "registry")  # the package's directory renamed; sys.path unchanged
    with pytest.raises(factory.RegistryError, match="points at .*registry.d, which is not a directory"):
        reg_env.load(packs=False)  # the cached scan is not trusted: a rescan reports the broken entry point
    moved.rename(root)
    assert "acme" in reg_env.load(packs=False).architectures


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_a_cache_file_is_rebuilt_not_read(registry_dir, tmp_path, finishes):
    cold = _load(registry_dir)
    (entry,) = (tmp_path / "cache").glob("registry-*.json")
    entry.unlink()
    os.mkfifo(entry)
    with pytest.warns(CacheWarning, match=r"ignoring unusable registry cache .* \(is a FIFO"):
        assert finishes(lambda: _load(registry_dir)).digest == cold.digest
    assert entry.is_file()  # rewritten as a regular file
