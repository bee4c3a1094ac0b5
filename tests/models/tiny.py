"""Tiny configurations (keyword arguments, valid for factory's and transformers' config classes alike) for
tests that need a small model of a family and nothing particular about it."""

from __future__ import annotations

TINY_BERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    vocab_size=99,
    max_position_embeddings=64,
)
TINY_LLAMA = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=99,
)
