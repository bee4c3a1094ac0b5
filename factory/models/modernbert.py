"""ModernBERT (Warner et al., 2024) in plain torch, with the numerics of transformers 5.23's eager/SDPA path.

A pre-norm encoder: token embeddings + LayerNorm (no positions: rotary), then layers of
LayerNorm -> attention (fused ``Wqkv``, rotary, ``Wo``) and LayerNorm -> GeGLU MLP
(``Wi`` gives input and gate, ``Wo``), a final LayerNorm; no biases and bias-free norms by
default. Layers alternate global and local attention (``layer_types``, by default every
third layer global): local layers see keys within ``local_attention // 2`` positions of the
query (the window transformers' ``create_bidirectional_sliding_window_mask`` builds), and
the two kinds use rotary with their own theta (``rope_parameters`` per layer type; older
config.json files say ``global_rope_theta`` / ``local_rope_theta``). Rotary comes from
:mod:`factory.models.llama` (one :class:`~factory.models.llama.RotaryEmbedding` per layer type).

Inputs are padded batches with an ``attention_mask``, as transformers' SDPA path runs
them; its flash-attention path unpads and gives the same results. The heads read
``head`` (dense, activation, LayerNorm) then ``drop`` and ``classifier``; sequence
classification pools the first token or the mean (``classifier_pooling``); masked LM
computes logits for labelled positions only when ``sparse_prediction`` and labels are given.

Classes (task -> class):
    model                       ModernBertModel
    masked-lm                   ModernBertForMaskedLM
    sequence-classification     ModernBertForSequenceClassification
    multiple-choice             ModernBertForMultipleChoice
    token-classification        ModernBertForTokenClassification
    question-answering          ModernBertForQuestionAnswering
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from factory.errors import ConfigError
from factory.models import heads
from factory.models.bert import ACTIVATIONS, Activation, attend, input_shape, padding_mask, run_layers
from factory.models.configuration import Config
from factory.models.llama import ROPE_TYPES, RotaryEmbedding, apply_rotary
from factory.models.outputs import BaseModelOutput

LAYER_TYPES = ("full_attention", "sliding_attention")
#: transformers' rotary bases when config.json gives none: global (full) and local (sliding) layers.
DEFAULT_THETA = {"full_attention": 160_000.0, "sliding_attention": 10_000.0}


class ModernBertConfig(Config):
    """ModernBERT hyper-parameters; defaults are those of transformers' ``ModernBertConfig``.

    As in transformers, ``layer_types`` defaults to a global layer every
    ``global_attn_every_n_layers`` (3) layers, and ``rope_parameters`` is one dict per layer
    type, built from ``global_rope_theta`` / ``local_rope_theta`` / ``rope_scaling`` when the
    config.json has those instead.
    """

    model_type = "modernbert"
    vocab_size: int = 50368
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    hidden_activation: str = "gelu"
    max_position_embeddings: int = 8192
    initializer_range: float = 0.02
    initializer_cutoff_factor: float = 2.0
    norm_eps: float = 1e-5
    norm_bias: bool = False
    pad_token_id: int | None = 50283
    eos_token_id: int | None = 50282
    bos_token_id: int | None = 50281
    cls_token_id: int | None = 50281
    sep_token_id: int | None = 50282
    attention_bias: bool = False
    attention_dropout: float = 0.0
    layer_types: list[str] = None  # type: ignore[assignment]  # a list after __init__
    rope_parameters: dict[str, dict[str, Any]] = None  # type: ignore[assignment]  # a dict after __init__
    local_attention: int = 128
    embedding_dropout: float = 0.0
    mlp_bias: bool = False
    mlp_dropout: float = 0.0
    decoder_bias: bool = True
    classifier_pooling: str = "cls"
    classifier_dropout: float = 0.0
    classifier_bias: bool = False
    classifier_activation: str = "gelu"
    deterministic_flash_attn: bool = False
    sparse_prediction: bool = False
    sparse_pred_ignore_index: int = -100
    tie_word_embeddings: bool = True

    def __init__(self, **kwargs: Any) -> None:
        rope_scaling = kwargs.pop("rope_scaling", None)
        thetas = {
            "full_attention": kwargs.pop("global_rope_theta", DEFAULT_THETA["full_attention"]),
            "sliding_attention": kwargs.pop("local_rope_theta", DEFAULT_THETA["sliding_attention"]),
        }
        kwargs.pop("reference_compile", None)  # a torch.compile switch of older configs; transformers drops it
        super().__init__(**kwargs)
        if self.layer_types is None:
            every = getattr(self, "global_attn_every_n_layers", 3)
            self.layer_types = [
                "sliding_attention" if i % every else "full_attention" for i in range(self.num_hidden_layers)
            ]
        given = self.rope_parameters or {}
        rope: dict[str, dict[str, Any]] = {}
        for layer_type in LAYER_TYPES:
            params = dict(given.get(layer_type) or {"rope_type": "default"})
            params.update(rope_scaling or {})
            params.setdefault("rope_theta", thetas[layer_type])
            params.setdefault("rope_type", params.get("type", "default"))
            if params["rope_type"] in ("llama3", "yarn"):
                params.setdefault("original_max_position_embeddings", self.max_position_embeddings)
            rope[layer_type] = params
        self.rope_parameters = rope

    def _rotary_dim(self) -> int:
        """Rotary turns every dimension of each head (read by llama's :class:`RotaryEmbedding`)."""
        return self.hidden_size // self.num_attention_heads

    @property
    def sliding_window(self) -> int:
        """How far a local layer looks to each side: ``local_attention // 2``."""
        return self.local_attention // 2

    @sliding_window.setter
    def sliding_window(self, value: int) -> None:
        self.local_attention = value * 2


def _check_config(config: ModernBertConfig) -> None:
    name = "ModernBERT"
    if config.hidden_size % config.num_attention_heads or (config.hidden_size // config.num_attention_heads) % 2:
        raise ConfigError(
            f"{name}: hidden_size ({config.hidden_size}) must be num_attention_heads ({config.num_attention_heads}) "
            "times an even head size (rotary embeddings)",
            hint="fix hidden_size or num_attention_heads in config.json",
        )
    for key in ("hidden_activation", "classifier_activation"):
        if getattr(config, key) not in ACTIVATIONS:
            raise ConfigError(
                f"{name}: {key} {getattr(config, key)!r} is not supported; supported: {sorted(ACTIVATIONS)}",
                hint="use one of the supported activations, or register your own model class",
            )
    types = config.layer_types
    if len(types) != config.num_hidden_layers or any(t not in LAYER_TYPES for t in types):
        raise ConfigError(
            f"{name}: layer_types must name {config.num_hidden_layers} layers, each one of {list(LAYER_TYPES)}; "
            f"found {types!r}",
            hint="fix layer_types in config.json, or drop it for a global layer every global_attn_every_n_layers",
        )
    for layer_type, rope in config.rope_parameters.items():
        kind = str(rope.get("rope_type"))
        missing = [key for key in ROPE_TYPES.get(kind, ()) if rope.get(key) is None]
        if kind not in ROPE_TYPES or missing:
            raise ConfigError(
                f"{name}: rope_parameters[{layer_type!r}] = {rope} is not supported"
                + (f" (missing {missing})" if missing else ""),
                hint=f"supported rope types: {', '.join(ROPE_TYPES)}",
            )
    if config.classifier_pooling not in ("cls", "mean"):
        raise ConfigError(
            f"{name}: classifier_pooling must be 'cls' or 'mean', found {config.classifier_pooling!r}",
            hint="fix classifier_pooling in config.json",
        )


def _rotary_config(config: ModernBertConfig, layer_type: str) -> Config:
    """The config one layer type's :class:`RotaryEmbedding` reads: the same, with that type's rope_parameters."""
    view = copy.copy(config)
    view.rope_parameters = config.rope_parameters[layer_type]
    return view


def sliding_window_mask(
    attention_mask: torch.Tensor | None, seq_len: int, window: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean ``[batch or 1, 1, seq, seq]`` mask of keys within ``window`` positions of the query (True = attend)
    and not padding; None when no key is that far and nothing is padded."""
    padding = padding_mask(attention_mask)
    if seq_len - 1 <= window:
        return padding
    positions = torch.arange(seq_len, device=device)
    mask = ((positions[None, :] - positions[:, None]).abs() <= window)[None, None]
    return mask if padding is None else mask & padding


def _layer_norm(config: ModernBertConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)


class ModernBertEmbeddings(nn.Module):
    """Token embeddings, LayerNorm, dropout (rotary carries the positions)."""

    def __init__(self, config: ModernBertConfig) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.norm = _layer_norm(config)
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        embeds = self.tok_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        out: torch.Tensor = self.drop(self.norm(embeds))
        return out


class ModernBertMLP(nn.Module):
    """GeGLU: ``Wo(act(input) * gate)`` where ``Wi`` gives ``input`` and ``gate``."""

    def __init__(self, config: ModernBertConfig) -> None:
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.act = Activation(config.hidden_activation)
        self.drop = nn.Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        value, gate = self.Wi(hidden_states).chunk(2, dim=-1)
        out: torch.Tensor = self.Wo(self.drop(self.act(value) * gate))
        return out


class ModernBertAttention(nn.Module):
    """Fused ``Wqkv`` projection, rotary queries and keys, attention under the layer's mask, ``Wo``."""

    def __init__(self, config: ModernBertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.dropout_p = config.attention_dropout
        self.out_drop = nn.Dropout(config.attention_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, _ = hidden_states.shape
        qkv = self.Wqkv(hidden_states).view(batch, seq_len, 3, self.num_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(dim=2))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        dropout_p = self.dropout_p if self.training else 0.0
        out, probs = attend(q, k, v, mask, dropout_p=dropout_p, output_attentions=output_attentions)
        return self.out_drop(self.Wo(out.transpose(1, 2).reshape(batch, seq_len, -1))), probs


#: Per layer type: the rotary cos and sin and the attention mask its layers use.
LayerInputs = Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


class ModernBertEncoderLayer(nn.Module):
    """Pre-norm attention and MLP, each with a residual; the first layer's input is already normed."""

    def __init__(self, config: ModernBertConfig, layer_idx: int) -> None:
        super().__init__()
        self.attention_type = config.layer_types[layer_idx]
        self.attn_norm: nn.Module = nn.Identity() if layer_idx == 0 else _layer_norm(config)
        self.attn = ModernBertAttention(config)
        self.mlp_norm = _layer_norm(config)
        self.mlp = ModernBertMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        inputs: LayerInputs,
        is_causal: bool = False,
        output_attentions: bool = False,
        past: None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        """BERT's layer call (:func:`~factory.models.bert.run_layers`); ``inputs`` are all layer types'."""
        cos, sin, mask = inputs[self.attention_type]
        attended, probs = self.attn(self.attn_norm(hidden_states), cos, sin, mask, output_attentions)
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.mlp_norm(hidden_states)), probs, None


class ModernBertPredictionHead(nn.Module):
    """``norm(act(dense(x)))``: what every ModernBERT head applies first."""

    def __init__(self, config: ModernBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = Activation(config.classifier_activation)
        self.norm = _layer_norm(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.norm(self.act(self.dense(hidden_states)))
        return out


class ModernBertPreTrainedModel(nn.Module):
    """What every ModernBERT model class shares: config class, prefix, config checks and init."""

    config_class = ModernBertConfig
    base_model_prefix = "model"

    def __init__(self, config: ModernBertConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation: truncated normals (``initializer_cutoff_factor`` standard deviations)
        whose scale depends on the layer's role, zero biases, unit norms."""
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            return
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            return
        config = self.config
        std = config.initializer_range
        name = next(n for n, m in self.named_modules() if m is module).rpartition(".")[2]
        if name in ("Wo", "dense", "decoder"):  # projections back into the residual stream and the heads
            std = config.initializer_range / math.sqrt(2.0 * config.num_hidden_layers)
        elif name == "classifier":
            std = config.hidden_size**-0.5
        cutoff = config.initializer_cutoff_factor if config.initializer_cutoff_factor is not None else 3
        nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-cutoff * std, b=cutoff * std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


class ModernBertModel(ModernBertPreTrainedModel):
    """Embeddings, the alternating global/local layers, the final norm -> ``last_hidden_state``.

    ``hidden_states`` (when asked) are the embeddings, then every layer's output, the last one normed.
    """

    def __init__(self, config: ModernBertConfig) -> None:
        super().__init__(config)
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(ModernBertEncoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = _layer_norm(config)
        self.rotary_emb = nn.ModuleDict(
            {t: RotaryEmbedding(_rotary_config(config, t)) for t in sorted(set(config.layer_types))}  # type: ignore[arg-type]
        )

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.tok_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        _, seq_len = input_shape(self, input_ids, inputs_embeds, attention_mask)
        hidden = self.embeddings(input_ids, inputs_embeds)
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=hidden.device)[None]
        masks = {
            "full_attention": padding_mask(attention_mask),
            "sliding_attention": sliding_window_mask(
                attention_mask, seq_len, self.config.sliding_window, hidden.device
            ),
        }
        inputs = {t: (*rope(position_ids, hidden.dtype), masks[t]) for t, rope in self.rotary_emb.items()}
        out = run_layers(
            self.layers, hidden, inputs, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        out.last_hidden_state = self.final_norm(out.last_hidden_state)
        if out.hidden_states is not None:  # as transformers: the last entry is the normed output
            out.hidden_states = (*out.hidden_states[:-1], out.last_hidden_state)
        return out


# --- task heads (factory.models.heads): ModernBertModel under ``model`` plus head, drop, classifier -------
def _mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.reshape(hidden.shape[:2]).to(hidden.device)
    return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)


def classifier_pool(model: heads.TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """``classifier_pooling``: the first token (``cls``) or the mean over the unpadded tokens (``mean``)."""
    hidden: torch.Tensor = out.last_hidden_state
    if model.config.classifier_pooling == "mean":
        return _mean(hidden, inputs.get("attention_mask"))
    return hidden[:, 0]


def choice_pool(model: heads.TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """As :func:`classifier_pool` for each choice, ``cls`` taking each row's first unpadded token."""
    hidden: torch.Tensor = out.last_hidden_state
    mask = inputs.get("attention_mask")
    if model.config.classifier_pooling == "mean":
        return _mean(hidden, mask)
    first = mask.reshape(hidden.shape[:2]).argmax(dim=-1).to(hidden.device) if mask is not None else 0
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def _classifier(out_features: str | int | heads.LayerBuilder) -> dict[str, heads.LayerBuilder]:
    """``head``, ``drop`` (``classifier_dropout``) and ``classifier``: every ModernBERT classification head."""
    classifier = heads.linear(out_features) if isinstance(out_features, (str, int)) else out_features
    return {"head": ModernBertPredictionHead, "drop": heads.dropout(), "classifier": classifier}


def _decoder(config: ModernBertConfig) -> nn.Linear:
    return nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)


class ModernBertTaskModel(heads.TaskModel, ModernBertPreTrainedModel):
    """The base of the ModernBERT heads: a :class:`ModernBertModel` under ``model``."""

    trunk_class = ModernBertModel


class ModernBertForMaskedLM(heads.MaskedLM, ModernBertTaskModel):
    """Masked language modelling; with ``sparse_prediction`` and labels, logits only where labels are set."""

    head_layers = {"head": ModernBertPredictionHead, "decoder": _decoder}
    tied = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}

    def get_output_embeddings(self) -> nn.Module:
        return self.get_submodule("decoder")

    def _kept(self, labels: torch.Tensor) -> torch.Tensor:
        kept: torch.Tensor = labels.reshape(-1) != self.config.sparse_pred_ignore_index
        return kept

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        hidden: torch.Tensor = out.last_hidden_state
        labels = inputs.get("labels")
        if self.config.sparse_prediction and labels is not None:
            hidden = hidden.reshape(labels.numel(), -1)[self._kept(labels)]
        return {"logits": self.run_head(hidden)}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.sparse_prediction:
            labels = labels.reshape(-1)[self._kept(labels)]
        return heads.cross_entropy_loss(logits, labels)


class ModernBertForSequenceClassification(heads.SequenceClassification, ModernBertTaskModel):
    """``classifier_pooling`` (first token or mean), then the head; loss by ``problem_type``."""

    pool = classifier_pool
    head_layers = _classifier("num_labels")


class ModernBertForMultipleChoice(heads.MultipleChoice, ModernBertTaskModel):
    """One score per choice: :func:`choice_pool`, then ``head``, ``drop`` and ``classifier``."""

    pool = choice_pool
    head_layers = _classifier(1)


class ModernBertForTokenClassification(heads.TokenClassification, ModernBertTaskModel):
    """``head``, ``drop`` and ``classifier`` on every token."""

    head_layers = _classifier("num_labels")


class ModernBertForQuestionAnswering(heads.QuestionAnswering, ModernBertTaskModel):
    """Extractive QA: start/end logits per token from the ``classifier``; positions outside are ignored."""

    head_layers = _classifier(heads.span_outputs)


__all__ = [
    "ModernBertConfig",
    "ModernBertForMaskedLM",
    "ModernBertForMultipleChoice",
    "ModernBertForQuestionAnswering",
    "ModernBertForSequenceClassification",
    "ModernBertForTokenClassification",
    "ModernBertModel",
    "ModernBertTaskModel",
    "sliding_window_mask",
]
