"""factory.build on bad input: every case a FactoryError naming the file or key, fast, never a hang."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

import factory
from factory.errors import (
    CheckpointError,
    ConfigError,
    InvalidArgumentError,
    TokenizerFileError,
    UnknownCheckpointError,
    WeightsMismatchError,
)

TINY_GPT2 = {"n_embd": 16, "n_layer": 1, "n_head": 2, "vocab_size": 40, "n_positions": 16}
TINY_LLAMA = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 40,
}


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    """A tiny native GPT-2 checkpoint written by factory.save."""
    torch.manual_seed(0)
    model = factory.build("causal-lm", "gpt2", config_overrides=TINY_GPT2)
    return factory.save(model, tmp_path_factory.mktemp("gpt2") / "ckpt")


def checkpoint(tmp_path: Path, config: dict, weights_from: Path | None = None) -> Path:
    """A checkpoint directory with ``config`` as config.json (and, optionally, another checkpoint's weights)."""
    directory = tmp_path / "ckpt"
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    if weights_from is not None:
        os.link(weights_from / "model.safetensors", directory / "model.safetensors")
    return directory


# --- 1. config values ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"model_type": "gpt2", **TINY_GPT2, "n_embd": float("nan")}, "n_embd"),
        ({"model_type": "gpt2", **TINY_GPT2, "n_embd": -32}, "n_embd"),
        ({"model_type": "gpt2", **TINY_GPT2, "n_head": 0}, "n_head"),
        ({"model_type": "gpt2", **TINY_GPT2, "n_layer": 1_000_000}, "n_layer"),
        ({"model_type": "gpt2", **TINY_GPT2, "num_labels": 1e9}, "num_labels"),
        ({"model_type": "gpt2", **TINY_GPT2, "vocab_size": "40"}, "vocab_size"),
        ({"model_type": "llama", **TINY_LLAMA, "num_hidden_layers": 10**9}, "num_hidden_layers"),
        ({"model_type": "llama", **TINY_LLAMA, "rms_norm_eps": float("inf")}, "rms_norm_eps"),
        ({"model_type": "qwen2", **TINY_LLAMA, "num_hidden_layers": 10**9}, "num_hidden_layers"),
        ({"model_type": "bert", "hidden_size": 16, "num_attention_heads": 0}, "num_attention_heads"),
    ],
)
@pytest.mark.parametrize("weights", [True, False], ids=["load", "fresh"])
def test_bad_config_values_name_config_json_and_the_key(tmp_path: Path, gpt2_dir: Path, config, key, weights):
    directory = checkpoint(tmp_path, config, gpt2_dir)
    task = "model" if config["model_type"] == "bert" else "causal-lm"
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"{key} must be") as info:
        factory.build(task, directory, weights=weights)
    assert info.value.file == str(directory / "config.json") and info.value.key == key
    assert time.monotonic() - started < 5  # refused before anything is constructed


@pytest.mark.parametrize(
    ("overrides", "key"),
    [({"n_head": 0}, "n_head"), ({"n_layer": -1}, "n_layer"), ({"resid_pdrop": 3.0}, "resid_pdrop")],
)
def test_bad_config_overrides_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"{key} must be") as info:
        factory.build("causal-lm", "gpt2", config_overrides={**TINY_GPT2, **overrides})
    assert info.value.key == key and "config_overrides" in info.value.hint


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "llama", **TINY_LLAMA, "hidden_size": 2**17, "vocab_size": 2**24, "num_hidden_layers": 600},
        {"model_type": "gpt2", **TINY_GPT2, "n_embd": 2**17, "n_layer": 1024, "n_inner": 2**20},
    ],
)
def test_absurd_model_sizes_fail_fast(tmp_path: Path, config):
    directory = checkpoint(tmp_path, config)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="parameters, more than the budget") as info:
        factory.build("causal-lm", directory, weights=False)
    assert info.value.file == str(directory / "config.json")
    assert time.monotonic() - started < 5


