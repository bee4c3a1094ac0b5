"""Gemma decoders: Gemma, Gemma 2 and Gemma 3 (text), on the shared decoder of :mod:`factory.models.llama`.

What Gemma changes in the Llama decoder, as transformers 5.23 implements it:

- RMSNorm scales by ``1 + weight`` (zero-initialised), computed in float32 and cast at the end;
- token embeddings are multiplied by ``sqrt(hidden_size)``, the factor first rounded to the
  weights' dtype (``inputs_embeds`` passed by the caller are not scaled);
- the MLP is GeGLU (``gelu_pytorch_tanh``; Gemma's legacy ``gelu`` means the same);
- Gemma 2 and 3: a norm after attention and around the MLP (four per layer), queries scaled by
  ``query_pre_attn_scalar ** -0.5``, sliding-window and global layers per ``layer_types``,
  final logits soft-capped (``tanh(x / cap) * cap``) when ``final_logit_softcapping`` is set;
- Gemma 2: attention logits soft-capped (``attn_logit_softcapping``) before the mask, which
  SDPA cannot do, so those layers attend in plain torch ops as transformers' eager path does;
- Gemma 3: per-head RMSNorm of queries and keys, and two rotary embeddings: the global one
  (``rope_parameters["full_attention"]``, theta 1e6, possibly scaled) and the local one of
  sliding layers (``rope_parameters["sliding_attention"]``, older files' ``rope_local_base_freq``);
  ``use_bidirectional_attention`` (EmbeddingGemma) attends both ways, sliding layers within
  ``sliding_window // 2 + 1`` tokens.

Parameter names equal transformers' checkpoint keys; the key/value cache is the Llama one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError
from factory.models import heads
from factory.models.llama import (
    Attention,
    DecoderForCausalLM,
    DecoderForSequenceClassification,
    DecoderForTokenClassification,
    DecoderLayer,
    DecoderModel,
    RMSNorm,
    RotaryEmbedding,
    _DecoderConfig,
    _head_dim,
    check_config,
    layer_type_windows,
)

_LAYER_TYPES = ("full_attention", "sliding_attention")


# --- configs ------------------------------------------------------------------
class GemmaConfig(_DecoderConfig):
    model_type = "gemma"
    vocab_size: int = 256000
    hidden_size: int = 3072
    intermediate_size: int = 24576
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    head_dim: int = 256
    hidden_act: str = "gelu_pytorch_tanh"
    max_position_embeddings: int = 8192
    pad_token_id: int | None = 0
    eos_token_id: Any = 1
    bos_token_id: int | None = 2
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    use_bidirectional_attention: bool | None = None

    def _attention_bias(self) -> tuple[bool, bool]:
        return bool(self.attention_bias), bool(self.attention_bias)

    def _activation(self) -> str:
        name = super()._activation()
        return "gelu_pytorch_tanh" if name == "gelu" else name  # transformers rewrites Gemma's legacy value

    def _query_scale(self) -> float:
        return float(_head_dim(self) ** -0.5)

    def _attention_softcap(self) -> float | None:
        return None

    def _final_softcap(self) -> float | None:
        return None


class Gemma2Config(GemmaConfig):
    model_type = "gemma2"
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    hidden_activation: str = "gelu_pytorch_tanh"
    query_pre_attn_scalar: int = 256
    sliding_window: int | None = 4096
    layer_types: list[str] = None  # type: ignore[assignment]  # derived in __init__
    final_logit_softcapping: float | None = 30.0
    attn_logit_softcapping: float | None = 50.0

    _activation_key: ClassVar[str] = "hidden_activation"
    #: Every how many layers a global one comes (the others slide), when config.json has no layer_types.
    _sliding_pattern: ClassVar[int] = 2

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.layer_types is None:
            pattern = getattr(self, "sliding_window_pattern", None) or self._sliding_pattern
            self.layer_types = [
                "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(self.num_hidden_layers)
            ]

    def _activation(self) -> str:
        return str(self.hidden_activation)

    def _layer_windows(self) -> list[int | None]:
        return layer_type_windows(self)

    def _query_scale(self) -> float:
        return float(self.query_pre_attn_scalar**-0.5)

    def _attention_softcap(self) -> float | None:
        return self.attn_logit_softcapping

    def _final_softcap(self) -> float | None:
        return self.final_logit_softcapping


class Gemma3TextConfig(Gemma2Config):
    """Gemma 3's text decoder. ``rope_parameters`` holds one dict per layer type, as transformers 5 writes it."""

    model_type = "gemma3_text"
    vocab_size: int = 262208
    max_position_embeddings: int = 131072
    final_logit_softcapping: float | None = None
    attn_logit_softcapping: float | None = None
    use_bidirectional_attention: bool | None = False

    _qk_norm: ClassVar[bool] = True
    _sliding_pattern: ClassVar[int] = 6
    _default_thetas: ClassVar[dict[str, float]] = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}

    def __init__(self, **kwargs: Any) -> None:
        self._local_theta = kwargs.pop("rope_local_base_freq", None)
        super().__init__(**kwargs)
        del self._local_theta

    def _rope_parameters(self, rope_scaling: Mapping[str, Any] | None, rope_theta: float | None) -> dict[str, Any]:
        """Per layer type; older files' ``rope_scaling`` scales the global rope only (as transformers reads it)."""
        given = self.rope_parameters
        if given is not None and not all(kind in _LAYER_TYPES for kind in given):
            raise ConfigError(
                f"{type(self).__name__}: rope_parameters must map {list(_LAYER_TYPES)} to rope dicts, got {given!r}",
                hint="write rope_parameters as transformers 5 does, or use rope_theta/rope_local_base_freq",
            )
        rope: dict[str, dict[str, Any]] = {
            kind: dict(params) if params else {"rope_type": "default"} for kind, params in (given or {}).items()
        }
        for kind in _LAYER_TYPES:
            rope.setdefault(kind, {"rope_type": "default"})
        if rope_scaling:
            rope["full_attention"].update(rope_scaling)
        thetas = {"full_attention": rope_theta, "sliding_attention": self._local_theta}
        for kind in _LAYER_TYPES:
            theta = thetas[kind]
            rope[kind].setdefault("rope_theta", self._default_thetas[kind] if theta is None else theta)
            rope[kind] = self._standard_rope(rope[kind], None)
        return rope

    def _final_softcap(self) -> float | None:
        return self.final_logit_softcapping

    def _attention_softcap(self) -> float | None:
        return None  # transformers' Gemma 3 reads attn_logit_softcapping but never applies it


