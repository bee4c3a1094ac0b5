"""Parity of the native T5 family (t5, mt5, umt5) with transformers, head by head, plus generation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

transformers = pytest.importorskip("transformers")

import factory
from factory.build.weights import WeightsMismatchWarning
from factory.errors import ConfigError, ModelInputError
from factory.models import t5 as native
from tests.models.parity import (
    ATOL,
    assert_builds_without_transformers,
    assert_same_outputs,
    build_native,
    randomize,
)

VOCAB, PAD, EOS = 99, 0, 1
# 3 heads of 7 (inner size 21, not d_model), 2 encoder and 3 decoder layers, 8 buckets up to distance 12.
TINY = dict(
    vocab_size=VOCAB,
    d_model=30,
    d_kv=7,
    d_ff=37,
    num_layers=2,
    num_decoder_layers=3,
    num_heads=3,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=12,
    pad_token_id=PAD,
    eos_token_id=EOS,
    decoder_start_token_id=PAD,
    num_labels=3,
)
# name -> (model_type, overrides)
VARIANTS = {
    "t5-relu": ("t5", {}),
    "t5-gated-untied": ("t5", dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    "mt5": ("mt5", {}),
    "umt5": ("umt5", dict(feed_forward_proj="gated-silu")),
}
PREFIX = {"t5": "T5", "mt5": "MT5", "umt5": "UMT5"}
TASKS = {
    "model": "{}Model",
    "seq2seq-lm": "{}ForConditionalGeneration",
    "text-encoding": "{}EncoderModel",
    "sequence-classification": "{}ForSequenceClassification",
    "token-classification": "{}ForTokenClassification",
    "question-answering": "{}ForQuestionAnswering",
}
FAMILIES = ["t5-relu", "mt5", "umt5"]
SEQ2SEQ_KEYS = ("encoder_last_hidden_state", "encoder_hidden_states", "decoder_hidden_states")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(variant, task) -> (transformers model, checkpoint dir), built lazily."""
    cache: dict = {}

    def get(variant: str, task: str):
        if (variant, task) not in cache:
            model_type, overrides = VARIANTS[variant]
            torch.manual_seed(0)
            extra = {"num_labels": 2} if task == "question-answering" else {}  # start and end
            if task == "seq2seq-lm":  # transformers' generate sizes its cache by num_layers: keep them equal there
                extra["num_decoder_layers"] = TINY["num_layers"]
            config = transformers.AutoConfig.for_model(model_type, **{**TINY, **extra}, **overrides)
            name = TASKS[task].format(PREFIX[model_type])
            model = getattr(transformers, name)(config).eval()
            randomize(model)
            directory = tmp_path_factory.mktemp(f"{variant}-{task}")
            model.save_pretrained(directory)
            cache[variant, task] = (model, directory)
        return cache[variant, task]

    return get


def _native(variant, task, checkpoints):
    hf, directory = checkpoints(variant, task)
    name = TASKS[task].format(PREFIX[VARIANTS[variant][0]])
    return hf, build_native(task, directory, getattr(native, name))


