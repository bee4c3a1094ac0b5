"""wav2vec2's CTC tokenizer: a character vocabulary (``vocab.json``) and CTC decoding.

``Wav2Vec2CTCTokenizer.from_directory(path)`` reads what transformers' ``Wav2Vec2CTCTokenizer.save_pretrained``
writes: ``vocab.json`` (flat, or one vocabulary per language with ``target_lang``), ``tokenizer_config.json``
(special tokens, ``word_delimiter_token``, ``do_lower_case``, ``added_tokens_decoder``, padding side,
``model_max_length``) and the legacy ``special_tokens_map.json`` / ``added_tokens.json``. Encoding splits
text into characters (a space becomes the word delimiter ``|``; multi-character vocabulary entries and added
tokens stay whole, with the whitespace around them stripped), as transformers' slow tokenizer does; decoding
groups repeated ids, drops the CTC blank (the padding token) and turns delimiters into spaces, with optional
character and word offsets. Pure Python: no tokenizers backend, no torch unless tensors are asked for.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.components.files import drop_code_keys, read_json_object, write_json
from factory.components.tokenizer import BatchEncoding, clean_up_tokenization
from factory.errors import TokenizerError, TokenizerFileError

__all__ = ["CTCDecoding", "Wav2Vec2CTCTokenizer"]

VOCAB_FILE = "vocab.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
VERY_LARGE_INTEGER = int(1e30)
SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token")
DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


@dataclass(frozen=True)
class AddedToken:
    """A token matched whole in text before it is split into characters."""

    content: str
    lstrip: bool = False
    rstrip: bool = False
    special: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "lstrip": self.lstrip,
            "normalized": False,
            "rstrip": self.rstrip,
            "single_word": False,
            "special": self.special,
        }


class CTCDecoding(dict):  # type: ignore[type-arg]
    """``decode(..., output_char_offsets=True)``: ``text``, ``char_offsets``, ``word_offsets`` (also as attributes)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class Wav2Vec2CTCTokenizer:
    """Characters to ids and CTC output ids back to text, as transformers' ``Wav2Vec2CTCTokenizer``."""

    model_input_names = ("input_ids", "attention_mask")

    def __init__(
        self,
        vocab: Mapping[str, Any],
        *,
        bos_token: str | None = "<s>",
        eos_token: str | None = "</s>",
        unk_token: str | None = "<unk>",
        pad_token: str | None = "<pad>",
        word_delimiter_token: str | None = "|",
        replace_word_delimiter_char: str = " ",
        do_lower_case: bool = False,
        target_lang: str | None = None,
        added_tokens: Mapping[int, AddedToken] | None = None,
        padding_side: str = "right",
        model_max_length: int | None = None,
        clean_up_tokenization_spaces: bool = False,
        name_or_path: str = "",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.vocab = dict(vocab)
        self.target_lang = target_lang
        self.encoder = _encoder(self.vocab, target_lang)
        self.decoder = {index: token for token, index in self.encoder.items()}
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.word_delimiter_token = word_delimiter_token
        self.replace_word_delimiter_char = replace_word_delimiter_char
        self.do_lower_case = bool(do_lower_case)
        if padding_side not in ("left", "right"):
            raise TokenizerError(f'padding_side must be "left" or "right", got {padding_side!r}')
        self.padding_side = padding_side
        self.model_max_length = VERY_LARGE_INTEGER if model_max_length is None else int(model_max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.name_or_path = name_or_path
        self._config = dict(config or {})
        self._added: dict[int, AddedToken] = dict(added_tokens or {})
        self._register_tokens()

    def _register_tokens(self) -> None:
        """Special tokens and multi-character vocabulary entries become added tokens, as transformers adds them."""
        present = {token.content for token in self._added.values()}
        next_id = max([*self.encoder.values(), *self._added, -1]) + 1
        names = [self.bos_token, self.eos_token, self.unk_token, self.pad_token]
        for content in [*(t for t in names if t), *(t for t in self.encoder if len(t) > 1)]:
            if content in present:
                continue
            index = self.encoder.get(content)
            if index is None:
                index, next_id = next_id, next_id + 1
            self._added[index] = AddedToken(content, lstrip=len(content) > 1, rstrip=len(content) > 1)
            present.add(content)
        if self.word_delimiter_token and self.word_delimiter_token not in present:
            index = self.encoder.get(self.word_delimiter_token)
            if index is None:
                index = next_id
            self._added[index] = AddedToken(self.word_delimiter_token, special=True)
        self._added_encoder = {token.content: index for index, token in self._added.items()}
        ordered = sorted(self._added_encoder, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(map(re.escape, ordered)) + ")") if ordered else None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], **overrides: Any) -> Wav2Vec2CTCTokenizer:
        """Load ``vocab.json`` and ``tokenizer_config.json`` as ``Wav2Vec2CTCTokenizer.save_pretrained`` writes them."""
        directory = Path(path)
        if not directory.is_dir():
            raise TokenizerFileError(
                "expected a checkpoint directory holding vocab.json",
                file=directory,
                hint="pass the directory Wav2Vec2CTCTokenizer.save_pretrained wrote",
            )
        vocab_path = directory / VOCAB_FILE
        if not vocab_path.exists():
            raise TokenizerFileError(
                "no vocab.json: a CTC tokenizer's vocabulary lives there",
                file=directory,
                hint="save the tokenizer with Wav2Vec2CTCTokenizer.save_pretrained into this directory",
            )
        vocab = read_json_object(vocab_path, error=TokenizerFileError)
        config_path = directory / CONFIG_FILE
        config = read_json_object(config_path, error=TokenizerFileError) if config_path.exists() else {}
        config = drop_code_keys(config, config_path)
        map_path = directory / SPECIAL_TOKENS_MAP_FILE
        if map_path.exists() and "added_tokens_decoder" not in config:
            for key, value in read_json_object(map_path, error=TokenizerFileError).items():
                config.setdefault(key, value)
        config.update(overrides)
        added = _added_tokens(config, config_path)
        added_path = directory / ADDED_TOKENS_FILE
        if added_path.exists():
            for content, index in read_json_object(added_path, error=TokenizerFileError).items():
                if isinstance(index, int) and not isinstance(index, bool) and index not in added:
                    added[index] = AddedToken(content)
        special = {key: _token_content(config.get(key, default), key, config_path) for key, default in DEFAULTS.items()}
        delimiter = _token_content(config.get("word_delimiter_token", "|"), "word_delimiter_token", config_path)
        max_length = config.get("model_max_length")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, (int, float))):
            raise TokenizerFileError(f"model_max_length must be a number, found {max_length!r}", file=config_path)
        try:
            return cls(
                vocab,
                **special,
                word_delimiter_token=delimiter,
                replace_word_delimiter_char=str(config.get("replace_word_delimiter_char", " ")),
                do_lower_case=bool(config.get("do_lower_case", False)),
                target_lang=config.get("target_lang"),
                added_tokens=added,
                padding_side=str(config.get("padding_side", "right")),
                model_max_length=int(max_length) if max_length is not None else None,
                clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
                name_or_path=str(directory),
                config=config,
            )
        except TokenizerError as err:
            raise TokenizerFileError(err.message, file=config_path if config else vocab_path, hint=err.hint) from None

    from_pretrained = from_directory

    # --------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return len(self.decoder)

    def __len__(self) -> int:
        return len(set(self.decoder) | set(self._added))

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self._added_encoder}

    @property
    def all_special_tokens(self) -> list[str]:
        """bos, eos, unk, pad and the word delimiter (transformers' order), then special added tokens."""
        named = [t for t in (self.bos_token, self.eos_token, self.unk_token, self.pad_token) if t]
        if self.word_delimiter_token:
            named.append(self.word_delimiter_token)
        extra = [t.content for t in self._added.values() if t.special and t.content not in named]
        return named + extra

    @property
    def all_special_ids(self) -> list[int]:
        return [self._to_id(token) for token in self.all_special_tokens]

    def _to_id(self, token: str) -> int:
        if token in self._added_encoder:
            return self._added_encoder[token]
        found = self.encoder.get(token)
        if found is None:
            found = self.encoder.get(self.unk_token) if self.unk_token else None
        if found is None:
            raise TokenizerError(f"{token!r} is not in the vocabulary and there is no unk_token")
        return found

    def _token_id(self, token: str | None) -> int | None:
        return self._to_id(token) if token else None

    @property
    def pad_token_id(self) -> int | None:
        return self._token_id(self.pad_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._token_id(self.unk_token)

    @property
    def bos_token_id(self) -> int | None:
        return self._token_id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._token_id(self.eos_token)

    @property
    def word_delimiter_token_id(self) -> int | None:
        return self._token_id(self.word_delimiter_token)

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self._to_id(tokens)
        return [self._to_id(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False) -> str | list[str]:
        """Vocabulary entries first, then added tokens; an unknown id is the unk token."""
        if isinstance(ids, int):
            return self._to_token(ids)
        special = set(self.all_special_ids)
        return [self._to_token(int(i)) for i in ids if not (skip_special_tokens and int(i) in special)]

    def _to_token(self, index: int) -> str:
        if index in self.decoder:
            return self.decoder[index]
        if index in self._added:
            return self._added[index].content
        return self.unk_token or ""

    # ----------------------------------------------------------------- encoding
    def tokenize(self, text: str) -> list[str]:
        """Characters, with added tokens whole and the whitespace around stripping tokens removed."""
        if not isinstance(text, str):
            raise TokenizerError(f"text must be a string, got {type(text).__name__}")
        pieces = list(self._split.split(text)) if self._split else [text]
        for i, piece in enumerate(pieces):
            token = self._added.get(self._added_encoder.get(piece, -1))
            if token is None or i % 2 == 0:
                continue
            if token.rstrip and i + 1 < len(pieces):
                pieces[i + 1] = pieces[i + 1].lstrip()
            if token.lstrip and i > 0:
                pieces[i - 1] = pieces[i - 1].rstrip()
        out: list[str] = []
        for i, piece in enumerate(pieces):
            if not piece:
                continue
            if i % 2 == 1:
                out.append(piece)
                continue
            if self.do_lower_case:
                piece = piece.upper()
            out.extend(piece.replace(" ", self.word_delimiter_token or " "))
        return out

    def encode(self, text: str) -> list[int]:
        return [self._to_id(token) for token in self.tokenize(text)]

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
    ) -> BatchEncoding:
        """``input_ids`` (and ``attention_mask``) of one text or a batch; labels for CTC training."""
        batched = not isinstance(text, str)
        texts: list[str] = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TokenizerError("text must be a string or a list of strings")
        if return_tensors not in (None, "pt"):
            raise TokenizerError(f"return_tensors={return_tensors!r} is not supported", hint='use "pt" or None')
        ids = [self.encode(t) for t in texts]
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 0
        ):
            raise TokenizerError(f"max_length must be a non-negative int, got {max_length!r}")
        if truncation:
            limit = max_length if max_length is not None else self.model_max_length
            ids = [seq[:limit] for seq in ids]
        target = _pad_length(padding, max_length, [len(seq) for seq in ids])
        masks = [[1] * len(seq) for seq in ids]
        if target is not None:
            if self.pad_token_id is None:
                raise TokenizerError("asked to pad but this tokenizer has no pad_token")
            for i, seq in enumerate(ids):
                extra = target - len(seq)
                if extra > 0:
                    pad, zeros = [self.pad_token_id] * extra, [0] * extra
                    left = self.padding_side == "left"
                    ids[i] = pad + seq if left else seq + pad
                    masks[i] = zeros + masks[i] if left else masks[i] + zeros
        data: dict[str, Any] = {"input_ids": ids}
        if return_attention_mask:
            data["attention_mask"] = masks
        if return_tensors == "pt":
            import torch

            if len({len(seq) for seq in ids}) > 1:
                raise TokenizerError("the texts have different lengths", hint="pass padding=True")
            return BatchEncoding({key: torch.tensor(value, dtype=torch.long) for key, value in data.items()})
        if not batched:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data)

    # ----------------------------------------------------------------- decoding
    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
    ) -> str | CTCDecoding:
        """CTC output ids (list or tensor) to text: repeats grouped, blanks (pad) dropped, ``|`` as a space.

        ``skip_special_tokens`` drops special tokens (not the delimiter) before grouping, as transformers does.
        With ``output_char_offsets`` / ``output_word_offsets`` a :class:`CTCDecoding` with the offsets in frames.
        """
        ids = _to_ids(token_ids)
        tokens = self.convert_ids_to_tokens(ids)
        special = set(self.all_special_tokens)
        kept = [t for t in tokens if not (skip_special_tokens and t in special and t != self.word_delimiter_token)]
        text, chars, words = self._join(
            kept,
            group_tokens,
            spaces_between_special_tokens,
            output_char_offsets or output_word_offsets,
            output_word_offsets,
        )
        cleanup = (
            self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        )
        if cleanup:
            text = clean_up_tokenization(text)
        if output_char_offsets or output_word_offsets:
            return CTCDecoding(text=text, char_offsets=chars if output_char_offsets else None, word_offsets=words)
        return text

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str] | CTCDecoding:
        """:meth:`decode` of each sequence; with offsets, one :class:`CTCDecoding` of lists."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        decoded = [self.decode(seq, **kwargs) for seq in sequences]
        if kwargs.get("output_char_offsets") or kwargs.get("output_word_offsets"):
            return CTCDecoding({key: [d[key] for d in decoded] for key in ("text", "char_offsets", "word_offsets")})  # type: ignore[index]
        return decoded  # type: ignore[return-value]

    def _join(
        self, tokens: list[str], group: bool, spaced: bool, offsets: bool, word_offsets: bool
    ) -> tuple[str, list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        if not tokens:
            return "", [] if offsets else None, [] if word_offsets else None
        if group:
            runs = [(token, len(list(run))) for token, run in itertools.groupby(tokens)]
        else:
            runs = [(token, 1) for token in tokens]
        chars = [token for token, _ in runs if token != self.pad_token]
        chars = [self.replace_word_delimiter_char if c == self.word_delimiter_token else c for c in chars]
        char_offsets = words = None
        if offsets:
            char_offsets, end = [], 0
            for token, count in runs:
                start, end = end, end + count
                if token != self.pad_token:
                    char_offsets.append({"char": token, "start_offset": start, "end_offset": end})
            for offset, char in zip(char_offsets, chars):
                offset["char"] = char
            if word_offsets:
                words = _word_offsets(char_offsets, self.replace_word_delimiter_char)
        text = (" " if spaced else "").join(chars).strip()
        if self.do_lower_case:
            text = text.lower()
        return text, char_offsets, words

    # --------------------------------------------------------------------- save
    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``vocab.json`` and ``tokenizer_config.json`` (transformers' Wav2Vec2CTCTokenizer reads them)."""
        target = Path(directory)
        config = {k: v for k, v in self._config.items() if k not in ("added_tokens_decoder", "name_or_path")}
        config.update(
            {name: getattr(self, name) for name in SPECIAL},
            word_delimiter_token=self.word_delimiter_token,
            replace_word_delimiter_char=self.replace_word_delimiter_char,
            do_lower_case=self.do_lower_case,
            target_lang=self.target_lang,
            model_max_length=self.model_max_length,
            padding_side=self.padding_side,
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
            tokenizer_class="Wav2Vec2CTCTokenizer",
            added_tokens_decoder={str(i): t.as_dict() for i, t in sorted(self._added.items())},
        )
        return [write_json(target / VOCAB_FILE, self.vocab), write_json(target / CONFIG_FILE, config)]

    save_pretrained = save

    def __repr__(self) -> str:
        return (
            f"Wav2Vec2CTCTokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"word_delimiter_token={self.word_delimiter_token!r}, pad_token={self.pad_token!r})"
        )


