"""Phi-3 decoders (and Phi-4-mini, which shares ``model_type: phi3``), on the shared decoder of
:mod:`factory.models.llama`.

What Phi-3 changes in the Llama decoder, as transformers 5.23 implements it:

- fused projections, loaded as the checkpoints store them: ``self_attn.qkv_proj`` (queries,
  then keys, then values) and ``mlp.gate_up_proj`` (gate, then up);
- long rope: ``rope_parameters`` (older files: ``rope_scaling``) of type ``longrope`` (``su`` and
  ``yarn`` are read as ``longrope``, as transformers does) scale each frequency by
  ``short_factor``, or by ``long_factor`` for a forward whose positions reach beyond
  ``original_max_position_embeddings``, the cos/sin scaled by ``attention_factor``
  (default ``sqrt(1 + log(factor) / log(original))``); ``generate`` rebuilds its cache once
  when the sequence grows past that length, as transformers' Phi-3 does;
- partial rotary (``partial_rotary_factor``, Phi-4-mini): only the first
  ``head_dim * factor`` dimensions of each head rotate;
- dropout on both residual branches (``resid_pdrop``); ``sliding_window`` on every layer when set.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from factory.models.llama import (
    _ACTIVATIONS,
    Attention,
    DecoderForCausalLM,
    DecoderForSequenceClassification,
    DecoderForTokenClassification,
    DecoderLayer,
    DecoderModel,
    _DecoderConfig,
    _head_dim,
)


class Phi3Config(_DecoderConfig):
    model_type = "phi3"
    vocab_size: int = 32064
    hidden_size: int = 3072
    intermediate_size: int = 8192
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    resid_pdrop: float = 0.0
    embd_pdrop: float = 0.0
    max_position_embeddings: int = 4096
    original_max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    bos_token_id: int | None = 1
    eos_token_id: Any = 32000
    pad_token_id: int | None = 32000
    sliding_window: int | None = None

    def _standard_rope(self, rope: dict[str, Any], rope_theta: float | None) -> dict[str, Any]:
        rope.setdefault("partial_rotary_factor", getattr(self, "partial_rotary_factor", None) or 1.0)
        if rope.get("rope_type", rope.get("type")) in ("su", "yarn"):
            rope["rope_type"] = "longrope"
        return super()._standard_rope(rope, rope_theta)

    def _rotary_dim(self) -> int:
        return int(_head_dim(self) * self.rope_parameters.get("partial_rotary_factor", 1.0))

    def _layer_windows(self) -> list[int | None]:
        return [self.sliding_window] * self.num_hidden_layers


class Phi3Attention(Attention):
    """Llama attention whose query, key and value projections are one ``qkv_proj``."""

    def init_projections(self, config: _DecoderConfig) -> None:
        queries, keys = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = nn.Linear(config.hidden_size, queries + 2 * keys, bias=False)
        self.o_proj = nn.Linear(queries, config.hidden_size, bias=False)

    def project(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keys = self.num_kv_heads * self.head_dim
        q, k, v = self.qkv_proj(hidden_states).split([self.num_heads * self.head_dim, keys, keys], dim=-1)
        shape = (*hidden_states.shape[:2], -1, self.head_dim)
        return q.view(shape), k.view(shape), v.view(shape)


class Phi3MLP(nn.Module):
    """``down(up * act(gate))`` with gate and up in one ``gate_up_proj``."""

    def __init__(self, config: _DecoderConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act = _ACTIVATIONS[config._activation()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        out: torch.Tensor = self.down_proj(up * self.act(gate))
        return out


class Phi3DecoderLayer(DecoderLayer):
    attention_class = Phi3Attention

    def __init__(self, config: Phi3Config, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.resid_attn_dropout = nn.Dropout(config.resid_pdrop)
        self.resid_mlp_dropout = nn.Dropout(config.resid_pdrop)

    def feed_forward(self, config: _DecoderConfig, layer_idx: int) -> nn.Module:
        return Phi3MLP(config)

    def attention_branch(self, attn: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.resid_attn_dropout(attn)
        return out

    def feed_forward_branch(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.resid_mlp_dropout(super().feed_forward_branch(hidden_states))
        return out


class Phi3Model(DecoderModel):
    config_class = Phi3Config
    layer_class = Phi3DecoderLayer


class Phi3ForCausalLM(DecoderForCausalLM):
    config_class, trunk_class = Phi3Config, Phi3Model

    def keeps_cache(self, cached: int, length: int) -> bool:
        """transformers' Phi-3 recomputes the cache once, at the step the sequence outgrows
        ``original_max_position_embeddings`` (where long rope switches to the long factors)."""
        original = self.config.original_max_position_embeddings
        return not (length >= original + 1 and cached <= original)


class Phi3ForSequenceClassification(DecoderForSequenceClassification):
    config_class, trunk_class = Phi3Config, Phi3Model


class Phi3ForTokenClassification(DecoderForTokenClassification):
    config_class, trunk_class = Phi3Config, Phi3Model
