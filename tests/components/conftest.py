"""Shared fixtures of the component tests: tiny tokenizers saved by transformers, images and audio.

Nothing is downloaded: the CLIP tokenizer has a hand-written vocabulary, the Whisper tokenizer a byte-level
alphabet with a few merges plus Whisper's special tokens (every language, in transformers' order) and the
1501 timestamp tokens, the CTC tokenizer a character vocabulary.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

CLIP_VOCAB = {
    "<|startoftext|>": 0,
    "<|endoftext|>": 1,
    "a</w>": 2,
    "b</w>": 3,
    "a": 4,
    "b": 5,
    "c</w>": 6,
    "ab</w>": 7,
    "photo</w>": 8,
    "cat</w>": 9,
    "dog</w>": 10,
    "of</w>": 11,
}
CLIP_MERGES = [("a", "b</w>")]
CTC_VOCAB = {
    "<pad>": 0,
    "<s>": 1,
    "</s>": 2,
    "<unk>": 3,
    "|": 4,
    "E": 5,
    "T": 6,
    "A": 7,
    "O": 8,
    "H": 9,
    "L": 10,
    "W": 11,
    "R": 12,
    "D": 13,
    "'": 14,
    "<ab>": 15,
}


def make_whisper_tokenizer(directory: Path, **config: object):
    """A Whisper tokenizer saved (and reloaded) by transformers; ``config`` goes into tokenizer_config.json."""
    from tokenizers import pre_tokenizers
    from transformers import WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("Ġ", "w"), ("o", "r")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = WhisperTokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>")
        specials = ["<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES)]
        specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]
        tok.add_special_tokens({"additional_special_tokens": [*specials, "<|notimestamps|>"]})
        tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
        tok.save_pretrained(directory)
        if config:
            path = directory / "tokenizer_config.json"
            data = json.loads(path.read_text())
            data.update(config)
            path.write_text(json.dumps(data))
        return WhisperTokenizer.from_pretrained(directory)


def make_clip_tokenizer(generic: bool = False):
    """CLIP's tokenizer; ``generic``: the same pipeline as a plain tokenizers-backed tokenizer (SigLIP's
    own is sentencepiece, which the reference environment does not install)."""
    from tokenizers import Tokenizer as Backend
    from transformers import CLIPTokenizer, PreTrainedTokenizerFast

    clip = CLIPTokenizer(vocab=dict(CLIP_VOCAB), merges=list(CLIP_MERGES))
    if not generic:
        return clip
    backend = Backend.from_str(clip.backend_tokenizer.to_str())
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    """A Whisper processor directory (feature extractor + tokenizer) saved by transformers."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    directory = tmp_path_factory.mktemp("whisper")
    tokenizer = make_whisper_tokenizer(directory)
    WhisperProcessor(WhisperFeatureExtractor(), tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def ctc_dir(tmp_path_factory) -> Path:
    """A wav2vec2 processor directory (feature extractor + CTC tokenizer) saved by transformers."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    directory = tmp_path_factory.mktemp("ctc")
    (directory / "vocab.json").write_text(json.dumps(CTC_VOCAB))
    tokenizer = Wav2Vec2CTCTokenizer(str(directory / "vocab.json"))
    Wav2Vec2Processor(Wav2Vec2FeatureExtractor(return_attention_mask=True), tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def rng():
    np = pytest.importorskip("numpy")
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def audio(rng) -> list:
    """Mono clips of 1 s, 1.47 s and 0.31 s at 16 kHz (float32)."""
    return [(rng.standard_normal(n) * 0.1).astype("float32") for n in (16000, 23456, 5000)]
