"""Parity of factory's native MPNet with transformers, head by head, and its relative-position bias."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from factory.errors import ConfigError
from factory.models import mpnet as native
from factory.models.relative_position import relative_position_bucket
from tests.models.encoder_suite import (
    TINY_ENCODER,
    EncoderSuite,
    Family,
    close,
    compare,
    make_inputs,
    save_reference,
    tokenizer_checkpoint,
    wordpiece_vocab,
)
from tests.models.parity import build_native

# 200 positions so that distances reach the logarithmic buckets and the last one (past 128)
TINY = dict(TINY_ENCODER, max_position_embeddings=200)

FAMILY = Family(
    "MPNetConfig",
    TINY,
    {
        "model": ("MPNetModel", native.MPNetModel, {}),
        "masked-lm": ("MPNetForMaskedLM", native.MPNetForMaskedLM, {}),
        "pretraining": ("MPNetForMaskedLM", native.MPNetForMaskedLM, {}),
        "sequence-classification": (
            "MPNetForSequenceClassification",
            native.MPNetForSequenceClassification,
            {"num_labels": 3},
        ),
        "multiple-choice": ("MPNetForMultipleChoice", native.MPNetForMultipleChoice, {}),
        "token-classification": ("MPNetForTokenClassification", native.MPNetForTokenClassification, {"num_labels": 5}),
        "question-answering": ("MPNetForQuestionAnswering", native.MPNetForQuestionAnswering, {}),
    },
    no_labels=("model",),
    extra_defaults=("relative_attention_num_buckets", "intermediate_size", "hidden_act", "layer_norm_eps"),
    trunk_source="multiple-choice",
)


class TestMPNet(EncoderSuite):
    FAMILY = FAMILY

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_dir(cls, tmp_path_factory):
        tokenizer = transformers.MPNetTokenizer(vocab=wordpiece_vocab(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]))
        return tokenizer_checkpoint(cls.FAMILY, tokenizer, tmp_path_factory.mktemp("mpnet-tokenizer"))


def test_position_bias_matches_transformers_compute_position_bias(tmp_path):
    reference = save_reference(FAMILY, tmp_path, "MPNetModel")
    model = build_native("model", tmp_path, native.MPNetModel)
    hidden = torch.zeros(2, 150, 30)
    want = reference.encoder.compute_position_bias(hidden)
    close(model.encoder.position_bias(150, hidden.device).expand_as(want), want, "position bias")


def test_bucket_is_transformers_bucket():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    distances = torch.arange(-400, 400)[None, :] - torch.arange(0, 3)[:, None]
    assert torch.equal(relative_position_bucket(distances), MPNetEncoder.relative_position_bucket(distances))


def test_long_padded_batch_matches_transformers(tmp_path):
    """Distances past 128 (the last bucket), padding at both ends."""
    reference = save_reference(FAMILY, tmp_path, "MPNetModel")
    model = build_native("model", tmp_path, native.MPNetModel)
    inputs = make_inputs(FAMILY, (3, 150))
    with torch.no_grad():
        compare(model(**inputs), reference(**inputs), "150 tokens")


def test_too_few_buckets_are_refused():
    with pytest.raises(ConfigError, match="relative_attention_num_buckets must be at least 32"):
        native.MPNetModel(native.MPNetConfig(**TINY, relative_attention_num_buckets=16))
