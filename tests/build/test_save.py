"""factory.save: config.json + safetensors (sharded with an index), written atomically."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from factory.build import saving as save_module
from factory.build.meta import empty_model, fresh_model
from factory.build.saving import save
from factory.build.weights import find_weight_files, load_weights
from factory.errors import ConcurrentWriteWarning, SaveError
from tests.build.test_weights import TinyConfig, TinyLM, assert_same_state


@pytest.fixture
def model() -> TinyLM:
    torch.manual_seed(0)
    return fresh_model(TinyLM, TinyConfig())


def rebuild(directory: Path, **kwargs) -> TinyLM:
    config = TinyConfig.from_dict(json.loads((directory / "config.json").read_text()))
    built = empty_model(TinyLM, config)
    load_weights(built, find_weight_files(directory), **kwargs)
    return built


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def keys_in(path: Path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def test_writes_config_and_weights(tmp_path: Path, model: TinyLM):
    target = save(model, tmp_path / "out")
    assert target == tmp_path / "out"
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((target / "config.json").read_text())
    assert config["model_type"] == "tiny-test" and config["architectures"] == ["TinyLM"]
    assert config["dtype"] == config["torch_dtype"] == "float32"
    assert config["hidden_size"] == 8 and config["tie_word_embeddings"] is True
    with safe_open(str(target / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
    assert leftovers(tmp_path) == []


def test_tied_weights_saved_once_under_the_source_name(tmp_path: Path, model: TinyLM):
    target = save(model, tmp_path / "out")
    keys = keys_in(target / "model.safetensors")
    assert "body.embed.weight" in keys and "head.weight" not in keys
    assert "body.position_ids" not in keys and "body.scale" in keys  # persistent buffers only


def test_round_trip_is_bit_identical(tmp_path: Path, model: TinyLM):
    first = rebuild(save(model, tmp_path / "a"))
    assert_same_state(first, model)
    second = rebuild(save(first, tmp_path / "b"))  # saving a memory-mapped model
    assert_same_state(second, model)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_round_trip_bfloat16(tmp_path: Path, model: TinyLM):
    half = rebuild(save(model, tmp_path / "a"), dtype=torch.bfloat16)
    target = save(half, tmp_path / "b")
    assert json.loads((target / "config.json").read_text())["dtype"] == "bfloat16"
    assert_same_state(rebuild(target), half)


def test_sharded_with_index(tmp_path: Path, model: TinyLM):
    loaded = rebuild(save(model, tmp_path / "single"))  # all tensors share one mapped storage
    target = save(loaded, tmp_path / "sharded", max_shard_size=400)
    index = json.loads((target / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in target.glob("model-*.safetensors"))
    assert len(shards) > 1 and not (target / "model.safetensors").exists()
    assert set(index["weight_map"].values()) == set(shards)
    for shard in shards:
        assert (target / shard).stat().st_size < 400 + 1024  # data below the limit (+ header)
        assert {k for k, v in index["weight_map"].items() if v == shard} == keys_in(target / shard)
    expected = {k: v for k, v in model.state_dict().items() if k != "head.weight"}
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in expected.values())
    assert_same_state(rebuild(target), model)


def test_bad_shard_size(tmp_path: Path, model: TinyLM):
    with pytest.raises(SaveError, match="max_shard_size 'lots' is not a size"):
        save(model, tmp_path / "out", max_shard_size="lots")
    assert list(tmp_path.iterdir()) == []


def failing_after_first_file(monkeypatch, exc: BaseException | None = None):
    exc = exc if exc is not None else OSError("disk full")
    real = safetensors.torch.save_file
    calls = []

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) > 1:
            Path(filename).write_bytes(b"partial")
            raise exc
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    return calls


def test_failure_mid_save_leaves_no_target_and_no_temp(tmp_path: Path, model: TinyLM, monkeypatch):
    calls = failing_after_first_file(monkeypatch)
    with pytest.raises(SaveError, match=r"out: save failed: OSError: disk full") as err:
        save(model, tmp_path / "out", max_shard_size=400)
    assert len(calls) == 2  # it really failed midway
    assert "untouched" in err.value.hint or "as it was" in err.value.hint
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_save_leaves_existing_target_untouched(tmp_path: Path, model: TinyLM, monkeypatch):
    target = save(model, tmp_path / "out")
    (target / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    failing_after_first_file(monkeypatch)
    with torch.no_grad():
        model.body.proj.weight.add_(1)
    with pytest.raises(SaveError):
        save(model, target, max_shard_size=400)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_interrupt_cleans_up_and_propagates(tmp_path: Path, model: TinyLM, monkeypatch):
    failing_after_first_file(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        save(model, tmp_path / "out", max_shard_size=400)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_replacing_a_checkpoint(tmp_path: Path, model: TinyLM, monkeypatch, exchange: bool):
    if not exchange:
        monkeypatch.setattr(save_module, "_exchange", lambda a, b: False)
    target = save(model, tmp_path / "out", max_shard_size=400)
    (target / "tokenizer.json").write_text('{"mine": true}')
    (target / "pytorch_model.bin").write_bytes(b"stale")
    (target / "extras").mkdir()
    (target / "extras" / "notes.txt").write_text("kept")
    with torch.no_grad():
        model.body.proj.weight.add_(1)
    save(model, target)
    names = sorted(p.name for p in target.iterdir())
    assert names == ["config.json", "extras", "model.safetensors", "tokenizer.json"]  # old shards/index/pickle gone
    assert (target / "tokenizer.json").read_text() == '{"mine": true}'
    assert (target / "extras" / "notes.txt").read_text() == "kept"
    assert_same_state(rebuild(target), model)
    assert leftovers(tmp_path) == []


def test_target_is_a_file(tmp_path: Path, model: TinyLM):
    (tmp_path / "out").write_text("x")
    with pytest.raises(SaveError, match="it exists and is not a directory"):
        save(model, tmp_path / "out")


def test_current_directory_refused(tmp_path: Path, model: TinyLM, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    for target in (".", tmp_path):
        with pytest.raises(SaveError, match="refusing to replace the current working directory"):
            save(model, target)
    assert [p.name for p in tmp_path.iterdir()] == ["work"] and list((tmp_path / "work").iterdir()) == []


def test_symlinked_target_replaces_the_real_directory(tmp_path: Path, model: TinyLM):
    real = save(model, tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    save(model, tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "link" / "model.safetensors").is_file()
    assert leftovers(tmp_path) == []


def test_unloaded_model_refused(tmp_path: Path):
    with pytest.raises(SaveError, match=r"tensor body\.(embed\.weight|scale) is on the meta device"):
        save(empty_model(TinyLM, TinyConfig()), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_model_without_config_refused(tmp_path: Path):
    with pytest.raises(SaveError, match="Linear has no config with to_dict"):
        save(torch.nn.Linear(2, 2), tmp_path / "out")


def test_config_value_that_is_not_json(tmp_path: Path, model: TinyLM):
    model.config.callback = object()
    with pytest.raises(SaveError, match="config cannot be written as JSON"):
        save(model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_config_alone(tmp_path: Path):
    target = save(TinyConfig(hidden_size=4, torch_dtype=torch.float16), tmp_path / "cfg")
    data = json.loads((target / "config.json").read_text())
    assert data["hidden_size"] == 4 and data["model_type"] == "tiny-test" and data["torch_dtype"] == "float16"


class Component:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def save(self, directory: Path) -> None:
        (Path(directory) / "tokenizer.json").write_text("{}")
        if self.fail:
            raise RuntimeError("boom")


class PretrainedComponent:
    def save_pretrained(self, directory: Path) -> None:
        (Path(directory) / "preprocessor_config.json").write_text("{}")


def test_component_save_is_delegated_and_keeps_the_model(tmp_path: Path, model: TinyLM):
    target = save(model, tmp_path / "out")
    save(Component(), target)
    save(PretrainedComponent(), target)
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
    ]


def test_failing_component_save_is_atomic(tmp_path: Path):
    with pytest.raises(SaveError, match="RuntimeError: boom"):
        save(Component(fail=True), tmp_path / "tok")
    assert list(tmp_path.iterdir()) == []


def test_tokenizers_tokenizer(tmp_path: Path):
    from tokenizers import Tokenizer, models

    target = save(Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")), tmp_path / "tok")
    assert Tokenizer.from_file(str(target / "tokenizer.json")).token_to_id("a") == 0


def test_unknown_object(tmp_path: Path):
    with pytest.raises(SaveError, match="do not know how to save a builtins.int"):
        save(3, tmp_path / "x")


def test_transformers_loads_our_save(tmp_path: Path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    reference = GPT2LMHeadModel(config).eval()
    target = save(reference, tmp_path / "gpt2")
    keys = keys_in(target / "model.safetensors")
    assert "transformer.wte.weight" in keys and "lm_head.weight" not in keys
    loaded = GPT2LMHeadModel.from_pretrained(target).eval()
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    ids = torch.tensor([[1, 5, 9, 3]])
    assert torch.equal(loaded(ids).logits, reference(ids).logits)


# --- modes, concurrent writers, stale temporaries ----------------------------------------------
@pytest.fixture
def umask():
    """``umask(mask)`` sets the process umask for the test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o775, 0o700, 0o2775])