def rope_view(config: Gemma3TextConfig, layer_type: str) -> Gemma3TextConfig:
    """A copy of ``config`` whose ``rope_parameters`` are those of one layer type (what the Llama rope reads)."""
    view = copy.copy(config)
    view.rope_parameters = config.rope_parameters[layer_type]
    return view


# --- layers ---------------------------------------------------------------------
class GemmaRMSNorm(RMSNorm):
    """``x / rms(x) * (1 + weight)`` in float32, cast to the input dtype at the end."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__(dim, eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), self.weight.shape, eps=self.eps)
        return (normed * (1.0 + self.weight.float())).to(x.dtype)


class ScaledEmbedding(nn.Embedding):
    """Token embeddings times ``sqrt(embedding_dim)``, the factor rounded to the weights' dtype first."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = super().forward(input_ids)
        return out * torch.tensor(self.embedding_dim**0.5, dtype=out.dtype)


class LogitSoftCap(nn.Module):
    """``tanh(x / cap) * cap``: logits squashed smoothly into ``(-cap, cap)``."""

    def __init__(self, cap: float) -> None:
        super().__init__()
        self.cap = cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / self.cap) * self.cap

    def extra_repr(self) -> str:
        return f"cap={self.cap}"


def final_softcap(config: GemmaConfig) -> nn.Module:
    """The head layer after ``lm_head``: :class:`LogitSoftCap` when the config sets a cap, else identity."""
    cap = config._final_softcap()
    return nn.Identity() if cap is None else LogitSoftCap(cap)


