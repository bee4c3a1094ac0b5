"""Parity of factory's native ModernBERT with transformers (eager/SDPA path), head by head."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from factory.errors import ConfigError
from factory.models import modernbert as native
from tests.models.encoder_suite import (
    EncoderSuite,
    Family,
    byte_level_bpe,
    compare,
    labels_for,
    make_inputs,
    save_reference,
    tokenizer_checkpoint,
)
from tests.models.parity import build_native

# 3 heads of 10: neither a power of two; four layers: global, local, local, global; the local window
# (local_attention // 2 = 2 positions each side) is shorter than the 9-token inputs; distinct rotary bases
TINY = dict(
    hidden_size=30,
    num_hidden_layers=4,
    num_attention_heads=3,
    intermediate_size=37,
    vocab_size=99,
    max_position_embeddings=64,
    local_attention=4,
    pad_token_id=3,
    bos_token_id=1,
    cls_token_id=1,
    eos_token_id=2,
    sep_token_id=2,
    attention_bias=True,
    mlp_bias=True,
    norm_bias=True,
    classifier_bias=True,
    rope_parameters={
        "full_attention": {"rope_type": "default", "rope_theta": 1000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 50.0},
    },
)

FAMILY = Family(
    "ModernBertConfig",
    TINY,
    {
        "model": ("ModernBertModel", native.ModernBertModel, {}),
        "masked-lm": ("ModernBertForMaskedLM", native.ModernBertForMaskedLM, {}),
        "sequence-classification": (
            "ModernBertForSequenceClassification",
            native.ModernBertForSequenceClassification,
            {"num_labels": 3},
        ),
        "multiple-choice": ("ModernBertForMultipleChoice", native.ModernBertForMultipleChoice, {}),
        "token-classification": (
            "ModernBertForTokenClassification",
            native.ModernBertForTokenClassification,
            {"num_labels": 5},
        ),
        "question-answering": ("ModernBertForQuestionAnswering", native.ModernBertForQuestionAnswering, {}),
    },
    no_labels=("model",),
    extra_defaults=(
        "intermediate_size",
        "hidden_activation",
        "norm_eps",
        "norm_bias",
        "local_attention",
        "sliding_window",
        "layer_types",
        "rope_parameters",
        "classifier_pooling",
        "classifier_dropout",
        "decoder_bias",
        "cls_token_id",
        "sep_token_id",
    ),
    length_limit=False,
)


class TestModernBert(EncoderSuite):
    FAMILY = FAMILY

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_dir(cls, tmp_path_factory):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

        specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
        vocab, merges = byte_level_bpe(specials)
        backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
        )
        tokenizer = transformers.PreTrainedTokenizerFast(
            tokenizer_object=backend,
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            mask_token="[MASK]",
            model_input_names=["input_ids", "attention_mask"],
        )
        return tokenizer_checkpoint(cls.FAMILY, tokenizer, tmp_path_factory.mktemp("modernbert-tokenizer"))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("task", ["sequence-classification", "multiple-choice"])
def test_pooling_matches_transformers(tmp_path, task, pooling):
    hf_class, native_class, extra = FAMILY.heads[task]
    reference = save_reference(FAMILY, tmp_path, hf_class, classifier_pooling=pooling, **extra)
    model = build_native(task, tmp_path, native_class)
    inputs = make_inputs(FAMILY, (2, 3, 9) if task == "multiple-choice" else (3, 9))
    inputs.update(labels_for(task, inputs, model.config.num_labels))
    with torch.no_grad():
        compare(model(**inputs), reference(**inputs), f"{task} {pooling}")


def test_sparse_prediction_matches_transformers(tmp_path):
    reference = save_reference(FAMILY, tmp_path, "ModernBertForMaskedLM", sparse_prediction=True)
    model = build_native("masked-lm", tmp_path, native.ModernBertForMaskedLM)
    inputs = make_inputs(FAMILY)
    labels = labels_for("masked-lm", inputs, 2)["labels"]
    with torch.no_grad():
        ours, theirs = model(**inputs, labels=labels), reference(**inputs, labels=labels)
        assert ours.logits.shape == ((labels != -100).sum().item(), TINY["vocab_size"])
        compare(ours, theirs, "sparse")
        compare(model(**inputs), reference(**inputs), "sparse without labels: every position")


def test_long_inputs_and_hub_style_config_match_transformers(tmp_path):
    """A config.json as on the Hub (global_attn_every_n_layers, global/local_rope_theta, no layer_types) and
    inputs past max_position_embeddings, which rotary allows."""
    config = {k: v for k, v in TINY.items() if k != "rope_parameters"}
    config.update(num_hidden_layers=5, global_attn_every_n_layers=2, global_rope_theta=2000.0, local_rope_theta=20.0)
    torch.manual_seed(0)
    reference = transformers.ModernBertModel(transformers.ModernBertConfig(**config)).eval()
    reference.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved.pop("layer_types"), saved.pop("rope_parameters")
    saved.update(global_attn_every_n_layers=2, global_rope_theta=2000.0, local_rope_theta=20.0)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    model = build_native("model", tmp_path, native.ModernBertModel)
    assert model.config.layer_types == reference.config.layer_types
    assert model.config.rope_parameters == reference.config.rope_parameters
    inputs = make_inputs(FAMILY, (2, 80))
    with torch.no_grad():
        compare(model(**inputs), reference(**inputs), "hub-style config, 80 tokens")


def test_sliding_window_mask_is_transformers_window():
    mask = native.sliding_window_mask(None, 7, 2, torch.device("cpu"))[0, 0]
    assert mask.sum(dim=1).tolist() == [3, 4, 5, 5, 5, 4, 3]
    assert native.sliding_window_mask(None, 3, 2, torch.device("cpu")) is None
    padded = native.sliding_window_mask(torch.tensor([[1, 1, 1, 0]]), 4, 2, torch.device("cpu"))
    assert padded.shape == (1, 1, 4, 4) and not padded[..., 3].any()


def test_fresh_model_init_follows_transformers_scales():
    config = native.ModernBertConfig(**{**TINY, "num_hidden_layers": 2, "hidden_size": 240, "intermediate_size": 300})
    model = native.ModernBertForSequenceClassification(config)
    model.apply(model._init_weights)
    layer = model.model.layers[1]
    out_std = 0.02 / (2.0 * 2) ** 0.5
    assert abs(layer.attn.Wqkv.weight.std().item() - 0.02 * 0.88) < 0.002  # truncated at 2 std
    assert abs(layer.attn.Wo.weight.std().item() - out_std * 0.88) < 0.002
    assert layer.attn.Wqkv.weight.abs().max().item() <= 2 * 0.02
    assert abs(model.classifier.weight.std().item() - 240**-0.5 * 0.88) < 0.01
    assert torch.all(layer.mlp_norm.weight == 1) and torch.all(layer.attn.Wqkv.bias == 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_size": 33}, r"must be num_attention_heads \(3\) times an even head size"),
        ({"classifier_pooling": "max"}, "classifier_pooling must be 'cls' or 'mean'"),
        ({"layer_types": ["full_attention"] * 3}, "layer_types must name 4 layers"),
        ({"hidden_activation": "gelu_exotic"}, "hidden_activation 'gelu_exotic' is not supported"),
        (
            {"rope_parameters": {"full_attention": {"rope_type": "linear"}}},
            r"rope_parameters\['full_attention'\].*missing \['factor'\]",
        ),
    ],
)
def test_unsupported_configs_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        native.ModernBertModel(native.ModernBertConfig(**{**TINY, **kwargs}))


def test_question_answering_needs_two_labels():
    with pytest.raises(ConfigError, match=r"needs num_labels == 2 .* found 3"):
        native.ModernBertForQuestionAnswering(native.ModernBertConfig(**TINY, num_labels=3))
