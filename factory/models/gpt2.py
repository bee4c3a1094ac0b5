"""GPT-2 in plain torch, loadable from the checkpoints transformers saves.

Parameter names and shapes follow transformers' GPT-2 exactly, including the
``Conv1D`` layout (``transformer.h.0.attn.c_attn.weight`` is ``[in, out]``).
Attention runs through ``scaled_dot_product_attention`` with a causal mask
plus the padding mask; with past keys/values it extends a KV cache laid out as
``factory.models.generation`` expects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.outputs import BaseModelOutput

KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]


class GPT2Config(Config):
    """GPT-2 hyper-parameters with transformers' defaults and key names."""

    model_type = "gpt2"
    attribute_map = {
        "n_embd": "hidden_size",
        "n_layer": "num_hidden_layers",
        "n_head": "num_attention_heads",
        "n_positions": "max_position_embeddings",
    }

    vocab_size: int = 50257
    max_position_embeddings: int = 1024
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    scale_attn_weights: bool = True
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    pad_token_id: int | None = None
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Written with transformers' key names (``n_embd``, ``n_layer``, ...)."""
        out = super().to_dict()
        for checkpoint_name, name in self.attribute_map.items():
            out[checkpoint_name] = out.pop(name)
        return out


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": lambda: nn.GELU(),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_fast": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "quick_gelu": _QuickGELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ConfigError(
            f"GPT-2 activation_function {name!r} is not supported; known: {sorted(_ACTIVATIONS)}",
            hint="fix activation_function in config.json",
        )
    return _ACTIVATIONS[name]()


class Conv1D(nn.Module):
    """A linear layer whose weight is stored ``[in_features, out_features]`` (GPT-2's layout)."""

    def __init__(self, out_features: int, in_features: int) -> None:
        super().__init__()
        self.nf = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight)
        return out.view(*x.shape[:-1], -1)  # -1: a tensor-parallel rank holds a share of the outputs


class GPT2Attention(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ConfigError(
                f"GPT-2 n_embd ({self.embed_dim}) must be divisible by n_head ({self.num_heads})",
                hint="fix n_embd / n_head in config.json",
            )
        self.scaling = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scaling /= float(layer_idx + 1)
        self.upcast = config.reorder_and_upcast_attn
        self.attn_pdrop = config.attn_pdrop
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        layer_past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch, seq, _ = hidden_states.shape
        q, k, v = (  # -1 heads: a tensor-parallel rank holds a share of them
            t.view(batch, seq, -1, self.head_dim).transpose(1, 2) for t in self.c_attn(hidden_states).chunk(3, dim=2)
        )
        if layer_past is not None:
            k = torch.cat([layer_past[0], k], dim=2)
            v = torch.cat([layer_past[1], v], dim=2)
        present = (k, v)
        dtype = q.dtype
        if self.upcast and dtype in (torch.float16, torch.bfloat16):
            q, k, v = q.float(), k.float(), v.float()
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_pdrop if self.training else 0.0,
            is_causal=is_causal,
            scale=self.scaling,
        ).to(dtype)
        out = out.transpose(1, 2).reshape(batch, seq, -1)
        return self.resid_dropout(self.c_proj(out)), present


class GPT2MLP(nn.Module):
    def __init__(self, intermediate_size: int, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(intermediate_size, config.hidden_size)
        self.c_proj = Conv1D(config.hidden_size, intermediate_size)
        self.act = _activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))
        return out


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        hidden = config.hidden_size
        inner = config.n_inner if config.n_inner is not None else 4 * hidden
        self.ln_1 = nn.LayerNorm(hidden, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(hidden, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner, config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        layer_past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attn_out, present = self.attn(self.ln_1(hidden_states), mask, is_causal, layer_past)
        hidden_states = hidden_states + attn_out
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, present


def _attention_mask(
    attention_mask: torch.Tensor | None, batch: int, query_len: int, past_len: int, device: torch.device
) -> tuple[torch.Tensor | None, bool]:
    """SDPA mask for causal attention over ``past_len`` cached plus ``query_len`` new positions.

    Returns ``(mask, is_causal)``; the mask is boolean ``[batch, 1, query, past + query]``
    (True = attend), or None when SDPA's own causal path (or no mask) suffices.
    """
    key_len = past_len + query_len
    if attention_mask is not None:
        if attention_mask.dim() == 4:
            return attention_mask, False
        if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (batch, key_len):
            raise ModelInputError(
                f"attention_mask must be [batch, past + seq] = [{batch}, {key_len}], got {tuple(attention_mask.shape)}",
                hint="pass one mask entry per cached and new token (1 = real token, 0 = padding)",
            )
        padding = attention_mask.bool()
        if bool(padding.all()):
            attention_mask = None
    if attention_mask is None:
        if query_len == 1:
            return None, False
        if past_len == 0:
            return None, True
    positions = torch.arange(key_len, device=device)
    mask = (positions[None, :] <= positions[past_len:, None])[None, None]
    if attention_mask is not None:
        mask = mask & padding[:, None, None, :]
    return mask, False


class GPT2PreTrainedModel(nn.Module):
    """Shared class attributes and transformers-style weight init."""

    config_class = GPT2Config
    base_model_prefix = "transformer"
    # Causal-mask buffers that old GPT-2 checkpoints (e.g. openai-community/gpt2) still carry.
    _keys_to_ignore_on_load_unexpected = [r"\.attn\.bias$", r"\.attn\.masked_bias$"]

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, Conv1D)):
            module.weight.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        if isinstance(module, (GPT2Attention, GPT2MLP)):
            module.c_proj.weight.normal_(mean=0.0, std=std / math.sqrt(2 * self.config.num_hidden_layers))


