"""Parity of the Gemma family (gemma, gemma2, gemma3_text) with transformers, head by head."""

from __future__ import annotations

import json

import pytest
import torch

import factory
from factory.errors import ConfigError
from factory.models import gemma as native
from tests.models.decoder_suite import BASE, DecoderSuite, Variant, make_inputs, randomize, transformers

MQA = dict(hidden_size=36, intermediate_size=37, num_attention_heads=3, num_key_value_heads=1, head_dim=10)
GQA = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_key_value_heads=2, head_dim=6)
GEMMA3_ROPE = {
    "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0},
    "sliding_attention": {"rope_type": "default", "rope_theta": 50.0},
}


class TestGemma(DecoderSuite):
    GEMMA_NORMS = True
    VARIANTS = {
        # multi-query attention, head_dim 10, biased projections, tied embeddings (Gemma's default)
        "gemma-mqa": Variant("gemma", dict(MQA, num_hidden_layers=2, attention_bias=True)),
        # sliding (4 tokens) / global / sliding layers, soft-capped attention and logits, odd query scale
        "gemma2-window": Variant(
            "gemma2",
            dict(
                MQA,
                num_hidden_layers=3,
                sliding_window=4,
                query_pre_attn_scalar=7,
                attn_logit_softcapping=3.0,
                final_logit_softcapping=4.0,
                tie_word_embeddings=False,
            ),
        ),
        # q/k norm, a scaled global rope and a local base, pattern 2, a final cap
        "gemma3-scaled": Variant(
            "gemma3_text",
            dict(
                GQA,
                num_hidden_layers=3,
                sliding_window=5,
                sliding_window_pattern=2,
                query_pre_attn_scalar=12,
                rope_parameters=GEMMA3_ROPE,
                final_logit_softcapping=6.0,
            ),
        ),
        # EmbeddingGemma: bidirectional, sliding layers within sliding_window // 2 + 1
        "gemma3-bidirectional": Variant(
            "gemma3_text",
            dict(
                GQA,
                num_hidden_layers=3,
                sliding_window=6,
                sliding_window_pattern=2,
                use_bidirectional_attention=True,
            ),
            tasks=("model",),
        ),
    }
    CLASSES = {
        "gemma": {
            "model": ("AutoModel", native.GemmaModel),
            "causal-lm": ("AutoModelForCausalLM", native.GemmaForCausalLM),
            "sequence-classification": ("AutoModelForSequenceClassification", native.GemmaForSequenceClassification),
            "token-classification": ("AutoModelForTokenClassification", native.GemmaForTokenClassification),
        },
        "gemma2": {
            "model": ("AutoModel", native.Gemma2Model),
            "causal-lm": ("AutoModelForCausalLM", native.Gemma2ForCausalLM),
            "sequence-classification": ("AutoModelForSequenceClassification", native.Gemma2ForSequenceClassification),
            "token-classification": ("AutoModelForTokenClassification", native.Gemma2ForTokenClassification),
        },
        "gemma3_text": {
            "model": ("AutoModel", native.Gemma3TextModel),
            "causal-lm": ("AutoModelForCausalLM", native.Gemma3ForCausalLM),
            "sequence-classification": (
                "AutoModelForSequenceClassification",
                native.Gemma3TextForSequenceClassification,
            ),
        },
    }


def test_softcaps_are_active(tmp_path):
    """The caps bound what they cap (so the parity tests above exercise them)."""
    config = native.Gemma2Config(**{**BASE, **TestGemma.VARIANTS["gemma2-window"].config})
    model = native.Gemma2ForCausalLM(config).eval()
    randomize(model, gemma_norms=True)
    ids, mask = make_inputs()
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
    assert logits.abs().max() < 4.0 and logits.abs().max() > 3.0
    assert isinstance(model.final_logit_softcap, native.LogitSoftCap)
    small = dict(hidden_size=8, head_dim=4, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=1)
    uncapped = native.Gemma3ForCausalLM(native.Gemma3TextConfig(**BASE, **small, intermediate_size=8))
    assert isinstance(uncapped.final_logit_softcap, torch.nn.Identity)


def test_sliding_layers_follow_the_pattern():
    config = native.Gemma3TextConfig(num_hidden_layers=7, sliding_window=8)
    assert config._layer_windows() == [8, 8, 8, 8, 8, None, 8]
    assert native.Gemma2Config(num_hidden_layers=3, sliding_window=4)._layer_windows() == [4, None, 4]


@pytest.mark.parametrize(
    "data",
    [
        {"rope_theta": 1e6, "rope_local_base_freq": 1e4},
        {"rope_theta": 5e5, "rope_local_base_freq": 100.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0}},
        {"rope_scaling": {"type": "linear", "factor": 8.0}},  # 'type' does not override the default type there
        {},
        {"rope_parameters": GEMMA3_ROPE},
    ],
)
def test_gemma3_rope_config_shapes_read_like_transformers(data):
    ours = native.Gemma3TextConfig.from_dict(data)
    theirs = transformers.Gemma3TextConfig.from_dict(json.loads(json.dumps(data)))
    assert ours.rope_parameters == theirs.rope_parameters
    assert "rope_local_base_freq" not in ours.to_dict()
    assert transformers.Gemma3TextConfig.from_dict(ours.to_dict()).rope_parameters == theirs.rope_parameters


def test_gemma3_local_and_global_frequencies_match_transformers():
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RotaryEmbedding

    data = {**BASE, **TestGemma.VARIANTS["gemma3-scaled"].config}
    theirs = Gemma3RotaryEmbedding(transformers.Gemma3TextConfig(**data))
    ours = native.Gemma3TextModel(native.Gemma3TextConfig(**data)).rotary_emb
    for kind in ("full_attention", "sliding_attention"):
        torch.testing.assert_close(ours[kind].inv_freq, getattr(theirs, f"{kind}_inv_freq"), atol=0, rtol=0)


