"""Parity of the native BART with transformers, head by head, plus generation, saving and the tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.errors import ConfigError, ModelInputError
from factory.models import bart as native
from tests.models.parity import (
    ATOL,
    assert_builds_without_transformers,
    assert_same_outputs,
    build_native,
    byte_level_vocab,
    randomize,
)

VOCAB, PAD, BOS, EOS = 99, 1, 0, 2
# Head sizes 10 (encoder) and 6 (decoder), odd feed-forward sizes, a vocabulary of 99.
TINY = dict(
    vocab_size=VOCAB,
    d_model=30,
    encoder_layers=2,
    decoder_layers=3,
    encoder_attention_heads=3,
    decoder_attention_heads=5,
    encoder_ffn_dim=17,
    decoder_ffn_dim=19,
    max_position_embeddings=40,
    pad_token_id=PAD,
    bos_token_id=BOS,
    eos_token_id=EOS,
    decoder_start_token_id=EOS,
    forced_eos_token_id=EOS,
)
VARIANTS = {
    "base": {},
    "scaled-untied-relu": dict(scale_embedding=True, tie_word_embeddings=False, activation_function="relu"),
}
TASKS = {
    "model": ("BartModel", "BartModel"),
    "seq2seq-lm": ("BartForConditionalGeneration", "BartForConditionalGeneration"),
    "sequence-classification": ("BartForSequenceClassification", "BartForSequenceClassification"),
    "question-answering": ("BartForQuestionAnswering", "BartForQuestionAnswering"),
    "causal-lm": ("BartForCausalLM", "BartForCausalLM"),
}
SEQ2SEQ_KEYS = ("encoder_last_hidden_state", "encoder_hidden_states", "decoder_hidden_states")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(variant, task) -> (transformers model, checkpoint dir), built lazily."""
    cache: dict = {}

    def get(variant: str, task: str):
        if (variant, task) not in cache:
            torch.manual_seed(0)
            # transformers' BartForCausalLM sizes its cache by encoder_layers: keep them equal there.
            layers = {"encoder_layers": 3} if task == "causal-lm" else {}
            config = transformers.BartConfig(**{**TINY, **layers}, **VARIANTS[variant], num_labels=3)
            model = getattr(transformers, TASKS[task][0])(config).eval()
            randomize(model)
            directory = tmp_path_factory.mktemp(f"bart-{variant}-{task}")
            model.save_pretrained(directory)
            cache[variant, task] = (model, directory)
        return cache[variant, task]

    return get


def _native(variant, task, checkpoints):
    hf, directory = checkpoints(variant, task)
    return hf, build_native(task, directory, getattr(native, TASKS[task][1]))