class GPT2Model(GPT2PreTrainedModel):
    """The GPT-2 trunk: token + position embeddings, blocks, final LayerNorm."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        if config.add_cross_attention:
            raise ConfigError(
                "GPT-2 with add_cross_attention=True (decoder of an encoder-decoder) is not supported natively",
                hint="build this checkpoint with transformers, or set add_cross_attention to false",
            )
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.num_hidden_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ModelInputError(
                "GPT-2 forward needs exactly one of input_ids or inputs_embeds, got "
                + ("both" if input_ids is not None else "neither")
            )
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        batch, seq = inputs_embeds.shape[:2]
        past_len = past_key_values[0][0].shape[2] if past_key_values else 0
        if position_ids is None:
            if past_len + seq > self.config.max_position_embeddings:
                raise ModelInputError(
                    f"GPT-2 takes at most n_positions={self.config.max_position_embeddings} tokens, "
                    f"got {past_len + seq} (past {past_len} + new {seq})",
                    hint="truncate the input (or generate fewer new tokens)",
                )
            position_ids = torch.arange(past_len, past_len + seq, device=inputs_embeds.device)[None]
        hidden = inputs_embeds + self.wpe(position_ids)
        if token_type_ids is not None:
            hidden = hidden + self.wte(token_type_ids)
        hidden = self.drop(hidden)
        mask, is_causal = _attention_mask(attention_mask, batch, seq, past_len, hidden.device)

        all_hidden: list[torch.Tensor] = []
        presents: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, block in enumerate(self.h):
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden, present = block(hidden, mask, is_causal, past_key_values[i] if past_key_values else None)
            if use_cache:
                presents.append(present)
        hidden = self.ln_f(hidden)
        if output_hidden_states:
            all_hidden.append(hidden)
        return BaseModelOutput(
            last_hidden_state=hidden,
            past_key_values=tuple(presents) if use_cache else None,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
        )


# --- task heads (factory.models.heads): GPT2Model under ``transformer`` plus the head layers ------------
class GPT2TaskModel(heads.TaskModel, GPT2PreTrainedModel):
    """The base of the GPT-2 heads: a :class:`GPT2Model` under ``transformer``."""

    trunk_class = GPT2Model


class GPT2LMHeadModel(heads.CausalLM, GPT2TaskModel):
    """GPT-2 with the language-modelling head (tied to ``wte`` by default); supports ``generate``."""

    tied = {"lm_head.weight": "transformer.wte.weight"}


class GPT2ForSequenceClassification(heads.DecoderSequenceClassification, GPT2TaskModel):
    """Classifies each sequence from its last non-padding token, like transformers."""


class GPT2ForTokenClassification(heads.TokenClassification, GPT2TaskModel):
    """A linear classifier on every token's final hidden state."""

    head_layers = {"dropout": heads.dropout("hidden_dropout"), "classifier": heads.linear("num_labels")}


class GPT2ForQuestionAnswering(heads.QuestionAnswering, GPT2TaskModel):
    """Span start/end logits for extractive question answering."""


__all__: list[str] = [
    "Conv1D",
    "GPT2Config",
    "GPT2ForQuestionAnswering",
    "GPT2ForSequenceClassification",
    "GPT2ForTokenClassification",
    "GPT2LMHeadModel",
    "GPT2Model",
    "GPT2PreTrainedModel",
    "GPT2TaskModel",
    "ModelInputError",
]