# --- 2. config files that are not what they seem ----------------------------------------------
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.mkdir(), "is a directory, not a regular file"),
        (lambda p: os.mkfifo(p), r"is a FIFO \(named pipe\)"),
        (lambda p: p.symlink_to("/dev/zero"), "is a character device"),
        (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "nested more than 64 levels"),
        (lambda p: p.write_text('{"model_type": "gpt2", "x": ' + "[" * 200 + "]" * 200 + "}"), "nested more than"),
        (lambda p: open(p, "wb").truncate(17 << 20), "larger than the 16 MiB limit for config.json"),  # noqa: SIM115
        (lambda p: p.write_bytes(b'{"model_type": "gpt2", "n": ' + b"9" * 5000 + b"}"), "is not usable JSON"),
        (lambda p: p.write_text('{"model_type": "gpt2"'), "is not valid JSON"),
        (lambda p: p.write_text("[]"), "must hold a JSON object"),
    ],
    ids=["directory", "fifo", "device", "deep", "deep-inside", "huge", "long-int", "truncated", "list"],
)
def test_config_json_is_checked_before_it_is_parsed(tmp_path: Path, make, match, finishes):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    make(directory / "config.json")
    with pytest.raises(ConfigError, match=match) as info:
        finishes(lambda: factory.build("causal-lm", directory))
    assert info.value.file == str(directory / "config.json")


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        ("tokenizer_config.json", lambda p: os.mkfifo(p), "is a FIFO"),
        ("tokenizer_config.json", lambda p: p.write_text("{" * 1000), "nested more than"),
        ("tokenizer_config.json", lambda p: p.mkdir(), "is a directory"),
        ("special_tokens_map.json", lambda p: os.mkfifo(p), "is a FIFO"),
        ("tokenizer.json", lambda p: os.mkfifo(p), "is a FIFO"),
        ("vocab.txt", lambda p: p.symlink_to("/dev/zero"), "is a character device"),
        ("chat_template.jinja", lambda p: os.mkfifo(p), "is a FIFO"),
        ("chat_template.jinja", lambda p: open(p, "wb").truncate(2 << 20), "larger than the 1 MiB limit"),  # noqa: SIM115
    ],
)
def test_tokenizer_files_are_checked_before_they_are_read(tmp_path: Path, name, make, match, finishes):
    directory = checkpoint(tmp_path, {"model_type": "bert"})
    if name != "vocab.txt":
        (directory / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    make(directory / name)
    with pytest.raises(TokenizerFileError, match=match) as info:
        finishes(lambda: factory.build("tokenizer", directory))
    assert info.value.file == str(directory / name)


def test_index_and_weights_files_are_checked(tmp_path: Path, gpt2_dir: Path, finishes):
    directory = checkpoint(tmp_path, json.loads((gpt2_dir / "config.json").read_text()))
    (directory / "model.safetensors.index.json").write_text('{"weight_map": ' * 100 + "}" * 100)
    with pytest.raises(CheckpointError, match="nested more than") as info:
        finishes(lambda: factory.build("causal-lm", directory))
    assert info.value.file == str(directory / "model.safetensors.index.json")
    (directory / "model.safetensors.index.json").unlink()
    os.mkfifo(directory / "model.safetensors")
    with pytest.raises(CheckpointError, match="is a FIFO") as info:
        finishes(lambda: factory.build("causal-lm", directory))
    assert info.value.file == str(directory / "model.safetensors")


# --- 3. dtypes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["int8", "float8_e4m3fn", "bogus", "complex64", 5, ["float32"]])
@pytest.mark.parametrize("key", ["torch_dtype", "dtype"])
def test_a_bad_dtype_in_config_json_names_the_file_and_key(tmp_path: Path, gpt2_dir: Path, value, key):
    config = {**json.loads((gpt2_dir / "config.json").read_text()), "torch_dtype": None, "dtype": None, key: value}
    directory = checkpoint(tmp_path, config, gpt2_dir)
    with pytest.raises(ConfigError, match=f"config.json: {key} .* is not a dtype a model can be built in") as info:
        factory.build("causal-lm", directory)
    assert info.value.file == str(directory / "config.json") and info.value.key == key
    assert "pass dtype=" in info.value.hint  # the argument overrides it:
    assert factory.build("causal-lm", directory, dtype="float32").lm_head.weight.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.int8, torch.float8_e4m3fn, torch.float8_e5m2, torch.bool, "int32", "fp8"])
