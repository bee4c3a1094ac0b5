"""Parity of Phi-3 (and Phi-4-mini's partial rotary) with transformers, head by head."""

from __future__ import annotations

import json

import pytest
import torch

import factory
from factory.errors import ConfigError
from factory.models import phi3 as native
from factory.models.llama import rope_frequencies
from tests.models.decoder_suite import BASE, DecoderSuite, Variant, make_inputs, randomize, transformers

SHAPE = dict(
    hidden_size=40, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)  # head_dim 10


def _longrope(half: int, **extra):
    return dict(
        rope_type="longrope",
        rope_theta=10000.0,
        short_factor=[1.0 + 0.1 * i for i in range(half)],
        long_factor=[2.0 + 0.3 * i for i in range(half)],
        **extra,
    )


class TestPhi3(DecoderSuite):
    VARIANTS = {
        "phi3-window": Variant("phi3", dict(SHAPE, sliding_window=5)),
        # long rope past original_max_position_embeddings=8: the inputs (12) and generation cross it
        "phi3-longrope": Variant(
            "phi3",
            dict(SHAPE, max_position_embeddings=64, original_max_position_embeddings=8, rope_parameters=_longrope(5)),
            cache_length=8,
        ),
        # Phi-4-mini: 3 of each head's 5 rotary pairs turn (partial_rotary_factor 0.6), long rope, tied embeddings
        "phi4-partial": Variant(
            "phi3",
            dict(
                SHAPE,
                max_position_embeddings=64,
                original_max_position_embeddings=8,
                partial_rotary_factor=0.6,
                rope_parameters=_longrope(3, partial_rotary_factor=0.6),
                tie_word_embeddings=True,
            ),
            cache_length=8,
        ),
    }
    CLASSES = {
        "phi3": {
            "model": ("AutoModel", native.Phi3Model),
            "causal-lm": ("AutoModelForCausalLM", native.Phi3ForCausalLM),
            "sequence-classification": ("AutoModelForSequenceClassification", native.Phi3ForSequenceClassification),
            "token-classification": ("AutoModelForTokenClassification", native.Phi3ForTokenClassification),
        }
    }


def test_longrope_switches_to_the_long_factors_beyond_the_original_length(tmp_path):
    config = native.Phi3Config(**BASE, **TestPhi3.VARIANTS["phi3-longrope"].config)
    rotary = native.Phi3Model(config).rotary_emb
    short, long = torch.arange(8)[None], torch.arange(9)[None]
    cos_short = rotary(short, torch.float32)[0]
    cos_long = rotary(long, torch.float32)[0]
    assert not torch.allclose(cos_short[0, 1], cos_long[0, 1])  # position 1, computed with the other factors
    assert rotary.attention_scaling == pytest.approx((1 + torch.log(torch.tensor(8.0)).item() / 2.0794415) ** 0.5)


@pytest.mark.parametrize("long", [False, True])
def test_longrope_frequencies_match_transformers(long):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    data = {**BASE, **TestPhi3.VARIANTS["phi4-partial"].config}
    ours = native.Phi3Config(**data)
    theirs = transformers.Phi3Config(**data)
    inv_freq, scale = rope_frequencies(ours, long=long)
    want, want_scale = ROPE_INIT_FUNCTIONS["longrope"](theirs, seq_len=9 if long else None)
    torch.testing.assert_close(inv_freq, want, atol=0, rtol=0)
    assert scale == pytest.approx(want_scale)
    assert ours._rotary_dim() == 6


def test_generation_rebuilds_the_cache_once_past_the_original_length():
    model = native.Phi3ForCausalLM(native.Phi3Config(**BASE, **TestPhi3.VARIANTS["phi3-longrope"].config))
    assert model.keeps_cache(7, 8) and not model.keeps_cache(8, 9) and model.keeps_cache(9, 10)


