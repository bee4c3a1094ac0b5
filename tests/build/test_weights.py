"""factory.weights: finding, validating and loading checkpoint files into meta-constructed models."""

from __future__ import annotations

import json
import os
import struct
import time
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from factory.build.meta import ModelContractError, empty_model, fresh_model, init_buffers, model_bytes
from factory.build.placement import resolve_dtype
from factory.build.weights import WeightsMismatchWarning, _read_safetensors_header, find_weight_files, load_weights
from factory.errors import CheckpointError, ConfigError, ModelTooLargeError, PickleRefusedError, WeightsMismatchError
from factory.models.configuration import Config


# --- a tiny model following the native model contract ------------------------------------------
class TinyConfig(Config):
    model_type = "tiny-test"
    vocab_size: int = 11
    hidden_size: int = 8
    tie_word_embeddings: bool = True


class TinyTrunk(nn.Module):
    config_class = TinyConfig
    base_model_prefix = "body"
    tied_weights: dict[str, str] = {}

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size)
        self.register_buffer("position_ids", torch.empty(5, dtype=torch.long), persistent=False)
        self.register_buffer("scale", torch.empty(config.hidden_size))
        self.reset_buffers()

    def reset_buffers(self) -> None:  # the model contract for buffers computed in __init__
        if self.position_ids.is_meta:
            return
        self.position_ids.copy_(torch.arange(5))
        self.scale.fill_(2.0)