def test_an_existing_target_keeps_its_mode(tmp_path: Path, model: TinyLM, mode: int):
    target = tmp_path / "out"
    target.mkdir()
    target.chmod(mode)
    save(model, target)
    assert stat.S_IMODE(target.stat().st_mode) == mode


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o755), (0o027, 0o750), (0o002, 0o775), (0o077, 0o700)])
def test_a_new_target_gets_the_umask_mode(tmp_path: Path, model: TinyLM, umask, mask: int, mode: int):
    umask(mask)
    target = save(model, tmp_path / "new" / "out")
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == mode


class ConcurrentComponent:
    """Saves a tokenizer; meanwhile "another process" writes into the target directory."""

    def __init__(self, target: Path, files: dict[str, str], *, also_write: str | None = None) -> None:
        self.target, self.files, self.also_write = target, files, also_write

    def save(self, directory: Path) -> None:
        (Path(directory) / "tokenizer.json").write_text('{"new": true}')
        if self.also_write:
            (Path(directory) / self.also_write).write_text("from the save")
        for name, text in self.files.items():  # the other writer, while the save runs
            (self.target / name).parent.mkdir(parents=True, exist_ok=True)
            (self.target / name).write_text(text)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_files_written_by_another_process_during_a_save_are_carried_over(
    tmp_path: Path, model: TinyLM, monkeypatch, exchange: bool
):
    if not exchange:
        monkeypatch.setattr(save_module, "_exchange", lambda a, b: False)
    target = save(model, tmp_path / "out")
    (target / "notes.txt").write_text("before")
    late = {"notes.txt": "edited during the save", "eval/results.json": "{}", "log.txt": "new"}
    save(ConcurrentComponent(target, late), target)
    assert (target / "tokenizer.json").read_text() == '{"new": true}'
    for name, text in late.items():
        assert (target / name).read_text() == text, name
    assert (target / "model.safetensors").is_file() and leftovers(tmp_path) == []
    assert not list(tmp_path.glob("out.concurrent-*"))