def _encoder(vocab: Mapping[str, Any], target_lang: str | None) -> dict[str, int]:
    nested = bool(vocab) and all(isinstance(v, Mapping) for v in vocab.values())
    if target_lang is not None:
        if not nested or target_lang not in vocab:
            choices = ", ".join(sorted(vocab)[:20]) if nested else "none: the vocabulary is not per language"
            raise TokenizerError(
                f"target_lang {target_lang!r} is not a language of vocab.json", hint=f"languages: {choices}"
            )
        vocab = vocab[target_lang]
    elif nested:
        raise TokenizerError(
            "vocab.json holds one vocabulary per language: say which with target_lang",
            hint=f"pass target_lang=..., one of {', '.join(sorted(vocab)[:20])}",
        )
    out: dict[str, int] = {}
    for token, index in vocab.items():
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise TokenizerError(f"vocab.json maps {token!r} to {index!r}; ids are non-negative integers")
        out[token] = index
    return out


def _token_content(value: Any, key: str, path: Path) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    raise TokenizerFileError(f"{key} must be a string, found {value!r}", file=path)


def _added_tokens(config: Mapping[str, Any], path: Path) -> dict[int, AddedToken]:
    raw = config.get("added_tokens_decoder") or {}
    if not isinstance(raw, Mapping):
        raise TokenizerFileError("added_tokens_decoder must be an object of id -> token", file=path)
    out: dict[int, AddedToken] = {}
    for key, value in raw.items():
        try:
            index = int(key)
        except ValueError:
            raise TokenizerFileError(f"added_tokens_decoder key {key!r} is not an id", file=path) from None
        if not isinstance(value, Mapping) or not isinstance(value.get("content"), str):
            raise TokenizerFileError(f"added_tokens_decoder[{key}] must have a string content", file=path)
        out[index] = AddedToken(
            value["content"], bool(value.get("lstrip")), bool(value.get("rstrip")), bool(value.get("special"))
        )
    return out