def _inputs(seq: int = 14):
    """Three rows ending in EOS, padded right by 0, 3 and 6 (longer than the bucket distance 12)."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(2, VOCAB, (3, seq), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    mask[2, -6:] = 0
    ids = ids.masked_fill(mask == 0, PAD)
    ids[torch.arange(3), mask.sum(1) - 1] = EOS
    return ids, mask


def _decoder_inputs(seq: int = 13):
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(2, VOCAB, (3, seq), generator=gen)
    ids[:, 0] = PAD
    return ids


@pytest.mark.parametrize("variant", FAMILIES)
def test_model_parity(variant, checkpoints):
    hf, model = _native(variant, "model", checkpoints)
    ids, mask = _inputs()
    dec = _decoder_inputs()
    dec_mask = torch.ones_like(dec)
    dec_mask[2, -4:] = 0
    with torch.no_grad():
        want = hf(
            input_ids=ids,
            attention_mask=mask,
            decoder_input_ids=dec,
            decoder_attention_mask=dec_mask,
            output_hidden_states=True,
        )
        got = model(
            ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask, output_hidden_states=True
        )
    assert_same_outputs(got, want, ("last_hidden_state", *SEQ2SEQ_KEYS))
    assert model.encoder.embed_tokens is model.shared is model.decoder.embed_tokens
    assert "decoder.block.2.layer.1.EncDecAttention.o.weight" in model.state_dict()
    with pytest.raises(ModelInputError, match="exactly one of input_ids and inputs_embeds, got neither"):
        model(ids, attention_mask=mask)  # T5's trunk does not derive decoder inputs


@pytest.mark.parametrize("variant", [*FAMILIES, "t5-gated-untied"])
def test_conditional_generation_parity_and_loss(variant, checkpoints):
    hf, model = _native(variant, "seq2seq-lm", checkpoints)
    ids, mask = _inputs()
    labels = _decoder_inputs()
    labels[1, -3:] = -100
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        got = model(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    assert_same_outputs(got, want, ("logits", "loss", *SEQ2SEQ_KEYS))
    assert model.lm_head.weight is model.shared.weight  # transformers 5 ties the T5 family always
    scaled = {"t5-relu": True, "t5-gated-untied": False, "mt5": False, "umt5": True}[variant]
    assert model.config._scales_lm_input() is scaled
    assert set(model.state_dict()) >= {"shared.weight", "lm_head.weight", "encoder.final_layer_norm.weight"}


def test_hub_style_checkpoint_with_its_own_lm_head(checkpoints, tmp_path):
    """A Flan-T5 on the Hub: tie_word_embeddings false in config.json and a separate lm_head.weight."""
    _, directory = checkpoints("t5-gated-untied", "seq2seq-lm")
    state = load_file(directory / "model.safetensors")
    state["lm_head.weight"] = 0.2 * torch.randn(VOCAB, TINY["d_model"])
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((directory / "config.json").read_text())
    config.pop("scale_decoder_outputs")
    (tmp_path / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    model = build_native("seq2seq-lm", tmp_path, native.T5ForConditionalGeneration)
    assert model.lm_head.weight is not model.shared.weight and not model.config._scales_lm_input()
    assert ("lm_head.weight", "shared.weight") not in model.factory_load_report.tied
    torch.testing.assert_close(model.lm_head.weight, state["lm_head.weight"])
    ids, mask = _inputs()
    dec = _decoder_inputs()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        got = model(ids, attention_mask=mask, decoder_input_ids=dec).logits
    torch.testing.assert_close(got, want, **ATOL)
    factory.save(model, tmp_path / "saved")  # both matrices saved; transformers reads them apart again
    again = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits, want)


@pytest.mark.parametrize("variant", FAMILIES)
def test_encoder_model_parity(variant, checkpoints):
    hf, model = _native(variant, "text-encoding", checkpoints)
    ids, mask = _inputs()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = model(ids, attention_mask=mask, output_hidden_states=True)
    assert_same_outputs(got, want, ("last_hidden_state", "hidden_states"))
    assert len(got.hidden_states) == 3


@pytest.mark.parametrize("variant", FAMILIES)
def test_sequence_classification_parity(variant, checkpoints):
    hf, model = _native(variant, "sequence-classification", checkpoints)
    ids, mask = _inputs()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = model(ids, attention_mask=mask, labels=labels)
    assert_same_outputs(got, want, ("logits", "loss"))
    assert "transformer.shared.weight" in model.state_dict()


@pytest.mark.parametrize("variant", FAMILIES)
def test_token_classification_parity(variant, checkpoints):
    hf, model = _native(variant, "token-classification", checkpoints)
    ids, mask = _inputs()
    labels = torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = model(ids, attention_mask=mask, labels=labels)
    assert_same_outputs(got, want, ("logits", "loss"))


@pytest.mark.parametrize("variant", FAMILIES)
def test_question_answering_parity(variant, checkpoints):
    hf, model = _native(variant, "question-answering", checkpoints)
    ids, mask = _inputs()
    start, end = torch.tensor([1, 3, 40]), torch.tensor([2, 5, 41])
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
        got = model(ids, attention_mask=mask, start_positions=start, end_positions=end)
    assert_same_outputs(got, want, ("start_logits", "end_logits", "loss", "encoder_last_hidden_state"))


def test_heads_load_from_a_conditional_generation_checkpoint(checkpoints):
    """Fine-tuning starts from the seq2seq checkpoint: the trunk loads, the new head is initialised."""
    _, directory = checkpoints("t5-relu", "seq2seq-lm")
    model = factory.build("model", directory)  # lm_head.weight is not the trunk's: ignored
    assert type(model) is native.T5Model
    encoder = factory.build("text-encoding", directory)
    assert type(encoder) is native.T5EncoderModel
    with pytest.warns(WeightsMismatchWarning, match="4 missing, 0 unexpected"):
        classifier = factory.build("sequence-classification", directory, strict=False)
    torch.testing.assert_close(classifier.transformer.shared.weight, model.shared.weight)
    assert classifier.classification_head.out_proj.weight.abs().sum() > 0


@pytest.mark.parametrize("variant", FAMILIES)
def test_cached_decoding_equals_full_forward(variant, checkpoints):
    _, model = _native(variant, "seq2seq-lm", checkpoints)
    ids, mask = _inputs()
    dec = _decoder_inputs()
    with torch.no_grad():
        full = model(ids, attention_mask=mask, decoder_input_ids=dec).logits
        first = model(ids, attention_mask=mask, decoder_input_ids=dec[:, :9], use_cache=True)
        assert first.past_key_values[0][0].shape == (3, 3, 9, 7)
        logits = [first.logits]
        past = first.past_key_values
        for t in range(9, dec.shape[1]):  # one token at a time: relative positions after the cache
            step = model(
                encoder_outputs=(first.encoder_last_hidden_state,),
                attention_mask=mask,
                decoder_input_ids=dec[:, t : t + 1],
                past_key_values=past,
                use_cache=True,
            )
            past = step.past_key_values
            logits.append(step.logits)
    torch.testing.assert_close(torch.cat(logits, dim=1), full, **ATOL)


@pytest.mark.parametrize("variant", [*FAMILIES, "t5-gated-untied"])
def test_greedy_generation_matches_transformers(variant, checkpoints):
    hf, model = _native(variant, "seq2seq-lm", checkpoints)
    ids, mask = _inputs()
    for new in (1, 9):
        want = hf.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False, num_beams=1)
        assert model.generate(ids, attention_mask=mask, max_new_tokens=new).tolist() == want.tolist()
        assert model.generate(input_ids=ids, max_new_tokens=new).tolist() == want.tolist()  # mask from the pad id
    eos = next(t for t in model.generate(ids, attention_mask=mask, max_new_tokens=6)[0, 2:].tolist() if t != PAD)
    want = hf.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos, do_sample=False, num_beams=1)
    got = model.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos)
    assert got.tolist() == want.tolist() and eos in got[0].tolist()
    # a decoder prompt continues like transformers'
    prompt = _decoder_inputs(seq=3)
    want = hf.generate(ids, attention_mask=mask, decoder_input_ids=prompt, max_new_tokens=5, do_sample=False)
    got = model.generate(ids, attention_mask=mask, decoder_input_ids=prompt, max_new_tokens=5)
    assert got.tolist() == want.tolist()


def test_sampling_is_reproducible(checkpoints):
    _, model = _native("t5-relu", "seq2seq-lm", checkpoints)
    ids, mask = _inputs()

    def sample(seed):
        gen = torch.Generator().manual_seed(seed)
        return model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=True, top_k=5, generator=gen)

    assert torch.equal(sample(3), sample(3))
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=6)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(
        model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=True, top_k=1, generator=gen), greedy
    )


def test_builds_without_transformers(checkpoints):
    builds = [(task, checkpoints("t5-relu", task)[1], TASKS[task].format("T5")) for task in TASKS]
    builds.append(("seq2seq-lm", checkpoints("umt5", "seq2seq-lm")[1], "UMT5ForConditionalGeneration"))
    assert_builds_without_transformers(builds)


def test_save_reloads_in_transformers(checkpoints, tmp_path):
    _, model = _native("umt5", "seq2seq-lm", checkpoints)
    factory.save(model, tmp_path / "saved")
    reloaded = transformers.UMT5ForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    ids, mask = _inputs()
    dec = _decoder_inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, attention_mask=mask, decoder_input_ids=dec).logits,
            reloaded(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits,
            **ATOL,
        )


@pytest.mark.parametrize("model_type", sorted(PREFIX))
def test_config_defaults_match_transformers(model_type):
    ours = getattr(native, f"{PREFIX[model_type]}Config")()
    theirs = transformers.AutoConfig.for_model(model_type)
    for key in [k for k in type(theirs).__annotations__ if not k.startswith("_")]:
        if hasattr(theirs, key) and not callable(getattr(theirs, key)):
            assert getattr(ours, key) == getattr(theirs, key), key
    for key in ("dense_act_fn", "is_gated_act", "tie_word_embeddings"):
        assert getattr(ours, key) == getattr(theirs, key), key
    assert ours.to_dict()["model_type"] == model_type and ours.hidden_size == theirs.d_model


@pytest.mark.parametrize("tie", [None, True, False])
def test_scaling_follows_transformers(tie):
    kwargs = {} if tie is None else {"tie_word_embeddings": tie}
    theirs = transformers.T5Config(**kwargs)
    ours = native.T5Config(**kwargs)
    assert ours.scale_decoder_outputs == theirs.scale_decoder_outputs and ours.tie_word_embeddings is True
    written = native.T5Config.from_dict(ours.to_dict())
    assert written.scale_decoder_outputs == theirs.scale_decoder_outputs


def test_fresh_model_initialisation_follows_transformers():
    torch.manual_seed(0)
    model = factory.build("seq2seq-lm", "t5", config_overrides={**TINY, "initializer_factor": 2.0})
    assert isinstance(model, native.T5ForConditionalGeneration)
    q = model.encoder.block[0].layer[0].SelfAttention.q.weight
    wo = model.encoder.block[0].layer[1].DenseReluDense.wo.weight
    assert q.std().item() == pytest.approx(2.0 * (30 * 7) ** -0.5, rel=0.2)
    assert wo.std().item() == pytest.approx(2.0 * 37**-0.5, rel=0.2)
    assert torch.all(model.encoder.final_layer_norm.weight == 2.0)


def test_bad_configs_and_inputs():
    with pytest.raises(ConfigError, match="feed_forward_proj='gelu-gated' is not 'ACT' or 'gated-ACT'"):
        native.T5Config(feed_forward_proj="gelu-gated")
    with pytest.raises(ConfigError, match="dense_act_fn='mish' is not supported"):
        native.T5Model(native.T5Config(**{**TINY, "feed_forward_proj": "mish"}))
    with pytest.raises(ConfigError, match="relative_attention_num_buckets=2"):
        native.T5Model(native.T5Config(**{**TINY, "relative_attention_num_buckets": 2}))
    model = native.T5ForConditionalGeneration(native.T5Config(**TINY)).eval()
    labels = torch.randint(2, VOCAB, (1, 4))
    config = native.T5Config(**{**TINY, "decoder_start_token_id": None})
    with pytest.raises(ConfigError, match="needs config.decoder_start_token_id"):
        native.T5ForConditionalGeneration(config)(torch.randint(2, VOCAB, (1, 5)), labels=labels)
    with pytest.raises(ModelInputError, match=r"decoder_attention_mask must have shape \(batch, past \+ seq\)"):
        model(torch.randint(2, VOCAB, (1, 5)), labels=labels, decoder_attention_mask=torch.ones(1, 3))


# --- tokenizer -----------------------------------------------------------------------------------------
def test_unigram_tokenizer_matches_transformers(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    corpus = [
        "translate English to German: That is good.",
        "summarize: state authorities dispatched emergency crews tuesday to survey the damage",
        "The quick brown fox jumps over the lazy dog 12345 times.",
    ]
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    unigram.train_from_iterator(corpus * 20, trainer)
    vocab = [tuple(piece) for piece in json.loads(unigram.to_str())["model"]["vocab"]]
    transformers.T5Tokenizer(vocab=vocab, extra_ids=4).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    tokenizer = factory.build("tokenizer", tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = ["translate English to German: <extra_id_0> good.", "  several   spaces ", "unseen wörds ✓"]
    want = reference(texts, padding=True)
    got = tokenizer(texts, padding=True)
    assert got["input_ids"] == want["input_ids"] and got["attention_mask"] == want["attention_mask"]
    assert got["input_ids"][0][-1] == EOS  # </s> appended
    assert tokenizer.batch_decode(got["input_ids"], skip_special_tokens=True) == reference.batch_decode(
        want["input_ids"], skip_special_tokens=True
    )