@pytest.mark.parametrize(
    "scaling",
    [
        {"type": "yarn", "short_factor": [1.0] * 5, "long_factor": [2.0] * 5},
        {"type": "longrope", "short_factor": [1.0] * 5, "long_factor": [2.0] * 5, "factor": 4.0},
    ],
)
def test_legacy_rope_scaling_reads_like_transformers(scaling):
    data = {**SHAPE, "rope_theta": 5000.0, "rope_scaling": scaling, "original_max_position_embeddings": 16}
    ours = native.Phi3Config.from_dict(data)
    theirs = transformers.Phi3Config.from_dict(json.loads(json.dumps(data)))
    assert ours.rope_parameters["rope_type"] == theirs.rope_parameters["rope_type"] == "longrope"
    for key in ("rope_theta", "short_factor", "long_factor", "partial_rotary_factor"):
        assert ours.rope_parameters[key] == theirs.rope_parameters[key], key
    assert ours.rope_parameters["original_max_position_embeddings"] == 16


def test_su_rope_is_read_as_longrope():
    """Early Phi-3 files say 'su' (transformers 5.23 maps it to longrope, then misses its original length)."""
    scaling = {"type": "su", "short_factor": [1.0] * 5, "long_factor": [2.0] * 5}
    ours = native.Phi3Config.from_dict({**SHAPE, "rope_scaling": scaling, "original_max_position_embeddings": 16})
    assert ours.rope_parameters["rope_type"] == "longrope"
    assert ours.rope_parameters["original_max_position_embeddings"] == 16


def test_fused_projections_keep_the_checkpoint_layout():
    model = native.Phi3Model(native.Phi3Config(**BASE, **SHAPE))
    keys = set(model.state_dict())
    assert "layers.0.self_attn.qkv_proj.weight" in keys and "layers.0.mlp.gate_up_proj.weight" in keys
    assert not any("q_proj" in k or k.rsplit(".", 2)[-2] == "up_proj.weight" for k in keys)
    assert model.layers[0].self_attn.qkv_proj.weight.shape == (40 + 2 * 20, 40)


def test_residual_dropout_is_used_in_training():
    config = native.Phi3Config(**BASE, **SHAPE, resid_pdrop=0.5)
    model = native.Phi3Model(config)
    randomize(model)
    ids, mask = make_inputs()
    model.train()
    a, b = model(ids).last_hidden_state, model(ids).last_hidden_state
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(ids).last_hidden_state, model(ids).last_hidden_state, atol=0, rtol=0)


def test_bad_longrope_factors_are_refused():
    data = {**BASE, **SHAPE, "rope_parameters": _longrope(4)}
    with pytest.raises(ConfigError, match="short_factor must be a list of rotary_dim / 2 = 5 numbers"):
        native.Phi3Model(native.Phi3Config(**data))
    data["rope_parameters"] = {**_longrope(5), "long_factor": ["x"] * 5}
    with pytest.raises(ConfigError, match="long_factor must be a list"):
        native.Phi3Model(native.Phi3Config(**data))


def test_odd_rotary_dimension_is_refused():
    config = native.Phi3Config(**BASE, **SHAPE, partial_rotary_factor=0.5)  # 10 * 0.5 = 5
    with pytest.raises(ConfigError, match=r"rotary dimension 5 \(head_dim=10\) must be even"):
        native.Phi3Model(config)


def test_llama_style_tokenizer_matches_transformers(tmp_path):
    """Phi-3 checkpoints carry a Llama-style (sentencepiece BPE) tokenizer.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    specials = ["<unk>", "<s>", "</s>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    corpus = ["The quick brown fox jumps over the lazy dog.", "Hello world, 123 456!"] * 3
    backend.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=specials, show_progress=False)
    )
    trained = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    theirs = transformers.LlamaTokenizer(vocab=trained["vocab"], merges=merges)
    theirs.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "phi3"}))
    ours = factory.build("tokenizer", tmp_path)
    assert type(ours).__module__ == "factory.components.tokenizer"
    reloaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    texts = ["The quick fox", "Hello  world 123", ""]
    assert ours(texts)["input_ids"] == reloaded(texts)["input_ids"]
    assert ours.decode(ours("The quick fox")["input_ids"]) == reloaded.decode(reloaded("The quick fox")["input_ids"])
