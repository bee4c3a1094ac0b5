"""True meta construction: nothing allocated whatever the size, buffers recreated through
``reset_buffers``, and a clear error before allocating a model that cannot fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import factory
from factory.build.meta import empty_model, init_buffers, model_bytes
from factory.errors import ModelTooLargeError
from factory.models.llama import LlamaConfig, LlamaForCausalLM, rope_frequencies

#: Llama-3.1-405B's shape (config.json of meta-llama/Llama-3.1-405B).
LLAMA_405B = {
    "vocab_size": 128256,
    "hidden_size": 16384,
    "intermediate_size": 53248,
    "num_hidden_layers": 126,
    "num_attention_heads": 128,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "torch_dtype": "bfloat16",
}


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("vocab_size", [LLAMA_405B["vocab_size"], 1 << 24], ids=["405B", "embedding-512GiB"])
def test_405b_shaped_meta_build_allocates_nothing(vocab_size: int):
    before = rss()
    model = factory.build(
        "causal-lm", "llama", weights=False, device="meta", config_overrides={**LLAMA_405B, "vocab_size": vocab_size}
    )
    grown = rss() - before
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    params = sum(p.numel() for p in model.parameters())
    assert params == 405_853_388_800 + (vocab_size - 128256) * 16384 * 2
    assert model_bytes(model) == params * 2 + 64 * 4  # bfloat16 from the config; float32 inv_freq
    assert grown < 64 * 2**20, f"meta construction grew RSS by {grown / 2**20:.0f} MiB"


def test_meta_construction_then_reset_buffers_equals_eager_construction():
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
    )
    model = empty_model(LlamaForCausalLM, config)
    rotary = model.model.rotary_emb
    assert rotary.inv_freq.is_meta
    assert init_buffers(model, torch.device("cpu")) == ["model.rotary_emb.inv_freq"]
    inv_freq, scaling = rope_frequencies(config)
    assert torch.equal(rotary.inv_freq, inv_freq) and rotary.attention_scaling == scaling != 1.0
    eager = LlamaForCausalLM(config).model.rotary_emb  # built outside factory: computed in __init__
    assert torch.equal(eager.inv_freq, inv_freq) and eager.attention_scaling == scaling


def test_too_big_to_fit_is_refused_before_anything_is_allocated():
    before = rss()
    with pytest.raises(
        ModelTooLargeError,
        match=r"LlamaForCausalLM \(405.9B parameters\) needs 756.0 GiB, more "
        r"than the .* of available RAM; nothing was allocated",
    ) as err:
        factory.build("causal-lm", "llama", weights=False, config_overrides=LLAMA_405B)
    assert rss() - before < 64 * 2**20
    hint = err.value.hint
    assert "tp_size=N" in hint and "dtype='bfloat16'" in hint and "device='meta'" in hint


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A tiny Llama saved by factory itself."""
    small = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
    }
    factory.save(factory.build("causal-lm", "llama", weights=False, config_overrides=small), tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_checkpoint_too_big_for_ram_is_refused_before_reading(ckpt: Path, monkeypatch):
    from factory.build import meta, weights

    monkeypatch.setattr(meta, "available_memory", lambda device: 1000)
    monkeypatch.setattr(weights, "load_weights", lambda *a, **k: pytest.fail("read before the size check"))
    with pytest.raises(
        ModelTooLargeError,
        match=r"LlamaForCausalLM from .*ckpt in float32 needs .* more than the "
        r"1000 B of available RAM",
    ):
        factory.build("causal-lm", ckpt)


def test_checkpoint_onto_meta_reads_no_tensor(ckpt: Path, monkeypatch):
    from factory.build.weights import _Reader

    monkeypatch.setattr(_Reader, "_read", lambda self, entry: pytest.fail(f"read {entry.key}"))
    monkeypatch.setattr(_Reader, "_map", lambda self, path: pytest.fail(f"mapped {path}"))
    built = factory.build("causal-lm", ckpt, device="meta")
    assert all(t.is_meta for t in [*built.parameters(), *built.buffers()])
    assert built.factory_load_report.missing == () and built.factory_load_report.unexpected == ()
