"""Parity of factory's native DistilBERT with transformers, head by head."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from factory.errors import ConfigError
from factory.models import distilbert as native
from tests.models.encoder_suite import (
    EncoderSuite,
    Family,
    compare,
    make_inputs,
    save_reference,
    tokenizer_checkpoint,
    wordpiece_vocab,
)
from tests.models.parity import build_native

# 3 heads of 10: neither a power of two; transformers' key names (dim, n_heads, n_layers, hidden_dim)
TINY = dict(dim=30, n_layers=2, n_heads=3, hidden_dim=37, vocab_size=99, max_position_embeddings=64)

FAMILY = Family(
    "DistilBertConfig",
    TINY,
    {
        "model": ("DistilBertModel", native.DistilBertModel, {}),
        "masked-lm": ("DistilBertForMaskedLM", native.DistilBertForMaskedLM, {}),
        "pretraining": ("DistilBertForMaskedLM", native.DistilBertForMaskedLM, {}),
        "sequence-classification": (
            "DistilBertForSequenceClassification",
            native.DistilBertForSequenceClassification,
            {"num_labels": 3},
        ),
        "multiple-choice": ("DistilBertForMultipleChoice", native.DistilBertForMultipleChoice, {}),
        "token-classification": (
            "DistilBertForTokenClassification",
            native.DistilBertForTokenClassification,
            {"num_labels": 5},
        ),
        "question-answering": ("DistilBertForQuestionAnswering", native.DistilBertForQuestionAnswering, {}),
        "text-encoding": ("DistilBertModel", native.DistilBertModel, {}),
    },
    extra_defaults=("hidden_dim", "activation", "dropout", "qa_dropout", "seq_classif_dropout", "sinusoidal_pos_embds"),
)


class TestDistilBert(EncoderSuite):
    FAMILY = FAMILY

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_dir(cls, tmp_path_factory):
        vocab = wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        tokenizer = transformers.DistilBertTokenizer(vocab=vocab)
        return tokenizer_checkpoint(cls.FAMILY, tokenizer, tmp_path_factory.mktemp("distilbert-tokenizer"))


def test_config_reads_and_writes_transformers_key_names():
    config = native.DistilBertConfig(hidden_size=30, num_attention_heads=3, n_layers=2)
    assert (config.dim, config.n_heads, config.num_hidden_layers) == (30, 3, 2)
    written = config.to_dict()
    assert written["dim"] == 30 and written["n_heads"] == 3 and "hidden_size" not in written


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_sinusoidal_and_relu_checkpoints_match_transformers(tmp_path, activation):
    reference = save_reference(
        FAMILY, tmp_path, "DistilBertForMaskedLM", sinusoidal_pos_embds=True, activation=activation
    )
    model = build_native("masked-lm", tmp_path, native.DistilBertForMaskedLM)
    inputs = make_inputs(FAMILY)
    with torch.no_grad():
        compare(model(**inputs), reference(**inputs), f"sinusoidal, {activation}")


def test_fresh_sinusoidal_table_is_transformers():
    from transformers.models.distilbert.modeling_distilbert import create_sinusoidal_embeddings

    model = native.DistilBertForMaskedLM(native.DistilBertConfig(**TINY, sinusoidal_pos_embds=True))
    model.apply(model._init_weights)
    want = create_sinusoidal_embeddings(64, 30, torch.empty(64, 30))
    torch.testing.assert_close(model.distilbert.embeddings.position_embeddings.weight, want, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 31}, r"dim \(31\) is not a multiple of n_heads \(3\)"),
        ({"activation": "gelu_exotic"}, "activation 'gelu_exotic' is not supported"),
    ],
)
def test_unsupported_configs_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        native.DistilBertModel(native.DistilBertConfig(**{**TINY, **kwargs}))


def test_question_answering_needs_two_labels():
    with pytest.raises(ConfigError, match=r"needs num_labels == 2 .* found 3"):
        native.DistilBertForQuestionAnswering(native.DistilBertConfig(**TINY, num_labels=3))
