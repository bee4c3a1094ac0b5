"""Tiny checkpoints saved by transformers' own ``save_pretrained``, for the build tests."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, max_position_embeddings=64)


def save_pretrained(model: Any, directory: Path) -> str:
    """``model.save_pretrained(directory)`` without its warnings; the directory as a string."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(directory)
    return str(directory)


def tiny_llama(directory: Path, **config: Any) -> str:
    """A 2-layer Llama causal LM (GQA: 4 heads, 2 kv heads by default) saved by transformers."""
    import torch
    import transformers

    torch.manual_seed(0)
    options = {**LLAMA, "num_attention_heads": 4, "num_key_value_heads": 2, **config}
    return save_pretrained(transformers.LlamaForCausalLM(transformers.LlamaConfig(**options)), directory)