def test_a_dtype_argument_models_cannot_be_built_in_is_refused(gpt2_dir: Path, dtype):
    for name in (gpt2_dir, "gpt2"):
        with pytest.raises(ConfigError, match="dtype .* (cannot be built in|is not a floating-point torch dtype)"):
            factory.build("causal-lm", name, dtype=dtype, config_overrides=None if name == gpt2_dir else TINY_GPT2)


def test_integer_weights_under_strict_loading(tmp_path: Path, gpt2_dir: Path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(gpt2_dir / "model.safetensors"))
    key = next(k for k, v in tensors.items() if v.dtype.is_floating_point and k.endswith("weight"))
    tensors[key] = tensors[key].to(torch.int32)
    directory = checkpoint(tmp_path, json.loads((gpt2_dir / "config.json").read_text()))
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match="wrong dtype") as info:
        factory.build("causal-lm", directory)
    assert info.value.file == str(directory) and key in str(info.value)


# --- 4. names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_an_empty_name_is_not_the_current_directory(tmp_path: Path, monkeypatch, name):
    checkpoint(tmp_path, {"model_type": "gpt2", **TINY_GPT2})
    monkeypatch.chdir(tmp_path / "ckpt")  # a checkpoint right here, which "" must not pick up
    with pytest.raises(UnknownCheckpointError, match="the name to build is empty"):
        factory.build("causal-lm", name)
    assert factory.build("config", ".").hidden_size == 16  # "." still means it


@pytest.mark.parametrize(
    "name",
    ["x" * 300, "a/" * 3000, "y" * 5000, "org/" + "z" * 400, "a\0b", "/tmp/\0"],
    ids=["component-300", "path-6000", "name-5000", "hub-like", "nul", "nul-path"],
)
def test_unusable_names_are_unknown_checkpoints(name):
    started = time.monotonic()
    with pytest.raises(UnknownCheckpointError, match="cannot resolve") as info:
        factory.build("causal-lm", name)
    assert len(str(info.value)) < 2000  # the name is shortened in the message
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("name", [5, None, b"gpt2", ["gpt2"], {"name": "gpt2"}, 1.5])
def test_a_name_that_is_not_a_string_is_an_invalid_argument(name):
    with pytest.raises(InvalidArgumentError, match="the name to build must be a string or a path") as info:
        factory.build("causal-lm", name)
    assert isinstance(info.value, TypeError)  # what Python code expects of a wrong type
    with pytest.raises(InvalidArgumentError):
        factory.explain("causal-lm", name)


@pytest.mark.parametrize("task", [5, None, b"causal-lm", ["causal-lm"], ("model",)])
def test_a_task_that_is_not_a_string_is_an_invalid_argument(task):
    with pytest.raises(InvalidArgumentError, match="the task must be a string"):
        factory.build(task, "gpt2")


def test_device_meta_with_a_checkpoint_builds_a_meta_model(gpt2_dir: Path):
    """Not the "parameters left on the meta device" contract error: the names, shapes and dtypes are
    checked against the checkpoint, and nothing is read. (A fresh meta build is issue 11's: it initialises
    on the meta device, which imports torch._dynamo.)"""
    loaded = factory.build("causal-lm", gpt2_dir, device="meta")
    assert {p.device.type for p in loaded.parameters()} == {"meta"}
    report = loaded.factory_load_report
    assert report.missing == () and report.mismatched == () and report.device.type == "meta"
