"""Whisper's tokenizer: the byte-level BPE :class:`~factory.components.tokenizer.Tokenizer` plus Whisper's
decoding rules and prompt tokens, as transformers' ``WhisperTokenizer``.

Decoding drops a previous-text prompt (``<|startofprev|> ...`` up to ``<|startoftranscript|>``) with
``skip_special_tokens``, removes timestamp tokens (``<|1.08|>``) from the text unless
``decode_with_timestamps``, and gives segment offsets with ``output_offsets``. The prefix
(``<|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>``) follows ``language``, ``task`` and
``predict_timestamps`` (tokenizer_config.json, :meth:`set_prefix_tokens`); :meth:`get_decoder_prompt_ids`
gives the forced decoder ids transformers gives. Languages and tasks are data
(``whisper_languages.json``, from transformers 5.23).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import processors

from factory.components.tokenizer import Tokenizer
from factory.errors import TokenizerError

__all__ = ["WhisperTokenizer", "language_code"]

_DATA = Path(__file__).with_name("whisper_languages.json")
TIMESTAMP = re.compile(r"<\|(\d+\.\d+)\|>")


@lru_cache(maxsize=1)
def _languages() -> dict[str, Any]:
    with open(_DATA, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    codes = [code for code, _ in data["languages"]]
    names = {name: code for code, name in data["languages"]}
    return {"codes": codes, "to_code": {**names, **data["aliases"]}, "tasks": tuple(data["tasks"])}


def language_code(language: str) -> str:
    """A Whisper language code from a code (``"en"``) or a name (``"english"``, ``"mandarin"``)."""
    table = _languages()
    lowered = language.lower()
    if lowered in table["to_code"]:
        return str(table["to_code"][lowered])
    if lowered in table["codes"]:
        return lowered
    shown = table["codes"] if len(lowered) == 2 else sorted(table["to_code"])
    raise TokenizerError(f"unsupported language {language!r}", hint=f"Whisper knows: {', '.join(shown)}")


class WhisperTokenizer(Tokenizer):
    """A :class:`Tokenizer` with Whisper's ``decode``/``batch_decode`` and prompt tokens."""

    language: str | None = None
    task: str | None = None
    predict_timestamps: bool = False

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], **overrides: Any) -> WhisperTokenizer:
        """Load a Whisper tokenizer (tokenizer.json + tokenizer_config.json) as transformers saves it."""
        tokenizer = super().from_directory(path, **overrides)
        assert isinstance(tokenizer, WhisperTokenizer)
        config = tokenizer._config
        tokenizer.language = config.get("language")
        tokenizer.task = config.get("task")
        tokenizer.predict_timestamps = bool(config.get("predict_timestamps", False))
        tokenizer.set_prefix_tokens()  # as transformers' __init__: the prefix follows the config, not the file
        return tokenizer

    from_pretrained = from_directory

    # ------------------------------------------------------------------ prefix
    @property
    def prefix_tokens(self) -> list[int]:
        """``<|startoftranscript|>``, then the language, the task and ``<|notimestamps|>`` as configured."""
        return self._prefix(self.language, self.task, self.predict_timestamps)

    def _prefix(self, language: str | None, task: str | None, predict_timestamps: bool) -> list[int]:
        ids = [self._required_id("<|startoftranscript|>")]
        if language is not None:
            ids.append(self._required_id(f"<|{language_code(language)}|>"))
        if task is not None:
            if task not in _languages()["tasks"]:
                raise TokenizerError(f"unsupported task {task!r}", hint="use 'transcribe' or 'translate'")
            ids.append(self._required_id(f"<|{task}|>"))
        if not predict_timestamps:
            ids.append(self._required_id("<|notimestamps|>"))
        return ids

    def _required_id(self, token: str) -> int:
        found = self._to_id(token)
        if found is None:
            raise TokenizerError(f"this tokenizer has no {token} token", hint="is it a Whisper tokenizer?")
        return found

    def set_prefix_tokens(
        self, language: str | None = None, task: str | None = None, predict_timestamps: bool | None = None
    ) -> None:
        """Change the prefix encoding adds (``<|startoftranscript|> <|lang|> <|task|> [<|notimestamps|>]``)."""
        language = language if language is not None else self.language
        task = task if task is not None else self.task
        predict_timestamps = self.predict_timestamps if predict_timestamps is None else predict_timestamps
        prefix = self._prefix(language, task, predict_timestamps)  # checked before anything changes
        self.language, self.task, self.predict_timestamps = language, task, predict_timestamps
        names = [self._backend.id_to_token(i) for i in prefix]
        eos, eos_id = self.eos_token, self.eos_token_id
        template = " ".join(f"{name}:0" for name in names)
        self._backend.post_processor = processors.TemplateProcessing(
            single=f"{template} $A:0 {eos}:0",
            pair=f"{template} $A:0 $B:1 {eos}:1",
            special_tokens=[(eos, eos_id), *zip(names, prefix)],
        )

    def get_decoder_prompt_ids(
        self, task: str | None = None, language: str | None = None, no_timestamps: bool = True
    ) -> list[tuple[int, int]]:
        """Forced decoder ids ``[(1, <|lang|>), (2, <|task|>), (3, <|notimestamps|>)]`` (sets the prefix too)."""
        self.set_prefix_tokens(task=task, language=language, predict_timestamps=not no_timestamps)
        return [(rank + 1, token) for rank, token in enumerate(self.prefix_tokens[1:])]

    def get_prompt_ids(self, text: str, return_tensors: str | None = None) -> Any:
        """``<|startofprev|>`` and ``text`` as ids, for generate's ``prompt_ids``."""
        ids = self("<|startofprev|>", " " + text.strip(), add_special_tokens=False)["input_ids"]
        special = self.all_special_ids
        first = min(special) if special else None
        banned = next((i for i in ids[1:] if first is not None and i >= first), None)
        if banned is not None:
            raise TokenizerError(f"the prompt holds the special token {self.convert_ids_to_tokens(banned)}")
        if return_tensors == "pt":
            import torch

            return torch.tensor(ids, dtype=torch.long)
        return ids

    # ---------------------------------------------------------------- decoding
    @property
    def timestamp_begin(self) -> int:
        """The first timestamp token's id (transformers: one past the last special token)."""
        return max(self.all_special_ids) + 1

    def decode(
        self,
        ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_offsets: bool = False,
        time_precision: float = 0.02,
        decode_with_timestamps: bool = False,
        normalize: bool = False,
        basic_normalize: bool = False,
        remove_diacritics: bool = False,
    ) -> Any:
        """Ids to text as transformers' WhisperTokenizer.decode (a batch gives a list).

        ``normalize`` / ``basic_normalize`` (transformers' English and basic text normalisers) are not
        implemented and raise :class:`TokenizerError`.
        """
        if normalize or basic_normalize or remove_diacritics:
            raise TokenizerError(
                "normalize / basic_normalize are not implemented by factory's WhisperTokenizer",
                hint="normalise the decoded text yourself (e.g. transformers' EnglishTextNormalizer)",
            )
        ids = _to_list(ids)
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], list):
            # as transformers: a batch is decoded without removing prompts, and without offsets
            if output_offsets:
                raise TokenizerError("output_offsets works on one sequence at a time", hint="decode each sequence")
            if decode_with_timestamps:
                return [
                    self._decode_with_timestamps(seq, skip_special_tokens, clean_up_tokenization_spaces, time_precision)
                    for seq in ids
                ]
            return [
                TIMESTAMP.sub("", self._plain(seq, skip_special_tokens, clean_up_tokenization_spaces)) for seq in ids
            ]
        kept = self._strip_prompt(ids) if skip_special_tokens else ids
        if decode_with_timestamps:
            text = self._decode_with_timestamps(kept, skip_special_tokens, clean_up_tokenization_spaces, time_precision)
        else:
            text = TIMESTAMP.sub("", self._plain(kept, skip_special_tokens, clean_up_tokenization_spaces))
        if output_offsets:
            return {"text": text, "offsets": self._offsets(ids, time_precision)}
        return text

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, **kwargs: Any) -> list[Any]:  # type: ignore[override]
        """:meth:`decode` of a batch (as transformers: prompts are not removed; see :meth:`decode`)."""
        sequences = _to_list(sequences)
        if not sequences:
            return []
        batch = [_to_list(seq) for seq in sequences]
        decoded = self.decode(batch, skip_special_tokens, **kwargs)
        return decoded if isinstance(decoded, list) else [decoded]

    def _plain(self, ids: list[int], skip_special_tokens: bool = False, cleanup: bool | None = None) -> str:
        """The tokenizers library's decoding, without Whisper's rules."""
        return str(Tokenizer.decode(self, ids, skip_special_tokens, cleanup))

    def _strip_prompt(self, ids: list[int]) -> list[int]:
        if not ids or ids[0] != self._to_id("<|startofprev|>"):
            return ids
        start = self._to_id("<|startoftranscript|>")
        return ids[ids.index(start) :] if start in ids else []

    def _decode_with_timestamps(
        self,
        ids: list[int],
        skip_special_tokens: bool,
        cleanup: bool | None,
        time_precision: float,
        segment_size: int = 1500,
    ) -> str:
        """Text with ``<|t|>`` timestamps, times continuing across 30-second segments (transformers' legacy)."""
        begin = self.timestamp_begin
        outputs: list[Any] = [[]]
        cur_max = prev_len = penultimate = 0.0
        for i, token in enumerate(ids):
            if token < begin:
                outputs[-1].append(token)
                continue
            timestamp = float((token - begin) * time_precision)
            if timestamp < cur_max:
                single_ending = i >= 2 and not (ids[i - 1] >= begin and ids[i - 2] >= begin)
                if single_ending:
                    prev_len += time_precision * segment_size
                else:
                    cur_max = penultimate
                    prev_len += penultimate
                    outputs = outputs[:-2]
            penultimate, cur_max = cur_max, timestamp
            outputs.append(f"<|{(timestamp + prev_len):.2f}|>")
            outputs.append([])
        parts = [
            part if isinstance(part, str) else self._plain(part, skip_special_tokens, cleanup) if part else ""
            for part in outputs
        ]
        return "".join(parts)

    def _offsets(self, ids: list[int], time_precision: float, segment_size: int = 1500) -> list[dict[str, Any]]:
        """Segments between timestamp tokens: their text and (start, end) seconds (transformers' _compute_offsets)."""
        begin = self.timestamp_begin
        is_time = [token >= begin for token in ids]
        consecutive = [i + 1 for i in range(len(ids) - 1) if is_time[i] and is_time[i + 1]]
        positions = [i for i, flag in enumerate(is_time) if flag]
        if not consecutive and len(positions) <= 1:
            return []
        if positions[-1] + 1 not in consecutive:
            consecutive.append(positions[-1] + 1)
        offsets = []
        last, cur_max, prev_len = positions[0], 0, 0
        for current in consecutive:
            sliced = ids[last:current]
            if len(sliced) > 1:
                start, end = sliced[0] - begin, sliced[-1] - begin
                if start < cur_max:
                    single_ending = last >= 2 and not (ids[last - 2] >= begin and ids[last - 1] >= begin)
                    prev_len += segment_size if single_ending else cur_max
                cur_max = end
                text = TIMESTAMP.sub("", self._plain(sliced))
                offsets.append(
                    {
                        "text": text,
                        "timestamp": (
                            start * time_precision + prev_len * time_precision,
                            end * time_precision + prev_len * time_precision,
                        ),
                    }
                )
            last = current
        return offsets


def _to_list(ids: Any) -> Any:
    if hasattr(ids, "tolist"):
        return ids.tolist()
    if isinstance(ids, tuple):
        return list(ids)
    return ids
