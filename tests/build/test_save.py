"""factory.save: config.json + safetensors (sharded with an index), written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from factory.build import saving as save_module
from factory.build.meta import empty_model, fresh_model
from factory.build.saving import save
from factory.build.weights import find_weight_files, load_weights
from factory.errors import SaveError
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
