"""wav2vec2's CTC tokenizer against transformers' Wav2Vec2CTCTokenizer on the files it saves."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
from transformers import Wav2Vec2CTCTokenizer as Reference

from factory.components.ctc_tokenizer import Wav2Vec2CTCTokenizer
from factory.errors import TokenizerError, TokenizerFileError
from tests.components.conftest import CTC_VOCAB

TEXTS = [
    "HELLO WORLD",
    "hello",
    "HE<s>LLO",
    "HE <s> LLO",
    "A<ab>B",
    "A <ab> B",
    "  HEL  LO ",
    "HE</s>",
    "<unk>x",
    "\n\nA'",
]
#: CTC output: repeats, blanks (<pad> = 0) between letters, a doubled delimiter, eos, an unknown id, an added token
IDS = [9, 9, 0, 5, 10, 10, 0, 10, 8, 4, 4, 11, 8, 12, 10, 13, 0, 0, 2, 100, 15]


@pytest.fixture(scope="module")
def pair(ctc_dir):
    return Reference.from_pretrained(ctc_dir), Wav2Vec2CTCTokenizer.from_directory(ctc_dir)


@pytest.mark.parametrize("text", TEXTS)
def test_encoding(pair, text):
    ref, ours = pair
    assert ours.tokenize(text) == ref.tokenize(text)
    assert ours(text)["input_ids"] == ref(text).input_ids
    assert ours.encode(text) == ref.encode(text)


def test_batch_encoding_with_padding(pair):
    ref, ours = pair
    a = ref(["HELLO", "HI THERE"], padding=True, return_tensors="pt")
    b = ours(["HELLO", "HI THERE"], padding=True, return_tensors="pt")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    a = ref(["HELLO", "HI THERE"], padding="max_length", max_length=12, truncation=True)
    b = ours(["HELLO", "HI THERE"], padding="max_length", max_length=12, truncation=True)
    assert a.input_ids == b["input_ids"] and a.attention_mask == b["attention_mask"]


@pytest.mark.parametrize(
    "options",
    [{}, {"skip_special_tokens": True}, {"group_tokens": False}, {"spaces_between_special_tokens": True}],
)
def test_ctc_decoding(pair, options):
    ref, ours = pair
    assert ours.decode(IDS, **options) == ref.decode(IDS, **options)
    assert ours.decode(torch.tensor(IDS), **options) == ref.decode(IDS, **options)


def test_offsets(pair):
    ref, ours = pair
    a = ref.decode(IDS, output_char_offsets=True, output_word_offsets=True)
    b = ours.decode(IDS, output_char_offsets=True, output_word_offsets=True)
    assert b.text == a.text
    assert b.char_offsets == [{k: (int(v) if k != "char" else v) for k, v in d.items()} for d in a.char_offsets]
    assert b.word_offsets == [{k: (int(v) if k != "word" else v) for k, v in d.items()} for d in a.word_offsets]
    assert ours.decode(IDS, output_word_offsets=True).char_offsets is None


def test_batch_decode(pair):
    ref, ours = pair
    batch = [IDS, IDS[:5], []]
    assert ours.batch_decode(batch) == ref.batch_decode(batch)
    assert ours.batch_decode(torch.tensor([IDS, IDS]), skip_special_tokens=True) == ref.batch_decode(
        torch.tensor([IDS, IDS]), skip_special_tokens=True
    )
    a, b = ref.batch_decode(batch[:2], output_word_offsets=True), ours.batch_decode(batch[:2], output_word_offsets=True)
    assert b.text == a.text and len(b.word_offsets) == 2


def test_special_tokens_and_vocabulary(pair):
    ref, ours = pair
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.all_special_ids == ref.all_special_ids
    assert (ours.pad_token_id, ours.unk_token_id, ours.word_delimiter_token_id) == (0, 3, 4)
    assert ours.get_vocab() == ref.get_vocab() and len(ours) == len(ref) and ours.vocab_size == ref.vocab_size
    assert ours.convert_ids_to_tokens([1, 100]) == ref.convert_ids_to_tokens([1, 100])


def test_lower_case_and_save_round_trip(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps(CTC_VOCAB))
    Reference(str(tmp_path / "vocab.json"), do_lower_case=True).save_pretrained(tmp_path / "ref")
    ref = Reference.from_pretrained(tmp_path / "ref")
    ours = Wav2Vec2CTCTokenizer.from_directory(tmp_path / "ref")
    ids = ref("hello World").input_ids
    assert (
        ours("hello World")["input_ids"] == ids and ours.decode(ids) == ref.decode(ids) == "helo world"
    )  # CTC merges repeats
    written = ours.save(tmp_path / "ours")
    assert sorted(p.name for p in written) == ["tokenizer_config.json", "vocab.json"]
    back = Reference.from_pretrained(tmp_path / "ours")
    for text in TEXTS:
        assert back(text).input_ids == ref(text).input_ids
    assert back.decode(IDS) == ref.decode(IDS)


def test_languages_in_one_vocabulary(tmp_path):
    nested = {"eng": dict(CTC_VOCAB), "deu": {**CTC_VOCAB, "Ä": 16}}
    (tmp_path / "vocab.json").write_text(json.dumps(nested))
    Reference(str(tmp_path / "vocab.json"), target_lang="deu").save_pretrained(tmp_path / "ref")
    ref = Reference.from_pretrained(tmp_path / "ref", target_lang="deu")
    ours = Wav2Vec2CTCTokenizer.from_directory(tmp_path / "ref", target_lang="deu")
    assert ours("HÄLLO")["input_ids"] == ref("HÄLLO").input_ids == [9, 16, 10, 10, 8]
    with pytest.raises(TokenizerFileError, match="one vocabulary per language"):
        Wav2Vec2CTCTokenizer.from_directory(tmp_path / "ref", target_lang=None)
    with pytest.raises(TokenizerFileError, match="'fra' is not a language"):
        Wav2Vec2CTCTokenizer.from_directory(tmp_path / "ref", target_lang="fra")


def test_bad_files(tmp_path):
    with pytest.raises(TokenizerFileError, match="no vocab.json"):
        Wav2Vec2CTCTokenizer.from_directory(tmp_path)
    (tmp_path / "vocab.json").write_text("[1]")
    with pytest.raises(TokenizerFileError, match="must hold a JSON object"):
        Wav2Vec2CTCTokenizer.from_directory(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"a": -1}))
    with pytest.raises(TokenizerFileError, match="ids are non-negative integers"):
        Wav2Vec2CTCTokenizer.from_directory(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps(CTC_VOCAB))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {"x": {"content": "y"}}}))
    with pytest.raises(TokenizerFileError, match="is not an id"):
        Wav2Vec2CTCTokenizer.from_directory(tmp_path)
    with pytest.raises(TokenizerFileError, match="expected a checkpoint directory"):
        Wav2Vec2CTCTokenizer.from_directory(tmp_path / "vocab.json")


def test_bad_calls(pair):
    _, ours = pair
    with pytest.raises(TokenizerError, match="padding='max_length' needs max_length"):
        ours("HELLO", padding="max_length")
    with pytest.raises(TokenizerError, match="different lengths"):
        ours(["A", "AB"], return_tensors="pt")
    with pytest.raises(TokenizerError, match="sequence of token ids"):
        ours.decode("HELLO")
