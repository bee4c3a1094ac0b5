"""CLIP's tokenizer: the byte-level BPE :class:`~factory.components.tokenizer.Tokenizer` with CLIP's decoding.

transformers' ``CLIPTokenizer`` turns the BPE end-of-word suffix (``</w>``) into a space when it decodes and
strips the result; this class does the same, so ``decode`` / ``batch_decode`` give transformers' text.
Encoding is the tokenizer.json pipeline, unchanged.
"""

from __future__ import annotations

from typing import Any

from factory.components.tokenizer import Tokenizer

__all__ = ["CLIPTokenizer"]


class CLIPTokenizer(Tokenizer):
    """A :class:`Tokenizer` whose decoding drops CLIP's ``</w>`` word-end markers."""

    def decode(
        self, ids: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> str | list[str]:
        text = super().decode(ids, skip_special_tokens, clean_up_tokenization_spaces)
        if isinstance(text, list):  # a batch: each sequence went through this method already
            return text
        suffix = getattr(self.backend.model, "end_of_word_suffix", None)
        return text.replace(suffix, " ").strip() if suffix else text
