"""Parity of the native Whisper with transformers: every head, short-form generation with prompt tokens,
and audio -> transformers' feature extractor -> factory's generate -> factory's tokenizer -> text."""

from __future__ import annotations

import json
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.errors import ConfigError, ModelInputError
from factory.models import whisper as native
from factory.models.generation import GenerationError
from tests.models.parity import (
    ATOL,
    assert_builds_without_transformers,
    assert_same_outputs,
    build_native,
    byte_level_vocab,
    randomize,
)

# One second of 16 kHz audio = 100 frames = 50 encoder positions; 8 mel bins.
MELS, FRAMES, RATE = 8, 100, 16000
SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|fr|>",
    "<|de|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A byte-level BPE Whisper tokenizer (tokenizer.json) with Whisper's special tokens."""
    vocab, merges = byte_level_vocab()
    directory = tmp_path_factory.mktemp("whisper-tokenizer")
    reference = transformers.WhisperTokenizer(vocab=vocab, merges=merges)
    reference.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    reference.add_tokens(["<|endoftext|>"], special_tokens=True)
    reference.set_prefix_tokens()  # tokenizer.json's template: <|startoftranscript|><|notimestamps|> ... <|endoftext|>
    reference.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def ids(tokenizer_dir):
    """Special token name -> id, and the vocabulary size."""
    reference = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    return {token: reference.convert_tokens_to_ids(token) for token in SPECIALS}, len(reference)


def _config(ids, **overrides):
    special, vocab = ids
    eos = special["<|endoftext|>"]
    return transformers.WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=MELS,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=3,
        decoder_attention_heads=5,
        d_model=30,
        encoder_ffn_dim=21,
        decoder_ffn_dim=17,
        max_source_positions=FRAMES // 2,
        max_target_positions=40,
        decoder_start_token_id=special["<|startoftranscript|>"],
        pad_token_id=eos,
        bos_token_id=eos,
        eos_token_id=eos,
        suppress_tokens=[5, 7],
        begin_suppress_tokens=[220 % vocab, eos],
        classifier_proj_size=11,
        num_labels=4,
        **overrides,
    )


def _generation_config(model, ids, **extra):
    special, _ = ids
    gc = model.generation_config
    gc.lang_to_id = {t: special[t] for t in ("<|en|>", "<|fr|>", "<|de|>")}
    gc.task_to_id = {"transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"]}
    gc.no_timestamps_token_id = special["<|notimestamps|>"]
    gc.is_multilingual = True
    for key, value in extra.items():
        setattr(gc, key, value)


TASKS = {
    "model": "WhisperModel",
    "speech-seq2seq": "WhisperForConditionalGeneration",
    "audio-classification": "WhisperForAudioClassification",
    "causal-lm": "WhisperForCausalLM",
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, ids, tokenizer_dir):
    """(variant, task) -> (transformers model, checkpoint dir, with the tokenizer's files), built lazily."""
    cache: dict = {}

    def get(variant: str, task: str):
        if (variant, task) not in cache:
            torch.manual_seed(0)
            model = getattr(transformers, TASKS[task])(_config(ids, use_weighted_layer_sum=variant == "weighted"))
            model.eval()
            randomize(model, skip=("encoder.embed_positions",))
            if task == "speech-seq2seq":
                _generation_config(model, ids)
            directory = tmp_path_factory.mktemp(f"whisper-{variant}-{task}")
            model.save_pretrained(directory)
            for path in tokenizer_dir.iterdir():
                (directory / path.name).write_bytes(path.read_bytes())
            cache[variant, task] = (model, directory)
        return cache[variant, task]

    return get


def _native(variant, task, checkpoints):
    hf, directory = checkpoints(variant, task)
    return hf, build_native(task, directory, getattr(native, TASKS[task]))


def _features(batch: int = 3):
    return torch.randn(batch, MELS, FRAMES, generator=torch.Generator().manual_seed(1))


def _decoder_inputs(ids, seq: int = 6):
    special, vocab = ids
    out = torch.randint(0, special["<|endoftext|>"], (3, seq), generator=torch.Generator().manual_seed(2))
    out[:, 0] = special["<|startoftranscript|>"]
    return out


SEQ2SEQ_KEYS = ("encoder_last_hidden_state", "encoder_hidden_states", "decoder_hidden_states")


def test_model_parity(checkpoints, ids):
    hf, model = _native("base", "model", checkpoints)
    dec = _decoder_inputs(ids)
    dec_mask = torch.ones_like(dec)
    dec_mask[1, -2:] = 0
    with torch.no_grad():
        want = hf(
            input_features=_features(),
            decoder_input_ids=dec,
            decoder_attention_mask=dec_mask,
            output_hidden_states=True,
        )
        got = model(_features(), decoder_input_ids=dec, decoder_attention_mask=dec_mask, output_hidden_states=True)
    assert_same_outputs(got, want, ("last_hidden_state", *SEQ2SEQ_KEYS))