class TinyLM(nn.Module):
    config_class = TinyConfig
    base_model_prefix = "body"

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.body = TinyTrunk(config)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    @property
    def tied_weights(self) -> dict[str, str]:
        return {"head.weight": "body.embed.weight"} if self.config.tie_word_embeddings else {}


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A transformers-style checkpoint: tied destinations left out."""
    tied = set(getattr(model, "tied_weights", {}))
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k not in tied}


def write_checkpoint(directory: Path, tensors: dict[str, torch.Tensor]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory / "model.safetensors"


@pytest.fixture
def source() -> TinyLM:
    torch.manual_seed(0)
    return fresh_model(TinyLM, TinyConfig())


@pytest.fixture
def ckpt(tmp_path: Path, source: TinyLM) -> Path:
    return write_checkpoint(tmp_path / "ckpt", state_of(source))


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


# --- find_weight_files ------------------------------------------------------------------------
def write_sharded(directory: Path, tensors: dict[str, torch.Tensor], n: int = 2) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    keys = sorted(tensors)
    names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    weight_map = {}
    for i, name in enumerate(names):
        part = {k: tensors[k] for k in keys[i::n]}
        save_file(part, str(directory / name))
        weight_map.update(dict.fromkeys(part, name))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return [directory / name for name in names]


def test_find_single_file(ckpt: Path):
    assert find_weight_files(ckpt.parent) == [ckpt]


def test_find_shards_from_index(tmp_path: Path, source: TinyLM):
    shards = write_sharded(tmp_path / "s", state_of(source), n=3)
    assert find_weight_files(tmp_path / "s") == shards


def test_safetensors_preferred_over_pickle(ckpt: Path):
    torch.save({"w": torch.ones(1)}, ckpt.parent / "pytorch_model.bin")
    assert find_weight_files(ckpt.parent) == [ckpt]


def test_missing_shard_names_index_and_shard(tmp_path: Path, source: TinyLM):
    shards = write_sharded(tmp_path / "s", state_of(source))
    shards[1].unlink()
    with pytest.raises(
        CheckpointError,
        match=r"model.safetensors.index.json: the index names shard "
        r"model-00002-of-00002.safetensors, which is missing",
    ) as err:
        find_weight_files(tmp_path / "s")
    assert err.value.file.endswith("model.safetensors.index.json")
    assert err.value.shard == "model-00002-of-00002.safetensors"


def test_index_not_json(tmp_path: Path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {\n  "a": oops}')
    with pytest.raises(CheckpointError, match="is not valid JSON") as err:
        find_weight_files(tmp_path)
    assert err.value.line == 2


@pytest.mark.parametrize("content", ['{"metadata": {}}', '{"weight_map": {}}', "[1, 2]", '{"weight_map": {"a": 1}}'])
def test_index_without_weight_map(tmp_path: Path, content: str):
    (tmp_path / "model.safetensors.index.json").write_text(content)
    with pytest.raises(CheckpointError, match="no usable 'weight_map'"):
        find_weight_files(tmp_path)


def test_index_shard_outside_directory_refused(tmp_path: Path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../evil.safetensors"}}')
    with pytest.raises(CheckpointError, match="not a plain file name"):
        find_weight_files(tmp_path)


def test_no_weights_lists_what_was_looked_for(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(
        CheckpointError,
        match=r"no weights in this checkpoint directory: looked for model.safetensors, "
        r"model.safetensors.index.json; found config.json",
    ) as err:
        find_weight_files(tmp_path)
    assert "weights=False" in err.value.hint


def test_not_a_directory(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist or is not a directory"):
        find_weight_files(tmp_path / "nope")


def test_pickle_refused_by_default_and_allowed_on_request(tmp_path: Path):
    torch.save({"w": torch.ones(2)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(PickleRefusedError, match="only pickle weights \\(pytorch_model.bin\\)") as err:
        find_weight_files(tmp_path)
    assert "allow_pickle=True" in err.value.hint and "weights_only=True" in err.value.hint
    assert find_weight_files(tmp_path, allow_pickle=True) == [tmp_path / "pytorch_model.bin"]


def test_pickle_index_allowed_on_request(tmp_path: Path):
    torch.save({"a": torch.ones(2)}, tmp_path / "pytorch_model-00001-of-00001.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"a": "pytorch_model-00001-of-00001.bin"}})
    )
    with pytest.raises(PickleRefusedError):
        find_weight_files(tmp_path)
    assert find_weight_files(tmp_path, allow_pickle=True) == [tmp_path / "pytorch_model-00001-of-00001.bin"]


# --- corrupt safetensors ------------------------------------------------------------------------
def rewrite_header(path: Path, edit) -> None:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + size :])


def _shape_lie(h):
    h["body.proj.weight"]["shape"] = [8, 9]


def _offset_lie(h):
    h["body.proj.weight"]["data_offsets"][1] += 4


def _dtype_lie(h):
    h["body.proj.weight"]["dtype"] = "F64"


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "file not fully covered"),
        (lambda p: p.write_bytes(p.read_bytes()[:5]), "header too small"),
        (lambda p: p.write_bytes(b""), "header too small"),
        (lambda p: p.write_bytes(struct.pack("<Q", 1 << 40) + p.read_bytes()[8:]), "header too large"),
        (lambda p: p.write_bytes(p.read_bytes()[:8] + b"\x00garbage" + p.read_bytes()[16:]), "invalid JSON"),
        (lambda p: rewrite_header(p, _shape_lie), "invalid shape, data type, or offset"),
        (lambda p: rewrite_header(p, _offset_lie), "invalid"),
        (lambda p: rewrite_header(p, _dtype_lie), "invalid"),
        (lambda p: p.write_bytes(p.read_bytes() + b"trailing"), "not fully covered"),
    ],
    ids=[
        "truncated",
        "tiny",
        "empty",
        "huge-header",
        "garbage-header",
        "shape-lie",
        "offset-lie",
        "dtype-lie",
        "trailing-bytes",
    ],
)
def test_corrupt_safetensors_names_the_file(ckpt: Path, corrupt, reason: str):
    corrupt(ckpt)
    with pytest.raises(CheckpointError, match=f"{ckpt}: not a valid safetensors file: .*{reason}") as err:
        load_weights(empty_model(TinyLM, TinyConfig()), [ckpt])
    assert err.value.file == str(ckpt)
    assert "truncated or corrupt" in err.value.hint


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(empty_model(TinyLM, TinyConfig()), [tmp_path / "model.safetensors"])


def test_no_files():
    with pytest.raises(CheckpointError, match="no weight files"):
        load_weights(empty_model(TinyLM, TinyConfig()), [])


def test_duplicate_tensor_across_shards(tmp_path: Path, source: TinyLM):
    state = state_of(source)
    a = write_checkpoint(tmp_path / "a", state)
    b = write_checkpoint(tmp_path / "b", {"body.norm.bias": state["body.norm.bias"]})
    with pytest.raises(CheckpointError, match="tensor body.norm.bias appears in both"):
        load_weights(empty_model(TinyLM, TinyConfig()), [a, b])


# --- pickle ----------------------------------------------------------------------------------
def test_pickle_file_refused_by_load_weights(tmp_path: Path, source: TinyLM):
    torch.save(state_of(source), tmp_path / "pytorch_model.bin")
    with pytest.raises(PickleRefusedError, match="pytorch_model.bin: pickle weights file refused by default"):
        load_weights(empty_model(TinyLM, TinyConfig()), [tmp_path / "pytorch_model.bin"])


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_pickle_opt_in_loads_with_weights_only(tmp_path: Path, source: TinyLM, zipfile_format: bool):
    path = tmp_path / "pytorch_model.bin"
    torch.save(state_of(source), path, _use_new_zipfile_serialization=zipfile_format)
    model = empty_model(TinyLM, TinyConfig())
    report = load_weights(model, [path], allow_pickle=True)
    assert_same_state(model, source)
    assert model.head.weight is model.body.embed.weight and report.tied == (("head.weight", "body.embed.weight"),)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_pickle_with_code_is_refused_even_when_allowed(tmp_path: Path):
    marker = tmp_path / "pwned"
    torch.save({"w": _Exploit(marker)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"could not be loaded with torch.load\(weights_only=True\)"):
        load_weights(empty_model(TinyLM, TinyConfig()), [tmp_path / "pytorch_model.bin"], allow_pickle=True)
    assert not marker.exists()


def test_pickle_that_is_not_a_state_dict(tmp_path: Path):
    torch.save([torch.ones(1)], tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="does not hold a flat state dict"):
        load_weights(empty_model(TinyLM, TinyConfig()), [tmp_path / "pytorch_model.bin"], allow_pickle=True)


# --- loading --------------------------------------------------------------------------------
def test_round_trip_bit_identical_and_tied(ckpt: Path, source: TinyLM):
    model = empty_model(TinyLM, TinyConfig())
    report = load_weights(model, [ckpt])
    assert_same_state(model, source)
    assert model.head.weight is model.body.embed.weight
    assert report.missing == report.unexpected == report.mismatched == ()
    assert report.tied == (("head.weight", "body.embed.weight"),)
    assert report.dtype == torch.float32 and report.device == torch.device("cpu")
    assert report.bytes == sum(t.numel() * t.element_size() for t in state_of(source).values())
    assert report.files == (ckpt,) and report.seconds >= 0 and "loaded" in str(report)
    assert not any(p.is_meta for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_sharded_load(tmp_path: Path, source: TinyLM):
    write_sharded(tmp_path / "s", state_of(source), n=3)
    model = empty_model(TinyLM, TinyConfig())
    load_weights(model, find_weight_files(tmp_path / "s"))
    assert_same_state(model, source)


def test_zero_copy_views_are_copy_on_write(ckpt: Path, source: TinyLM):
    before = ckpt.read_bytes()
    model = empty_model(TinyLM, TinyConfig())
    report = load_weights(model, [ckpt])
    assert report.zero_copy == len(state_of(source))
    storage = model.body.proj.weight.untyped_storage()
    assert storage.nbytes() == ckpt.stat().st_size  # a view of the mapped file, not a copy
    with torch.no_grad():
        model.body.proj.weight.add_(1)
    assert ckpt.read_bytes() == before  # private mapping: the file never changes
    assert torch.equal(model.body.proj.weight, source.body.proj.weight + 1)


def test_mmap_off_reads_copies(ckpt: Path, source: TinyLM):
    model = empty_model(TinyLM, TinyConfig())
    assert load_weights(model, [ckpt], mmap=False).zero_copy == 0
    assert_same_state(model, source)
    assert model.body.proj.weight.untyped_storage().nbytes() == 8 * 8 * 4


def test_dtype_cast_on_load(ckpt: Path, source: TinyLM):
    model = empty_model(TinyLM, TinyConfig(), dtype=torch.bfloat16)
    report = load_weights(model, [ckpt], dtype="bf16")
    assert report.dtype == torch.bfloat16 and report.zero_copy == 0
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.equal(model.body.proj.weight, source.body.proj.weight.to(torch.bfloat16))
    assert model.body.scale.dtype == torch.bfloat16  # persistent float buffer loaded and cast
    assert model.body.position_ids.dtype == torch.int64  # integers are never cast
    assert model.head.weight is model.body.embed.weight


def test_checkpoint_dtype_kept_without_dtype(tmp_path: Path, source: TinyLM):
    half = {k: v.half() if v.is_floating_point() else v for k, v in state_of(source).items()}
    path = write_checkpoint(tmp_path / "half", half)
    model = empty_model(TinyLM, TinyConfig())
    report = load_weights(model, [path])
    assert model.body.proj.weight.dtype == torch.float16 and report.dtype == torch.float16


def test_resolve_dtype():
    assert resolve_dtype("torch.float16") is torch.float16
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype(torch.float64) is torch.float64
    assert resolve_dtype(None) is None and resolve_dtype("auto") is None
    with pytest.raises(ConfigError, match="dtype 'int8' cannot be built in: not a floating-point dtype"):
        resolve_dtype("int8")


def test_bad_device(ckpt: Path):
    with pytest.raises(ConfigError, match="device 'gpu0' is not a torch device"):
        load_weights(empty_model(TinyLM, TinyConfig()), [ckpt], device="gpu0")


def test_model_constructed_normally_keeps_its_own_init(tmp_path: Path, source: TinyLM):
    state = state_of(source)
    del state["body.proj.weight"]
    model = TinyLM(TinyConfig())
    own = model.body.proj.weight
    with pytest.warns(WeightsMismatchWarning):
        load_weights(model, [write_checkpoint(tmp_path / "c", state)], strict=False)
    assert model.body.proj.weight is own
    assert torch.equal(model.body.proj.bias, source.body.proj.bias)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_and_dtype(ckpt: Path, source: TinyLM):
    model = empty_model(TinyLM, TinyConfig(), dtype=torch.float16)
    report = load_weights(model, [ckpt], dtype=torch.float16, device="cuda")
    assert report.device.type == "cuda" and report.zero_copy == 0
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"cuda"}
    assert torch.equal(model.body.proj.weight.cpu(), source.body.proj.weight.half())
    assert model.head.weight is model.body.embed.weight
    fresh = fresh_model(TinyLM, TinyConfig(), device="cuda")
    assert {t.device.type for t in [*fresh.parameters(), *fresh.buffers()]} == {"cuda"}


def test_explicit_cpu_device(ckpt: Path, source: TinyLM):
    model = empty_model(TinyLM, TinyConfig())
    assert load_weights(model, [ckpt], device="cpu").zero_copy > 0
    assert_same_state(model, source)


# --- mismatches -------------------------------------------------------------------------------
def test_strict_missing(tmp_path: Path, source: TinyLM):
    state = state_of(source)
    del state["body.proj.weight"]
    path = write_checkpoint(tmp_path / "c", state)
    with pytest.raises(WeightsMismatchError, match=r"1 missing, 0 unexpected, 0 with the wrong shape") as err:
        load_weights(empty_model(TinyLM, TinyConfig()), [path])
    assert "- body.proj.weight [8, 8]" in str(err.value)
    assert err.value.missing == ("body.proj.weight",)
    assert err.value.file == str(tmp_path / "c") and "strict=False" in err.value.hint


def test_strict_unexpected(tmp_path: Path, source: TinyLM):
    path = write_checkpoint(tmp_path / "c", {**state_of(source), "body.extra.bias": torch.ones(3)})
    with pytest.raises(WeightsMismatchError, match=r"0 missing, 1 unexpected") as err:
        load_weights(empty_model(TinyLM, TinyConfig()), [path])
    assert "- body.extra.bias [3] (model.safetensors)" in str(err.value)
    assert err.value.unexpected == ("body.extra.bias",)


def test_strict_wrong_shape(tmp_path: Path, source: TinyLM):
    path = write_checkpoint(tmp_path / "c", {**state_of(source), "body.proj.weight": torch.ones(8, 4)})
    with pytest.raises(WeightsMismatchError, match=r"1 with the wrong shape") as err:
        load_weights(empty_model(TinyLM, TinyConfig()), [path])
    assert "- body.proj.weight: checkpoint [8, 4] vs model [8, 8]" in str(err.value)
    assert err.value.mismatched == (("body.proj.weight", (8, 4), (8, 8)),)


def test_strict_lists_are_capped(tmp_path: Path, source: TinyLM):
    extra = {f"junk.{i}": torch.ones(1) for i in range(25)}
    path = write_checkpoint(tmp_path / "c", {**state_of(source), **extra})
    with pytest.raises(WeightsMismatchError, match=r"\.\.\. and 5 more"):
        load_weights(empty_model(TinyLM, TinyConfig()), [path])


def test_non_strict_warns_and_initialises(tmp_path: Path, source: TinyLM):
    state = state_of(source)
    del state["body.proj.weight"]
    state["body.norm.weight"] = torch.ones(3)  # wrong shape
    state["stray"] = torch.ones(2)
    path = write_checkpoint(tmp_path / "c", state)
    model = empty_model(TinyLM, TinyConfig())
    with pytest.warns(WeightsMismatchWarning, match=r"1 missing, 1 unexpected, 1 with the wrong shape"):
        report = load_weights(model, [path], strict=False)
    assert report.missing == ("body.proj.weight",) and report.unexpected == ("stray",)
    assert report.mismatched == (("body.norm.weight", (3,), (8,)),)
    assert not model.body.proj.weight.is_meta and model.body.proj.weight.abs().sum() > 0  # reset_parameters ran
    assert torch.equal(model.body.proj.bias, source.body.proj.bias)  # loaded neighbour kept
    assert torch.equal(model.body.norm.weight, torch.ones(8))  # LayerNorm init at the model's shape
    assert torch.equal(model.body.norm.bias, source.body.norm.bias)


class InitLM(TinyLM):
    def _init_weights(self, module: nn.Module) -> None:
        for param in module.parameters(recurse=False):
            param.data.fill_(0.5)


def test_non_strict_uses_model_init_weights(tmp_path: Path, source: TinyLM):
    state = state_of(source)
    del state["body.proj.weight"]
    model = empty_model(InitLM, TinyConfig())
    with pytest.warns(WeightsMismatchWarning):
        load_weights(model, [write_checkpoint(tmp_path / "c", state)], strict=False)
    assert torch.equal(model.body.proj.weight, torch.full((8, 8), 0.5))
    assert torch.equal(model.body.proj.bias, source.body.proj.bias)


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(4))


class ScaleModel(nn.Module):
    base_model_prefix = ""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.scale = Scale()
        self.lin = nn.Linear(4, 4)


def test_non_strict_without_any_init_gives_zeros(tmp_path: Path):
    path = write_checkpoint(tmp_path / "c", {"lin.weight": torch.ones(4, 4), "lin.bias": torch.ones(4)})
    model = empty_model(ScaleModel, TinyConfig())
    with pytest.warns(WeightsMismatchWarning):
        load_weights(model, [path], strict=False)
    assert torch.equal(model.scale.gain, torch.zeros(4))


# --- key mapping ---------------------------------------------------------------------------
def test_trunk_checkpoint_into_head_model(tmp_path: Path, source: TinyLM):
    trunk_state = {k.removeprefix("body."): v for k, v in state_of(source).items()}
    path = write_checkpoint(tmp_path / "trunk", trunk_state)
    model = empty_model(TinyLM, TinyConfig())
    report = load_weights(model, [path])
    assert_same_state(model, source)
    assert report.missing == () and model.head.weight is model.body.embed.weight


def test_head_checkpoint_into_trunk_discards_head(tmp_path: Path):
    untied = fresh_model(TinyLM, TinyConfig(tie_word_embeddings=False))
    path = write_checkpoint(tmp_path / "lm", state_of(untied))
    trunk = empty_model(TinyTrunk, TinyConfig())
    report = load_weights(trunk, [path])
    assert report.ignored == ("head.weight",) and report.unexpected == ()
    assert torch.equal(trunk.proj.weight, untied.body.proj.weight)


def test_non_persistent_buffer_in_checkpoint_is_ignored(tmp_path: Path, source: TinyLM):
    path = write_checkpoint(tmp_path / "c", {**state_of(source), "body.position_ids": torch.arange(9)})
    model = empty_model(TinyLM, TinyConfig())
    report = load_weights(model, [path])
    assert report.ignored == ("body.position_ids",)
    assert torch.equal(model.body.position_ids, torch.arange(5))


def test_legacy_layernorm_names(tmp_path: Path):
    class Legacy(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.LayerNorm = nn.LayerNorm(4)

    path = write_checkpoint(tmp_path / "c", {"LayerNorm.gamma": torch.full((4,), 3.0), "LayerNorm.beta": torch.ones(4)})
    model = empty_model(Legacy, TinyConfig())
    load_weights(model, [path])
    assert torch.equal(model.LayerNorm.weight, torch.full((4,), 3.0))


def test_legacy_weight_norm_names(tmp_path: Path):
    """torch's old ``weight_norm`` names (``weight_g``/``weight_v``) load into its parametrization's."""

    class Normed(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(2, 2, 3), dim=2)
            self.weight_gate = nn.Parameter(torch.zeros(2))  # not a weight-norm name: left as it is

    g, v = torch.full((1, 1, 3), 2.0), torch.randn(2, 2, 3)
    state = {"conv.weight_g": g, "conv.weight_v": v, "conv.bias": torch.ones(2), "weight_gate": torch.ones(2)}
    model = empty_model(Normed, TinyConfig())
    report = load_weights(model, [write_checkpoint(tmp_path / "c", state)])
    assert report.missing == report.unexpected == ()
    assert torch.equal(model.conv.parametrizations.weight.original0, g)
    assert torch.equal(model.conv.parametrizations.weight.original1, v)
    torch.testing.assert_close(model.conv.weight, torch._weight_norm(v, g, 2))
    assert torch.equal(model.weight_gate, torch.ones(2))


def test_checkpoint_conversion_mapping(tmp_path: Path):
    """A model's ``_checkpoint_conversion_mapping`` ({regex: replacement}, in order) renames old checkpoint keys,
    before the base-model prefix is added or stripped; keys the model has are never renamed."""

    class Body(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2)])
            self.output = nn.Linear(2, 2)

    class Renaming(nn.Module):
        base_model_prefix = "body"
        _checkpoint_conversion_mapping = {r"(^|\.)encoder\.layer\.": r"\1layers.", r"\.dense\.": "."}

        def __init__(self, config):
            super().__init__()
            self.body = Body(config)

    state = {
        "encoder.layer.0.dense.weight": torch.ones(2, 2),
        "encoder.layer.0.dense.bias": torch.zeros(2),
        "output.weight": torch.eye(2),
        "output.bias": torch.ones(2),
    }
    model = empty_model(Renaming, TinyConfig())
    report = load_weights(model, [write_checkpoint(tmp_path / "c", state)])
    assert report.missing == report.unexpected == ()
    assert torch.equal(model.body.layers[0].weight, torch.ones(2, 2))
    assert torch.equal(model.body.output.weight, torch.eye(2))


def test_keys_to_ignore_on_load(tmp_path: Path, source: TinyLM):
    class Ignoring(TinyLM):
        _keys_to_ignore_on_load_unexpected = [r"\.attn\.masked_bias$"]
        _keys_to_ignore_on_load_missing = [r"^body\.scale$"]

    state = {**state_of(source), "body.h.attn.masked_bias": torch.ones(1)}
    del state["body.scale"]
    model = empty_model(Ignoring, TinyConfig())
    report = load_weights(model, [write_checkpoint(tmp_path / "c", state)])
    assert report.ignored == ("body.h.attn.masked_bias",) and report.missing == ()


# --- ties ----------------------------------------------------------------------------------
def test_checkpoint_holding_only_the_tied_destination(tmp_path: Path, source: TinyLM):
    state = state_of(source)
    state["head.weight"] = state.pop("body.embed.weight")
    model = empty_model(TinyLM, TinyConfig())
    load_weights(model, [write_checkpoint(tmp_path / "c", state)])
    assert model.head.weight is model.body.embed.weight
    assert torch.equal(model.body.embed.weight, source.body.embed.weight)


def test_declared_tie_with_both_tensors_held(tmp_path: Path, source: TinyLM):
    """Both names in the checkpoint: equal values stay tied; different values load apart (as transformers 5)."""
    state = state_of(source)
    state["head.weight"] = state["body.embed.weight"].clone()
    model = empty_model(TinyLM, TinyConfig())
    report = load_weights(model, [write_checkpoint(tmp_path / "same", state)])
    assert model.head.weight is model.body.embed.weight and report.tied == (("head.weight", "body.embed.weight"),)
    assert report.zero_copy == len(state) - 1  # the comparison's views are not counted, the copy is not loaded

    state["head.weight"] = torch.randn_like(state["head.weight"])
    model = empty_model(TinyLM, TinyConfig())
    report = load_weights(model, [write_checkpoint(tmp_path / "different", state)])
    assert report.tied == () and model.head.weight is not model.body.embed.weight
    assert torch.equal(model.head.weight, state["head.weight"])
    assert torch.equal(model.body.embed.weight, state["body.embed.weight"])


def test_untied_model_loads_both(tmp_path: Path):
    untied = fresh_model(TinyLM, TinyConfig(tie_word_embeddings=False))
    model = empty_model(TinyLM, TinyConfig(tie_word_embeddings=False))
    report = load_weights(model, [write_checkpoint(tmp_path / "c", state_of(untied))])
    assert report.tied == () and model.head.weight is not model.body.embed.weight
    assert_same_state(model, untied)


class AliasLM(TinyLM):
    """Ties in __init__ by assignment, without declaring tied_weights."""

    tied_weights: dict[str, str] = {}

    def __init__(self, config):
        super().__init__(config)
        self.head.weight = self.body.embed.weight


def test_alias_made_at_construction_is_kept(tmp_path: Path, source: TinyLM):
    model = empty_model(AliasLM, TinyConfig())
    report = load_weights(model, [write_checkpoint(tmp_path / "c", state_of(source))])
    assert model.head.weight is model.body.embed.weight
    assert report.tied == (("head.weight", "body.embed.weight"),) and report.missing == ()


def test_bad_tied_weights_declaration(ckpt: Path):
    class Broken(TinyLM):
        tied_weights = {"head.weight": "body.nope.weight"}

    with pytest.raises(ModelContractError, match="tied_weights names 'body.nope.weight'"):
        load_weights(empty_model(Broken, TinyConfig()), [ckpt])


# --- construction ----------------------------------------------------------------------------
def test_empty_model_allocates_nothing_and_init_buffers_recreates_them(monkeypatch):
    real_inits, meta_inits = [], []
    original = nn.init.kaiming_uniform_

    def spy(tensor, *args, **kwargs):
        (meta_inits if tensor.is_meta else real_inits).append(tuple(tensor.shape))
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(nn.init, "kaiming_uniform_", spy)
    model = empty_model(TinyLM, TinyConfig(hidden_size=64, vocab_size=64))
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert real_inits == [] and meta_inits == []  # init functions are skipped during construction
    assert init_buffers(model, torch.device("cpu")) == ["body.position_ids", "body.scale"]
    assert torch.equal(model.body.position_ids, torch.arange(5))
    assert torch.equal(model.body.scale, torch.full((64,), 2.0))
    assert all(p.requires_grad for p in model.parameters())
    assert init_buffers(model, torch.device("meta")) == []
    # outside the context, modules are built (and initialised) normally
    assert not nn.Linear(2, 2).weight.is_meta
    assert real_inits == [(2, 2)]


class NoResetBuffers(TinyLM):
    """Computes a buffer in __init__ without declaring reset_buffers: a contract violation."""

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("mask", torch.ones(3, dtype=torch.bool), persistent=False)


def test_buffer_without_reset_buffers_is_a_contract_error(ckpt: Path):
    with pytest.raises(ModelContractError, match=r"buffers computed in __init__ have no value .*: mask") as err:
        load_weights(empty_model(NoResetBuffers, TinyConfig()), [ckpt])
    assert "reset_buffers()" in err.value.hint
    with pytest.raises(ModelContractError, match="mask"):
        fresh_model(NoResetBuffers, TinyConfig())


def test_meta_target_keeps_everything_on_meta():
    vocab, hidden = 1 << 24, 1 << 16  # 4 TiB of embedding, within the config limits
    model = fresh_model(TinyLM, TinyConfig(vocab_size=vocab, hidden_size=hidden), device="meta")
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert model.head.weight is model.body.embed.weight  # tied once: counted once
    assert model_bytes(model) == (vocab * hidden + hidden * hidden + 4 * hidden) * 4 + 5 * 8


def test_too_big_for_ram_is_refused_before_allocation():
    with pytest.raises(
        ModelTooLargeError, match=r"TinyLM \(.*\) needs 4.0 TiB, more than the .* of available RAM"
    ) as err:
        fresh_model(TinyLM, TinyConfig(vocab_size=1 << 24, hidden_size=1 << 16))
    assert "tp_size" in err.value.hint and "bfloat16" in err.value.hint and "device='meta'" in err.value.hint
    assert err.value.needed > err.value.available


def test_empty_model_dtype():
    model = empty_model(TinyLM, TinyConfig(), dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == torch.float32


def test_fresh_model_is_initialised_and_tied():
    model = fresh_model(TinyLM, TinyConfig(), dtype=torch.float64)
    assert not any(p.is_meta for p in model.parameters())
    assert model.head.weight is model.body.embed.weight
    assert model.body.embed.weight.dtype == torch.float64 and model.body.embed.weight.std() > 0.5
    assert torch.equal(model.body.norm.weight, torch.ones(8, dtype=torch.float64))


def test_loaded_model_runs_like_the_source(ckpt: Path, source: TinyLM):
    model = empty_model(TinyLM, TinyConfig())
    load_weights(model, [ckpt])
    x = torch.tensor([[1, 2, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model.head(model.body.norm(model.body.proj(model.body.embed(x))))
    ref = source.head(source.body.norm(source.body.proj(source.body.embed(x))))
    assert torch.equal(out, ref)


# --- dtypes: a tensor of the right name and shape but the wrong kind of dtype ------------------
@pytest.mark.parametrize(
    ("key", "dtype"),
    [
        ("body.embed.weight", torch.int64),
        ("body.proj.weight", torch.int8),
        ("body.proj.bias", torch.bool),
        ("body.norm.weight", torch.uint8),
        ("body.scale", torch.int32),  # a persistent float buffer
    ],
)
def test_an_integer_tensor_for_a_float_parameter_is_a_mismatch(tmp_path: Path, source: TinyLM, key, dtype):
    tensors = state_of(source)
    tensors[key] = torch.ones_like(tensors[key], dtype=dtype)
    path = write_checkpoint(tmp_path / "ckpt", tensors)
    with pytest.raises(WeightsMismatchError, match="1 of the wrong kind of dtype") as info:
        load_weights(empty_model(TinyLM, TinyConfig()), [path])
    assert info.value.file == str(path.parent)
    assert info.value.wrong_dtype == ((key, dtype, torch.float32),)
    assert f"{key}: checkpoint {str(dtype).removeprefix('torch.')}" in str(info.value) and "model.safetensors" in str(
        info.value
    )
    with pytest.warns(WeightsMismatchWarning, match="wrong dtype"):
        report = load_weights(model := empty_model(TinyLM, TinyConfig()), [path], strict=False)
    assert report.wrong_dtype == info.value.wrong_dtype
    assert model.state_dict()[key].dtype == torch.float32  # initialised, not cast from the integers


def test_float_dtypes_cast_within_their_kind(tmp_path: Path, source: TinyLM):
    tensors = {k: v.to(torch.float16) for k, v in state_of(source).items()}
    path = write_checkpoint(tmp_path / "ckpt", tensors)
    report = load_weights(empty_model(TinyLM, TinyConfig()), [path], dtype=torch.float32)
    assert report.wrong_dtype == () and report.mismatched == ()


@pytest.mark.parametrize("dtype", [torch.int8, torch.int64, torch.bool, torch.complex64, "float8_e4m3fn", "uint8"])
def test_build_dtypes_are_floating_point(dtype):
    with pytest.raises(ConfigError, match="cannot be built in"):
        resolve_dtype(dtype)
    with pytest.raises(ConfigError, match="cannot be built in"):
        load_weights(nn.Linear(1, 1), ["unused.safetensors"], dtype=dtype)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_weights_fifo_is_refused_without_blocking(tmp_path: Path, finishes):
    (tmp_path / "ckpt").mkdir()
    os.mkfifo(tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(CheckpointError, match="is a FIFO"):
        finishes(lambda: load_weights(empty_model(TinyLM, TinyConfig()), [tmp_path / "ckpt" / "model.safetensors"]))


# --- property: any header either loads or is a CheckpointError ---------------------------------

_HEADER_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**65), max_value=2**65) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)
_ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "X9", ""]),
        "shape": st.lists(st.integers(min_value=-2, max_value=6), max_size=3),
        "data_offsets": st.lists(st.integers(min_value=-4, max_value=200), min_size=0, max_size=3),
    }
)
_HEADERS = st.one_of(
    st.dictionaries(st.sampled_from(["a", "b", "__metadata__"]), _ENTRY | _HEADER_VALUES, max_size=3).map(
        lambda h: json.dumps(h).encode()
    ),
    st.binary(max_size=64),
)


@given(header=_HEADERS, body=st.binary(max_size=200), declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_any_safetensors_header_loads_or_is_a_checkpoint_error(tmp_path_factory, header, body, declared):
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    size = len(header) if declared is None else declared
    path.write_bytes(struct.pack("<Q", size) + header + body)
    started = time.monotonic()
    try:
        entries = _read_safetensors_header(path)
    except CheckpointError as err:
        assert err.file == str(path)
    else:
        for entry in entries.values():
            assert 0 <= entry.start <= entry.end <= path.stat().st_size
    assert time.monotonic() - started < 2
