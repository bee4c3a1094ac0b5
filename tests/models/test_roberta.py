"""Parity of factory's native RoBERTa and XLM-RoBERTa with transformers, head by head, and RoBERTa's causal LM."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from factory.errors import ConfigError, ModelInputError
from factory.models import roberta as native
from tests.models.encoder_suite import (
    TINY_ENCODER,
    EncoderSuite,
    Family,
    byte_level_bpe,
    close,
    compare,
    make_inputs,
    save_reference,
    tokenizer_checkpoint,
    unigram,
)
from tests.models.parity import build_native

# 64 positions, 62 of them usable; two token types
TINY = dict(TINY_ENCODER, max_position_embeddings=64, type_vocab_size=2)
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0-4: bos, pad (1), eos, unk, mask


def _heads(prefix: str) -> dict:
    return {
        "model": (f"{prefix}Model", getattr(native, f"{prefix}Model"), {}),
        "masked-lm": (f"{prefix}ForMaskedLM", getattr(native, f"{prefix}ForMaskedLM"), {}),
        "pretraining": (f"{prefix}ForMaskedLM", getattr(native, f"{prefix}ForMaskedLM"), {}),
        "causal-lm": (f"{prefix}ForCausalLM", getattr(native, f"{prefix}ForCausalLM"), {"is_decoder": True}),
        "sequence-classification": (
            f"{prefix}ForSequenceClassification",
            getattr(native, f"{prefix}ForSequenceClassification"),
            {"num_labels": 3},
        ),
        "multiple-choice": (f"{prefix}ForMultipleChoice", getattr(native, f"{prefix}ForMultipleChoice"), {}),
        "token-classification": (
            f"{prefix}ForTokenClassification",
            getattr(native, f"{prefix}ForTokenClassification"),
            {"num_labels": 5},
        ),
        "question-answering": (f"{prefix}ForQuestionAnswering", getattr(native, f"{prefix}ForQuestionAnswering"), {}),
        "text-encoding": (f"{prefix}Model", getattr(native, f"{prefix}Model"), {}),
    }


_OPTIONS = dict(token_types=True, extra_defaults=("layer_norm_eps", "type_vocab_size"), trunk_source="multiple-choice")
ROBERTA = Family("RobertaConfig", TINY, _heads("Roberta"), **_OPTIONS)
XLM_ROBERTA = Family("XLMRobertaConfig", TINY, _heads("XLMRoberta"), **_OPTIONS)


class TestRoberta(EncoderSuite):
    FAMILY = ROBERTA

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_dir(cls, tmp_path_factory):
        vocab, merges = byte_level_bpe(SPECIALS)
        tokenizer = transformers.RobertaTokenizer(vocab=vocab, merges=merges)
        return tokenizer_checkpoint(cls.FAMILY, tokenizer, tmp_path_factory.mktemp("roberta-tokenizer"))


class TestXLMRoberta(EncoderSuite):
    FAMILY = XLM_ROBERTA

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_dir(cls, tmp_path_factory):
        tokenizer = transformers.XLMRobertaTokenizer(vocab=unigram(SPECIALS))
        return tokenizer_checkpoint(cls.FAMILY, tokenizer, tmp_path_factory.mktemp("xlmr-tokenizer"))


# --- RoBERTa's own: positions, the causal LM ------------------------------------------------------------
@pytest.fixture(scope="module")
def causal(tmp_path_factory):
    directory = tmp_path_factory.mktemp("roberta-causal")
    reference = save_reference(ROBERTA, directory, "RobertaForCausalLM", seed=7, is_decoder=True, eos_token_id=2)
    return build_native("causal-lm", directory, native.RobertaForCausalLM), reference


def test_position_ids_skip_padding_like_transformers():
    ids = torch.tensor([[0, 7, 8, 2, 1, 1], [1, 1, 0, 9, 9, 2]])
    want = transformers.models.roberta.modeling_roberta.RobertaEmbeddings.create_position_ids_from_input_ids(ids, 1)
    assert native.padded_position_ids(ids, 1).tolist() == want.tolist() == [[2, 3, 4, 5, 1, 1], [1, 1, 2, 3, 4, 5]]
    assert native.padded_position_ids(ids, 1, past_length=3).tolist() == [[5, 6, 7, 8, 1, 1], [1, 1, 5, 6, 7, 8]]


def test_usable_positions_are_the_table_less_padding_idx_plus_one(causal):
    model, reference = causal
    longest = torch.full((1, 62), 5)
    with torch.no_grad():
        close(model(longest).logits, reference(longest).logits, "62 tokens")
        with pytest.raises(ModelInputError, match=r"sequence length 63 exceeds max_position_embeddings \(64\)"):
            model(torch.full((1, 63), 5))


def test_kv_cache_matches_transformers_and_full_forward(causal):
    model, reference = causal
    inputs = make_inputs(ROBERTA, pad=False)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask, use_cache=True)
        got = model(ids, attention_mask=mask, use_cache=True)
        assert len(got.past_key_values) == TINY["num_hidden_layers"]
        for (key, value), layer in zip(got.past_key_values, want.past_key_values.layers):
            assert key.shape == (3, 3, 9, 10)
            close(key, layer.keys, "cached keys")
            close(value, layer.values, "cached values")
        prefix = model(ids[:, :6], attention_mask=mask[:, :6], use_cache=True)
        step = model(ids[:, 6:], attention_mask=mask, past_key_values=prefix.past_key_values)
        full = model(ids, attention_mask=mask)
    close(step.logits, full.logits[:, 6:], "prefix + cached continuation")


def test_greedy_generation_matches_transformers(causal):
    model, reference = causal
    inputs = make_inputs(ROBERTA, (3, 7))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    rows = [0, 2]  # a full row and a left-padded one
    kwargs = dict(max_new_tokens=8, eos_token_id=2, pad_token_id=1)
    with torch.no_grad():
        single = reference.generate(ids[:1], attention_mask=mask[:1], do_sample=False, **kwargs)
        batch = reference.generate(ids[rows], attention_mask=mask[rows], do_sample=False, **kwargs)
    assert model.generate(ids[:1], attention_mask=mask[:1], **kwargs).tolist() == single.tolist()
    assert model.generate(ids[rows], attention_mask=mask[rows], **kwargs).tolist() == batch.tolist()


def test_causal_lm_without_is_decoder_is_bidirectional_like_transformers(tmp_path):
    """transformers only warns; the model attends both ways, keeps no cache, and generate re-runs everything."""
    reference = save_reference(ROBERTA, tmp_path, "RobertaForCausalLM", seed=8)
    model = build_native("causal-lm", tmp_path, native.RobertaForCausalLM)
    inputs = make_inputs(ROBERTA)
    ids = inputs["input_ids"][:1, :5]
    with torch.no_grad():
        compare(model(**inputs), reference(**inputs), "is_decoder=False")
        assert model(ids, use_cache=True).past_key_values is None
        want = reference.generate(ids, max_new_tokens=6, do_sample=False)
    assert model.generate(ids, max_new_tokens=6).tolist() == want.tolist()
    with pytest.raises(ModelInputError, match="past_key_values need a decoder config"):
        model.roberta(ids, past_key_values=((torch.zeros(1, 3, 2, 10),) * 2,) * 2)


def test_cached_decoding_checks_the_mask(causal):
    model, _ = causal
    ids = make_inputs(ROBERTA, pad=False)["input_ids"]
    with torch.no_grad():
        prefix = model(ids[:, :6], use_cache=True)
        with pytest.raises(ModelInputError, match=r"plus 6 cached \(3, 9\)"):
            model(ids[:, 6:], attention_mask=torch.ones(3, 3), past_key_values=prefix.past_key_values)


def test_pad_token_is_required():
    with pytest.raises(ConfigError, match="pad_token_id must be an id below"):
        native.RobertaModel(native.RobertaConfig(**TINY, pad_token_id=None))


def test_question_answering_needs_two_labels():
    with pytest.raises(ConfigError, match=r"needs num_labels == 2 .* found 3"):
        native.RobertaForQuestionAnswering(native.RobertaConfig(**TINY, num_labels=3))