def test_conditional_generation_parity_and_loss(checkpoints, ids):
    hf, model = _native("base", "speech-seq2seq", checkpoints)
    labels = _decoder_inputs(ids)[:, 1:]
    labels[2, -2:] = -100
    with torch.no_grad():
        want = hf(input_features=_features(), labels=labels, output_hidden_states=True)
        got = model(_features(), labels=labels, output_hidden_states=True)
        positions = model(
            _features(), decoder_input_ids=labels.clamp(min=0), decoder_position_ids=torch.arange(5)[None]
        )
        expected = hf(
            input_features=_features(),
            decoder_input_ids=labels.clamp(min=0),
            decoder_position_ids=torch.arange(5)[None],
        )
    assert_same_outputs(got, want, ("logits", "loss", *SEQ2SEQ_KEYS))
    torch.testing.assert_close(positions.logits, expected.logits, **ATOL)
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    assert "model.encoder.embed_positions.weight" in model.state_dict()


@pytest.mark.parametrize("variant", ["base", "weighted"])
def test_audio_classification_parity(variant, checkpoints):
    hf, model = _native(variant, "audio-classification", checkpoints)
    labels = torch.tensor([0, 3, 1])
    with torch.no_grad():
        want = hf(input_features=_features(), labels=labels)
        got = model(_features(), labels=labels)
    assert_same_outputs(got, want, ("logits", "loss"))
    assert hasattr(model, "layer_weights") == (variant == "weighted")


def test_causal_lm_parity_and_generation(checkpoints, ids):
    hf, model = _native("base", "causal-lm", checkpoints)
    dec = _decoder_inputs(ids)
    with torch.no_grad():
        want = hf(input_ids=dec, labels=dec)
        got = model(dec, labels=dec)
        encoder_states = torch.randn(3, 7, 30)
        cross_want = hf(input_ids=dec, encoder_outputs=(encoder_states,)).logits
        cross_got = model(dec, encoder_outputs=(encoder_states,)).logits
    assert_same_outputs(got, want, ("logits", "loss"))
    torch.testing.assert_close(cross_got, cross_want, **ATOL)
    want = hf.generate(dec[:1], max_new_tokens=6, do_sample=False)
    assert model.generate(dec[:1], max_new_tokens=6).tolist() == want.tolist()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"language": "en"},
        {"language": "<|fr|>", "task": "translate"},
        {"language": ["en", "de", "fr"]},
        {"task": "translate"},  # language detected from the audio
        {},  # detected, then transcribed
    ],
)
def test_greedy_generation_matches_transformers(kwargs, checkpoints):
    hf, model = _native("base", "speech-seq2seq", checkpoints)
    for new in (2, 9):
        want = hf.generate(_features(), max_new_tokens=new, **kwargs)
        got = model.generate(_features(), max_new_tokens=new, **kwargs)
        assert got.tolist() == want.tolist()
    want = hf.generate(_features(), **kwargs)  # the generation config's max_length
    assert model.generate(_features(), **kwargs).tolist() == want.tolist()


def test_prompt_tokens_like_transformers(checkpoints, ids):
    _, model = _native("base", "speech-seq2seq", checkpoints)
    special, _ = ids
    prompt = native.prompt_tokens(model, _features(2), "fr", "transcribe")
    want = ["<|startoftranscript|>", "<|fr|>", "<|transcribe|>", "<|notimestamps|>"]
    assert prompt.tolist() == [[special[t] for t in want]] * 2


def test_eos_stops_rows_like_transformers(checkpoints, ids):
    hf, model = _native("base", "speech-seq2seq", checkpoints)
    full = model.generate(_features(), language="en", max_new_tokens=10)
    eos = int(full[0, 2])
    want = hf.generate(_features(), language="en", max_new_tokens=10, eos_token_id=eos)
    got = model.generate(_features(), language="en", max_new_tokens=10, eos_token_id=eos)
    assert got.tolist() == want.tolist()
    assert got.shape[1] <= full.shape[1] and eos not in got[0, :2].tolist()


def test_forced_decoder_ids_of_old_generation_configs(ids, tmp_path):
    special, _ = ids
    torch.manual_seed(0)
    hf = transformers.WhisperForConditionalGeneration(_config(ids)).eval()
    randomize(hf, skip=("encoder.embed_positions",))
    forced = [[1, special["<|de|>"]], [2, special["<|translate|>"]], [3, special["<|notimestamps|>"]]]
    _generation_config(hf, ids)
    hf.generation_config.forced_decoder_ids = forced
    hf.save_pretrained(tmp_path)
    model = factory.build("speech-seq2seq", tmp_path)
    assert model.generation_config.forced_decoder_ids == forced
    prompt = native.prompt_tokens(model, _features(1), None, None)
    assert prompt.tolist() == [[special["<|startoftranscript|>"], *(token for _, token in forced)]]
    want = hf.generate(_features(), max_new_tokens=7)
    assert model.generate(_features(), max_new_tokens=7).tolist() == want.tolist()