def _to_ids(token_ids: Any) -> list[int]:
    if hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int):
        return [token_ids]
    try:
        return [int(i) for i in token_ids]
    except (TypeError, ValueError):
        raise TokenizerError(f"decode takes a sequence of token ids, got {type(token_ids).__name__}") from None


def _pad_length(padding: bool | str, max_length: int | None, lengths: list[int]) -> int | None:
    if padding is True or padding == "longest":
        return max(lengths, default=0)
    if padding == "max_length":
        if max_length is None:
            raise TokenizerError("padding='max_length' needs max_length")
        return max_length
    if padding is False or padding == "do_not_pad":
        return None
    raise TokenizerError(f"padding={padding!r} is not understood", hint='use False, True / "longest", or "max_length"')


def _word_offsets(offsets: list[dict[str, Any]], delimiter: str) -> list[dict[str, Any]]:
    """Words and their frame spans from character offsets (transformers' _get_word_offsets)."""
    words: list[dict[str, Any]] = []
    state, word, start, end = "SPACE", "", 0, 0
    for offset in offsets:
        char = offset["char"]
        now = "SPACE" if char == delimiter else "WORD"
        if now == state:
            end = offset["end_offset"]
            word += char
            continue
        if now == "SPACE":
            words.append({"word": word, "start_offset": start, "end_offset": end})
        else:
            start, end, word = offset["start_offset"], offset["end_offset"], char
        state = now
    if state == "WORD":
        words.append({"word": word, "start_offset": start, "end_offset": end})
    return words