class GemmaAttention(Attention):
    """Llama attention with Gemma's query scale, q/k norms and (Gemma 2) soft-capped attention logits."""

    norm_class = GemmaRMSNorm

    def __init__(self, config: GemmaConfig, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.scaling = config._query_scale()
        self.softcap = config._attention_softcap()

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.softcap is None:
            return super()._attend(q, k, v, mask)
        # transformers' eager path: scores, cap, mask (dtype minimum), float32 softmax, values.
        groups = q.shape[1] // k.shape[1]  # from the tensors: a tensor-parallel rank holds a share of the heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        scores = torch.tanh(scores / self.softcap) * self.softcap
        if mask is None and q.shape[2] > 1:  # causal_mask leaves plain causal attention to SDPA's is_causal
            mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril(k.shape[2] - q.shape[2])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        return torch.matmul(weights, v)


class GemmaDecoderLayer(DecoderLayer):
    attention_class = GemmaAttention
    norm_class = GemmaRMSNorm


class Gemma2DecoderLayer(GemmaDecoderLayer):
    """Sandwich norms: ``x + norm(attn(norm(x)))``, then ``x + norm(mlp(norm(x)))``."""

    mlp: nn.Module

    def __init__(self, config: _DecoderConfig, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.pre_feedforward_layernorm = self.norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.post_feedforward_layernorm = self.norm_class(config.hidden_size, eps=config.rms_norm_eps)

    def attention_branch(self, attn: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.post_attention_layernorm(attn)
        return out

    def feed_forward_branch(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(hidden_states)))
        return out


# --- models -----------------------------------------------------------------------
class GemmaModel(DecoderModel):
    config_class = GemmaConfig
    embedding_class = ScaledEmbedding
    layer_class = GemmaDecoderLayer

    @staticmethod
    def check_config(config: Any) -> None:
        if config.use_bidirectional_attention and config.model_type != "gemma3_text":
            raise ConfigError(
                f"{type(config).__name__}: use_bidirectional_attention is only supported for gemma3_text",
                hint="set use_bidirectional_attention to null for a causal decoder",
            )
        check_config(config)


class Gemma2Model(GemmaModel):
    config_class = Gemma2Config
    layer_class = Gemma2DecoderLayer


class Gemma3RotaryEmbeddings(nn.ModuleDict):
    """One :class:`RotaryEmbedding` per layer type: the global one and the local one of sliding layers."""

    def __init__(self, config: Gemma3TextConfig) -> None:
        super().__init__({kind: RotaryEmbedding(rope_view(config, kind)) for kind in sorted(set(config.layer_types))})

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {kind: rotary(position_ids, dtype) for kind, rotary in self.items()}


class Gemma3TextModel(Gemma2Model):
    """Gemma 3's text decoder; ``rotary_emb`` holds one rotary embedding per layer type."""

    config_class = Gemma3TextConfig
    rotary_class = Gemma3RotaryEmbeddings

    def __init__(self, config: _DecoderConfig) -> None:
        super().__init__(config)
        if config.use_bidirectional_attention:
            self.mask_function = bidirectional_mask

    @staticmethod
    def check_config(config: Any) -> None:
        layer_type_windows(config)
        for kind in sorted(set(config.layer_types)):
            try:
                check_config(rope_view(config, kind))
            except ConfigError as err:
                raise ConfigError(f"{err.message} (rope_parameters[{kind!r}])", hint=err.hint) from None

    def layer_positions(
        self, position_ids: torch.Tensor, dtype: torch.dtype
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        by_kind = self.rotary_emb(position_ids, dtype)
        return [by_kind[kind] for kind in self.config.layer_types]


def bidirectional_mask(
    attention_mask: torch.Tensor | None,
    query_length: int,
    past_length: int,
    window: int | None,
    device: torch.device,
) -> torch.Tensor:
    """Boolean mask ``[batch or 1, 1, query, past + query]``: every token (``window``: within
    ``window // 2 + 1`` positions either way, EmbeddingGemma's window), padding excluded."""
    kv_length = past_length + query_length
    mask = torch.ones(1, 1, query_length, kv_length, dtype=torch.bool, device=device)
    if window is not None:
        q_index = torch.arange(past_length, kv_length, device=device)[:, None]
        kv_index = torch.arange(kv_length, device=device)[None, :]
        mask = mask & ((q_index - kv_index).abs() < window // 2 + 1)
    if attention_mask is not None:
        mask = mask & attention_mask[:, None, None, :].bool()
    return mask


# --- task heads ---------------------------------------------------------------------
class GemmaForCausalLM(DecoderForCausalLM):
    config_class, trunk_class = GemmaConfig, GemmaModel


class GemmaForSequenceClassification(DecoderForSequenceClassification):
    config_class, trunk_class = GemmaConfig, GemmaModel


class GemmaForTokenClassification(DecoderForTokenClassification):
    config_class, trunk_class = GemmaConfig, GemmaModel


class Gemma2ForCausalLM(DecoderForCausalLM):
    """Next-token logits, soft-capped by ``final_logit_softcapping`` (also in the loss)."""

    config_class, trunk_class = Gemma2Config, Gemma2Model
    head_layers = {**heads.CausalLM.head_layers, "final_logit_softcap": final_softcap}


class Gemma2ForSequenceClassification(DecoderForSequenceClassification):
    config_class, trunk_class = Gemma2Config, Gemma2Model


class Gemma2ForTokenClassification(DecoderForTokenClassification):
    config_class, trunk_class = Gemma2Config, Gemma2Model


class Gemma3ForCausalLM(Gemma2ForCausalLM):
    config_class, trunk_class = Gemma3TextConfig, Gemma3TextModel


class Gemma3TextForSequenceClassification(DecoderForSequenceClassification):
    config_class, trunk_class = Gemma3TextConfig, Gemma3TextModel