def test_generation_errors(checkpoints):
    _, model = _native("base", "speech-seq2seq", checkpoints)
    with pytest.raises(GenerationError, match="language 'xx' is not in this checkpoint's generation config"):
        model.generate(_features(), language="xx")
    with pytest.raises(GenerationError, match="task 'summarize' is not in this checkpoint's generation config"):
        model.generate(_features(), task="summarize")
    with pytest.raises(GenerationError, match="2 languages given for a batch of 3 clips"):
        model.generate(_features(), language=["en", "fr"])
    with pytest.raises(GenerationError, match="exceed Whisper's max_target_positions=40"):
        model.generate(_features(), language="en", max_new_tokens=40)
    with pytest.raises(GenerationError, match="long-form transcription is not implemented"):
        model.generate(torch.randn(1, MELS, 2 * FRAMES))
    with pytest.raises(GenerationError, match="timestamps are not implemented"):
        model.generate(_features(), return_timestamps=True)
    with pytest.raises(ModelInputError, match=r"input_features \[batch, 8 mel bins, 100 frames\], got \(3, 8, 90\)"):
        model(_features()[..., :90], decoder_input_ids=torch.zeros(3, 1, dtype=torch.long))


def test_audio_to_text_through_the_feature_extractor(checkpoints):
    """transformers' WhisperFeatureExtractor (factory's own is another branch), factory's generate and tokenizer."""
    hf, model = _native("base", "speech-seq2seq", checkpoints)
    _, directory = checkpoints("base", "speech-seq2seq")
    extractor = transformers.WhisperFeatureExtractor(feature_size=MELS, sampling_rate=RATE, chunk_length=1)
    time = torch.arange(RATE * 0.7) / RATE
    audio = [torch.sin(2 * math.pi * f * time).numpy() for f in (220.0, 440.0, 880.0)]
    features = extractor(audio, sampling_rate=RATE, return_tensors="pt").input_features
    assert features.shape == (3, MELS, FRAMES)
    tokenizer = factory.build("tokenizer", directory)
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    got = tokenizer.batch_decode(model.generate(features, language="en", max_new_tokens=8), skip_special_tokens=True)
    want = reference.batch_decode(hf.generate(features, language="en", max_new_tokens=8), skip_special_tokens=True)
    assert got == want and all(isinstance(text, str) for text in got)


def test_tokenizer_matches_transformers(checkpoints, ids):
    _, directory = checkpoints("base", "speech-seq2seq")
    tokenizer = factory.build("tokenizer", directory)
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    special, _ = ids
    text = "<|startoftranscript|><|en|><|transcribe|><|notimestamps|> The quick brown fox<|endoftext|>"
    assert tokenizer(text)["input_ids"] == reference(text)["input_ids"]
    assert tokenizer(text)["input_ids"][0] == special["<|startoftranscript|>"]
    decoded = tokenizer.decode(reference(text)["input_ids"], skip_special_tokens=True)
    assert decoded == reference.decode(reference(text)["input_ids"], skip_special_tokens=True)


def test_save_reloads_in_transformers(checkpoints, tmp_path, ids):
    _, model = _native("base", "speech-seq2seq", checkpoints)
    factory.save(model, tmp_path / "saved")
    reloaded = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    dec = _decoder_inputs(ids)
    with torch.no_grad():
        torch.testing.assert_close(
            model(_features(), decoder_input_ids=dec).logits,
            reloaded(input_features=_features(), decoder_input_ids=dec).logits,
            **ATOL,
        )


def test_builds_without_transformers(checkpoints):
    assert_builds_without_transformers([(task, checkpoints("base", task)[1], name) for task, name in TASKS.items()])


def test_fresh_model_has_sinusoidal_positions():
    model = factory.build(
        "speech-seq2seq",
        "whisper",
        config_overrides=dict(d_model=12, encoder_attention_heads=2, decoder_attention_heads=2),
    )
    table = model.model.encoder.embed_positions.weight
    from transformers.models.whisper.modeling_whisper import sinusoids

    torch.testing.assert_close(table, sinusoids(1500, 12))
    assert not table.requires_grad
    with torch.device("meta"):
        meta = native.WhisperEncoder(native.WhisperConfig(d_model=12, encoder_attention_heads=2))
    assert meta.embed_positions.weight.is_meta


def test_config_defaults_match_transformers():
    ours, theirs = native.WhisperConfig(), transformers.WhisperConfig()
    for key in [k for k in type(theirs).__annotations__ if not k.startswith("_")]:
        if hasattr(theirs, key) and not callable(getattr(theirs, key)):
            assert getattr(ours, key) == getattr(theirs, key), key
    assert json.loads(json.dumps(ours.to_dict()))["begin_suppress_tokens"] == [220, 50256]


def test_bad_configs():
    with pytest.raises(ConfigError, match="model dimension 30 is not a multiple of encoder_attention_heads=4"):
        native.WhisperModel(native.WhisperConfig(d_model=30, encoder_attention_heads=4, decoder_attention_heads=5))
    with pytest.raises(ConfigError, match="d_model=15 must be even"):
        native.WhisperModel(native.WhisperConfig(d_model=15, encoder_attention_heads=3, decoder_attention_heads=5))