def test_legacy_gelu_means_tanh_gelu():
    config = native.GemmaConfig.from_dict({"hidden_act": "gelu"})
    assert config._activation() == "gelu_pytorch_tanh"
    assert transformers.GemmaConfig(hidden_act="gelu").hidden_act == "gelu_pytorch_tanh"


def test_embedding_scale_is_rounded_to_the_weight_dtype():
    """sqrt(3072) = 55.4256 becomes 55.5 in bfloat16, as in transformers (the inputs_embeds are not scaled)."""
    embedding = native.ScaledEmbedding(4, 3072).to(torch.bfloat16)
    with torch.no_grad():
        embedding.weight.fill_(1.0)
    assert embedding(torch.tensor([0])).unique().item() == 55.5


def test_norm_weights_start_at_zero():
    model = native.Gemma3TextModel(native.Gemma3TextConfig(**{**BASE, **TestGemma.VARIANTS["gemma3-scaled"].config}))
    assert torch.equal(model.norm.weight, torch.zeros(32))
    assert torch.equal(model.layers[0].self_attn.q_norm.weight, torch.zeros(6))


# --- errors ---------------------------------------------------------------------
def test_bidirectional_gemma2_is_refused():
    config = native.Gemma2Config.from_dict({**BASE, "use_bidirectional_attention": True})
    with pytest.raises(ConfigError, match="use_bidirectional_attention is only supported for gemma3_text"):
        native.Gemma2Model(config)


def test_bad_gemma3_rope_parameters_are_refused():
    with pytest.raises(ConfigError, match="rope_parameters must map") as err:
        native.Gemma3TextConfig.from_dict({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4}})
    assert "hint" in str(err.value)
    config = native.Gemma3TextConfig.from_dict(
        {
            **BASE,
            "layer_types": ["full_attention"],
            "num_hidden_layers": 1,
            "rope_parameters": {"full_attention": {"rope_type": "linear"}},
        }
    )
    with pytest.raises(
        ConfigError, match=r"needs rope_parameters \['factor'\].*\(rope_parameters\['full_attention'\]\)"
    ):
        native.Gemma3TextModel(config)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"layer_types": ["sliding_attention"]}, "1 layer_types for num_hidden_layers=2"),
        ({"layer_types": ["local", "global"]}, "layer_types ['global', 'local']"),
        ({"sliding_window": -3}, "sliding_window must be an integer from 0 to"),
        ({"hidden_activation": "swiglu"}, "hidden_activation='swiglu' is not supported"),
    ],
)
def test_bad_gemma2_configs_are_refused(overrides, message):
    with pytest.raises(ConfigError) as err:  # from the config's value checks or from the model's
        config = native.Gemma2Config.from_dict(
            {**BASE, "num_hidden_layers": 2, "hidden_size": 8, "head_dim": 4, **overrides}
        )
        native.Gemma2ForCausalLM(config)
    assert message in str(err.value)


# --- tokenizer ---------------------------------------------------------------------
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Héllo wörld, naïve café.",
    "Tokenizers split text into pieces; 123 456 789.",
]
TEXTS = ["Hello, the quick brown fox!", "a b  c", "naïve 日本", ""]


@pytest.fixture(scope="module")
def gemma_tokenizer_dir(tmp_path_factory):
    """A Gemma tokenizer (BPE on '▁'-joined text, byte fallback) trained here, saved by transformers."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    backend.train_from_iterator(
        CORPUS * 3, trainers.BpeTrainer(vocab_size=400, special_tokens=specials + byte_tokens, show_progress=False)
    )
    trained = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tokenizer = transformers.GemmaTokenizer(vocab=trained["vocab"], merges=merges, add_bos_token=True)
    directory = tmp_path_factory.mktemp("gemma-tokenizer")
    tokenizer.save_pretrained(directory)
    (directory / "config.json").write_text(json.dumps({"model_type": "gemma"}))
    return directory


def test_gemma_tokenizer_matches_transformers(gemma_tokenizer_dir):
    ours = factory.build("tokenizer", gemma_tokenizer_dir)
    assert type(ours).__module__ == "factory.components.tokenizer"
    theirs = transformers.AutoTokenizer.from_pretrained(str(gemma_tokenizer_dir))
    assert type(theirs).__name__ == "GemmaTokenizer"
    for kwargs in ({}, {"padding": True}, {"padding": True, "return_tensors": "pt"}):
        a, b = ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs)
        for key in ("input_ids", "attention_mask"):
            got, want = a[key], b[key]
            assert (got.tolist() if hasattr(got, "tolist") else got) == (
                want.tolist() if hasattr(want, "tolist") else want
            )
    ids = theirs(TEXTS[2])["input_ids"]
    assert ids[0] == theirs.bos_token_id
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


def test_gemma3_bidirectional_attends_forward():
    """EmbeddingGemma's trunk: a later token changes an earlier one's state (it would not, causally)."""
    config = native.Gemma3TextConfig(**{**BASE, **TestGemma.VARIANTS["gemma3-bidirectional"].config})
    model = native.Gemma3TextModel(config).eval()
    randomize(model, gemma_norms=True)
    ids, _ = make_inputs()
    changed = ids.clone()
    changed[:, -1] = 5
    with torch.no_grad():
        a, b = model(ids).last_hidden_state, model(changed).last_hidden_state
    assert not torch.allclose(a[:, 0], b[:, 0])