def test_a_file_both_wrote_keeps_the_previous_directory(tmp_path: Path, model: TinyLM):
    target = save(model, tmp_path / "out")
    component = ConcurrentComponent(target, {"special.json": "theirs"}, also_write="special.json")
    with pytest.warns(ConcurrentWriteWarning, match="another process wrote special.json") as caught:
        save(component, target)
    [kept] = tmp_path.glob("out.concurrent-*")
    assert str(kept) in str(caught[0].message)
    assert (kept / "special.json").read_text() == "theirs"  # nothing lost
    assert (target / "special.json").read_text() == "from the save"


def test_a_file_edited_in_place_during_the_save_keeps_the_edit(tmp_path: Path, model: TinyLM):
    target = save(model, tmp_path / "out")
    (target / "README.md").write_text("v1")

    class Editor:
        def save(self, directory: Path) -> None:
            (Path(directory) / "tokenizer.json").write_text("{}")

    original = save_module._carry_over

    def carry_then_edit(old, new, stale):
        original(old, new, stale)
        with open(old / "README.md", "a") as fh:  # the same inode as the carried-over link
            fh.write(" and v2")

    import unittest.mock

    with unittest.mock.patch.object(save_module, "_carry_over", carry_then_edit):
        save(Editor(), target)
    assert (target / "README.md").read_text() == "v1 and v2"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_the_target_is_carried_over_without_blocking(tmp_path: Path, model: TinyLM, finishes):
    target = save(model, tmp_path / "out")
    os.mkfifo(target / "pipe")
    finishes(lambda: save(model, target))
    assert stat.S_ISFIFO(os.lstat(target / "pipe").st_mode)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temp(tmp_path: Path, name: str, age: float) -> Path:
    path = tmp_path / name
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "model.safetensors").write_bytes(b"x" * 100)
    when = time.time() - age
    for p in (path / "sub" / "model.safetensors", path / "sub", path):
        os.utime(p, (when, when))
    return path