def _inputs(seq: int = 9):
    """Three rows ending in EOS: full, right-padded by 3, right-padded by 5."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, seq), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    mask[2, -5:] = 0
    ids = ids.masked_fill(mask == 0, PAD)
    ids[torch.arange(3), mask.sum(1) - 1] = EOS
    return ids, mask


def _decoder_inputs(seq: int = 6):
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(3, VOCAB, (3, seq), generator=gen)
    ids[:, 0] = EOS
    return ids


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_model_parity(variant, checkpoints):
    hf, model = _native(variant, "model", checkpoints)
    ids, mask = _inputs()
    dec = _decoder_inputs()
    dec_mask = torch.ones_like(dec)
    dec_mask[2, -2:] = 0
    with torch.no_grad():
        for kwargs in ({"decoder_input_ids": dec, "decoder_attention_mask": dec_mask}, {}):  # {}: input_ids shifted
            want = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kwargs)
            got = model(ids, attention_mask=mask, output_hidden_states=True, **kwargs)
            assert_same_outputs(got, want, ("last_hidden_state", *SEQ2SEQ_KEYS))
        assert got.past_key_values is None
        embeds = model(inputs_embeds=model.encoder.embed_tokens(ids), attention_mask=mask, decoder_input_ids=dec)
        torch.testing.assert_close(embeds.last_hidden_state, model(ids, attention_mask=mask, decoder_input_ids=dec)[0])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_conditional_generation_parity_and_loss(variant, checkpoints):
    hf, model = _native(variant, "seq2seq-lm", checkpoints)
    ids, mask = _inputs()
    labels = _decoder_inputs()
    labels[1, -2:] = -100
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        got = model(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    assert_same_outputs(got, want, ("logits", "loss", *SEQ2SEQ_KEYS))
    tied = variant == "base"
    assert (model.lm_head.weight is model.model.shared.weight) == tied
    assert (model.model.encoder.embed_tokens is model.model.shared) == tied
    assert model.get_output_embeddings() is model.lm_head and model.get_encoder() is model.model.encoder


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_sequence_classification_parity(variant, checkpoints):
    hf, model = _native(variant, "sequence-classification", checkpoints)
    ids, mask = _inputs()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = model(ids, attention_mask=mask, labels=labels)
    assert got.logits.shape == (3, 3)
    assert_same_outputs(got, want, ("logits", "loss", "encoder_last_hidden_state"))


def test_sequence_classification_needs_equal_eos_counts(checkpoints):
    _, model = _native("base", "sequence-classification", checkpoints)
    ids, mask = _inputs()
    ids[0, 2] = EOS
    with pytest.raises(ModelInputError, match=r"same number \(>= 1\) of EOS tokens \(2\); found \[2, 1, 1\]"):
        model(ids, attention_mask=mask)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_question_answering_parity(variant, checkpoints):
    hf, model = _native(variant, "question-answering", checkpoints)
    ids, mask = _inputs()
    start, end = torch.tensor([1, 3, 40]), torch.tensor([2, 5, 41])  # the last row is out of range: ignored
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
        got = model(ids, attention_mask=mask, start_positions=start, end_positions=end)
    assert_same_outputs(got, want, ("start_logits", "end_logits", "loss"))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_causal_lm_parity(variant, checkpoints):
    hf, model = _native(variant, "causal-lm", checkpoints)
    ids, mask = _inputs()
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        got = model(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        last = model(ids, attention_mask=mask, logits_to_keep=1).logits
    assert_same_outputs(got, want, ("logits", "loss", "hidden_states"))
    torch.testing.assert_close(last, want.logits[:, -1:], **ATOL)
    assert "model.decoder.embed_tokens.weight" in model.state_dict()


def test_causal_lm_greedy_generation_matches_transformers(checkpoints):
    hf, model = _native("base", "causal-lm", checkpoints)
    ids, mask = _inputs(seq=6)
    kwargs = dict(max_new_tokens=7, pad_token_id=PAD)
    want = hf.generate(ids[:1], attention_mask=mask[:1], do_sample=False, **kwargs)
    assert model.generate(ids[:1], attention_mask=mask[:1], **kwargs).tolist() == want.tolist()


def test_cached_decoding_equals_full_forward(checkpoints):
    hf, model = _native("base", "seq2seq-lm", checkpoints)
    ids, mask = _inputs()
    dec = _decoder_inputs(seq=7)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, decoder_input_ids=dec).logits
        first = model(ids, attention_mask=mask, decoder_input_ids=dec[:, :4], use_cache=True)
        assert len(first.past_key_values) == 3 and len(first.past_key_values[0]) == 4
        assert first.past_key_values[0][0].shape == (3, 5, 4, 6)  # self keys
        assert first.past_key_values[0][2].shape == (3, 5, 9, 6)  # cross keys: the encoder's length
        step = model(
            encoder_outputs=(first.encoder_last_hidden_state,),
            attention_mask=mask,
            decoder_input_ids=dec[:, 4:],
            past_key_values=first.past_key_values,
            use_cache=True,
        )
        want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    torch.testing.assert_close(step.logits, full[:, 4:], **ATOL)
    torch.testing.assert_close(full, want, **ATOL)
    assert step.past_key_values[0][0].shape[2] == 7


def _emitted(model, ids, mask, row, step):
    return int(model.generate(ids, attention_mask=mask, max_new_tokens=8)[row, 1 + step])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_greedy_generation_matches_transformers(variant, checkpoints):
    """Padded batch; forced EOS at the last step (BART's config); an EOS emitted mid-way stops that row."""
    hf, model = _native(variant, "seq2seq-lm", checkpoints)
    ids, mask = _inputs()
    for new in (1, 5, 12):
        want = hf.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False, num_beams=1)
        assert model.generate(ids, attention_mask=mask, max_new_tokens=new).tolist() == want.tolist()
        assert model.generate(ids, max_new_tokens=new).tolist() == want.tolist()  # padding inferred from PAD
    eos = _emitted(model, ids, mask, row=0, step=2)
    kwargs = dict(max_new_tokens=8, eos_token_id=eos, forced_bos_token_id=BOS)
    want = hf.generate(ids, attention_mask=mask, do_sample=False, num_beams=1, **kwargs)
    got = model.generate(ids, attention_mask=mask, **kwargs)
    assert got.tolist() == want.tolist()
    assert got[0, 1] == BOS  # forced BOS after the decoder start token
    generated = got[0, 1:].tolist()
    assert eos in generated and all(t == PAD for t in generated[generated.index(eos) + 1 :])


