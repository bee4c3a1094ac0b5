"""Whisper's tokenizer against transformers' WhisperTokenizer: prompts, timestamps, offsets, prefix tokens."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
from transformers import WhisperTokenizer as Reference

from factory.components.whisper_tokenizer import WhisperTokenizer, language_code
from factory.errors import TokenizerError
from tests.components.conftest import make_whisper_tokenizer


@pytest.fixture(scope="module")
def pair(whisper_dir):
    return Reference.from_pretrained(whisper_dir), WhisperTokenizer.from_directory(whisper_dir)


@pytest.fixture(scope="module")
def sequences(pair):
    ref, _ = pair
    ids = ref.convert_tokens_to_ids
    sot, prev, eot, nots, en = ids(
        ["<|startoftranscript|>", "<|startofprev|>", "<|endoftext|>", "<|notimestamps|>", "<|en|>"]
    )
    t0 = ids("<|0.00|>")
    words = ref("the world", add_special_tokens=False).input_ids
    return [
        [sot, en, nots, *words, eot],
        [prev, *words, sot, en, *words, eot],  # a previous-text prompt
        [prev, *words],  # a prompt and nothing else
        [sot, t0, *words, t0 + 50, t0 + 50, *words, t0 + 120, eot],  # timestamped segments
        [sot, t0 + 10, *words, t0 + 1400, t0 + 3, *words, t0 + 30],  # time going back: the next 30 s segment
        [],
    ]


@pytest.mark.parametrize("text", ["the world", " hello there", "the world, it's here ."])
def test_encoding_with_the_prefix(pair, text):
    ref, ours = pair
    assert ours(text)["input_ids"] == ref(text).input_ids
    assert ours(text, add_special_tokens=False)["input_ids"] == ref(text, add_special_tokens=False).input_ids


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"skip_special_tokens": True},
        {"decode_with_timestamps": True},
        {"decode_with_timestamps": True, "skip_special_tokens": True},
        {"output_offsets": True},
        {"output_offsets": True, "time_precision": 0.04},
    ],
)
def test_decode(pair, sequences, options):
    ref, ours = pair
    for seq in sequences:
        assert ours.decode(seq, **options) == ref.decode(seq, **options), seq
        assert ours.decode(torch.tensor(seq, dtype=torch.long), **options) == ref.decode(seq, **options)


@pytest.mark.parametrize("options", [{}, {"skip_special_tokens": True}, {"decode_with_timestamps": True}])
def test_batch_decode(pair, sequences, options):
    ref, ours = pair
    assert ours.batch_decode(sequences[:5], **options) == ref.batch_decode(sequences[:5], **options)
    batch = torch.tensor([sequences[0], sequences[0]])
    assert ours.batch_decode(batch, **options) == ref.batch_decode(batch, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"language": "english", "task": "transcribe"},
        {"language": "fr", "task": "translate", "no_timestamps": False},
        {},
    ],
)
def test_decoder_prompt_ids_and_prefix(whisper_dir, options):
    ref, ours = Reference.from_pretrained(whisper_dir), WhisperTokenizer.from_directory(whisper_dir)
    assert ours.get_decoder_prompt_ids(**options) == ref.get_decoder_prompt_ids(**options)
    assert ours.prefix_tokens == ref.prefix_tokens
    assert ours("the world")["input_ids"] == ref("the world").input_ids


def test_language_and_task_from_the_config(tmp_path):
    ref = make_whisper_tokenizer(tmp_path, language="german", task="translate")
    ours = WhisperTokenizer.from_directory(tmp_path)
    assert (ours.language, ours.task) == ("german", "translate")
    assert ours("the world")["input_ids"] == ref("the world").input_ids
    assert ours.get_prompt_ids("the world") == list(ref.get_prompt_ids("the world"))
    assert torch.equal(
        ours.get_prompt_ids("the world", return_tensors="pt"), torch.tensor(ours.get_prompt_ids("the world"))
    )


def test_save_round_trip(pair, tmp_path, sequences):
    ref, ours = pair
    ours.save(tmp_path)
    back = Reference.from_pretrained(tmp_path)
    assert back("the world").input_ids == ref("the world").input_ids
    assert back.decode(sequences[1], skip_special_tokens=True) == ref.decode(sequences[1], skip_special_tokens=True)


def test_errors(pair, sequences):
    _, ours = pair
    with pytest.raises(TokenizerError, match="normalize / basic_normalize are not implemented"):
        ours.decode(sequences[0], normalize=True)
    with pytest.raises(TokenizerError, match="one sequence at a time"):
        ours.decode(sequences[:2], output_offsets=True)
    with pytest.raises(TokenizerError, match="unsupported language 'klingon'"):
        ours.get_decoder_prompt_ids(language="klingon")
    with pytest.raises(TokenizerError, match="unsupported task"):
        ours.set_prefix_tokens(task="summarize")
    assert ours.language is None and ours.task is None  # a refused prefix changes nothing
    assert language_code("Mandarin") == "zh" and language_code("de") == "de"