def test_stale_temporaries_of_killed_saves_are_removed_and_only_those(tmp_path: Path, model: TinyLM):
    host, dead, alive = save_module._host_tag(), _dead_pid(), os.getpid()
    day = save_module.STALE_SECONDS
    removed = {
        "dead-old": _temp(tmp_path, f".out.{host}-{dead}-0123abcd.saving", save_module.DEAD_SECONDS + 60),
        "any-very-old": _temp(tmp_path, f".out.{host}-{alive}-0123abce.saving", day + 60),
        "other-host-old": _temp(tmp_path, f".out.ffffffff-{alive}-0123abcf.old", day + 60),
        "legacy-old": _temp(tmp_path, ".out.ab_cd12z.saving", day + 60),
    }
    kept = {
        "dead-recent": _temp(tmp_path, f".out.{host}-{dead}-0123abd0.saving", 30),
        "alive": _temp(tmp_path, f".out.{host}-{alive}-0123abd1.saving", save_module.DEAD_SECONDS + 60),
        "other-host": _temp(tmp_path, f".out.ffffffff-{dead}-0123abd2.saving", save_module.DEAD_SECONDS + 60),
        "legacy-recent": _temp(tmp_path, ".out.zz_cd12z.saving", 60),
        "other-target": _temp(tmp_path, f".other.{host}-{dead}-0123abd3.saving", day + 60),
        "not-ours": _temp(tmp_path, ".out.backup", day + 60),
        "prefix-only": _temp(tmp_path, f".out2.{host}-{dead}-0123abd4.saving", day + 60),
    }
    link = tmp_path / f".out.{host}-{dead}-0123abd5.saving"
    link.symlink_to(kept["not-ours"])
    save(model, tmp_path / "out")
    for what, path in removed.items():
        assert not path.exists(), what
    for what, path in kept.items():
        assert path.exists(), what
    assert link.is_symlink() and kept["not-ours"].exists()


def test_a_killed_save_leaves_a_temporary_that_the_next_save_removes(tmp_path: Path, model: TinyLM):
    code = (  # a config save (no torch to import), killed with SIGKILL after writing, before the swap
        "import os, signal\n"
        "from factory.build import saving\n"
        "class Config:\n"
        "    def to_dict(self):\n"
        "        return {'model_type': 'x'}\n"
        "def die(tmp):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "saving._fsync_tree = die\n"
        f"saving.save(Config(), {str(tmp_path / 'out')!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    [left] = [p for p in tmp_path.iterdir() if p.name.endswith(".saving")]
    assert save_module._own_temp(tmp_path / "out").match(left.name)
    when = time.time() - save_module.DEAD_SECONDS - 60
    os.utime(left, (when, when))
    for p in left.iterdir():
        os.utime(p, (when, when))
    save(model, tmp_path / "out")
    assert leftovers(tmp_path) == []