def test_generation_reads_generation_config(checkpoints, tmp_path):
    """generation_config.json overrides config.json, key by key (here: the decoder start token)."""
    hf, directory = checkpoints("base", "seq2seq-lm")
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((directory / name).read_bytes())
    generation = json.loads((directory / "generation_config.json").read_text())
    (tmp_path / "generation_config.json").write_text(json.dumps({**generation, "decoder_start_token_id": 5}))
    model = factory.build("seq2seq-lm", tmp_path)
    ids, mask = _inputs()
    got = model.generate(ids, attention_mask=mask, max_new_tokens=4)
    assert got[:, 0].tolist() == [5, 5, 5]
    want = hf.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, decoder_start_token_id=5)
    assert got.tolist() == want.tolist()


def test_save_reloads_in_transformers(checkpoints, tmp_path):
    _, model = _native("scaled-untied-relu", "seq2seq-lm", checkpoints)
    factory.save(model, tmp_path / "saved")
    reloaded = transformers.BartForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    ids, mask = _inputs()
    dec = _decoder_inputs()
    with torch.no_grad():
        want = reloaded(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        got = model(ids, attention_mask=mask, decoder_input_ids=dec).logits
    torch.testing.assert_close(got, want, **ATOL)


def test_builds_without_transformers(checkpoints):
    builds = [(task, checkpoints("base", task)[1], TASKS[task][1]) for task in TASKS]
    assert_builds_without_transformers(builds)


def test_masked_lm_and_pretraining_build_the_conditional_generation_class(checkpoints):
    _, directory = checkpoints("base", "seq2seq-lm")
    for task in ("masked-lm", "pretraining"):
        build_native(task, directory, native.BartForConditionalGeneration)


def test_config_defaults_match_transformers():
    ours, theirs = native.BartConfig(), transformers.BartConfig()
    for key in [k for k in type(theirs).__annotations__ if not k.startswith("_")]:
        if hasattr(theirs, key) and not callable(getattr(theirs, key)):
            assert getattr(ours, key) == getattr(theirs, key), key
    assert ours.num_labels == theirs.num_labels == 3 and ours.hidden_size == 1024


def test_bad_config_and_inputs():
    with pytest.raises(ConfigError, match="model dimension 30 is not a multiple of decoder_attention_heads=4"):
        native.BartModel(native.BartConfig(**{**TINY, "decoder_attention_heads": 4}))
    with pytest.raises(ConfigError, match="activation_function='mish' is not supported"):
        native.BartModel(native.BartConfig(**{**TINY, "activation_function": "mish"}))
    model = native.BartForConditionalGeneration(native.BartConfig(**TINY)).eval()
    with pytest.raises(ModelInputError, match="exceed max_position_embeddings"):
        model(torch.randint(3, VOCAB, (1, 41)))
    with pytest.raises(ModelInputError, match=r"attention_mask must have shape \(batch, seq\) = \(1, 5\)"):
        model(torch.randint(3, VOCAB, (1, 5)), attention_mask=torch.ones(1, 4))
    with pytest.raises(ModelInputError, match="exactly one of input_ids and inputs_embeds, got neither"):
        model.model.encoder()
    dec = torch.randint(3, VOCAB, (1, 3))
    past = model(torch.randint(3, VOCAB, (1, 5)), decoder_input_ids=dec, use_cache=True).past_key_values
    with pytest.raises(ModelInputError, match="past_key_values must hold 3 layers"):
        model(torch.randint(3, VOCAB, (1, 5)), decoder_input_ids=dec[:, :1], past_key_values=past[:1])


# --- tokenizer ---------------------------------------------------------------------------------------
def test_tokenizer_matches_transformers(tmp_path):
    vocab, merges = byte_level_vocab()
    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab = {**specials, **{k: v + len(specials) for k, v in vocab.items()}}
    vocab["<mask>"] = len(vocab)
    reference = transformers.BartTokenizer(vocab=vocab, merges=merges)
    reference.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart"}))
    tokenizer = factory.build("tokenizer", tmp_path)
    assert type(tokenizer).__name__ == "Tokenizer"
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = ["Hello world, the <mask> dog.", " leading space and 🙂", "PG&E stated it scheduled the blackouts."]
    want = reference(texts, padding=True)
    got = tokenizer(texts, padding=True)
    assert got["input_ids"] == want["input_ids"] and got["attention_mask"] == want["attention_mask"]
    for row, mask in zip(got["input_ids"], got["attention_mask"]):  # <s> ... </s>, then padding
        assert row[0] == 0 and row[sum(mask) - 1] == 2
    assert tokenizer.batch_decode(got["input_ids"], skip_special_tokens=True) == reference.batch_decode(
        want["input_ids"], skip_special_tokens=True
    )
