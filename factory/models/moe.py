"""Mixture-of-experts decoders: Mixtral, Qwen2-MoE and Qwen3-MoE, on the shared decoder of
:mod:`factory.models.llama` (its attention, rotary, norms, cache and heads).

The feed-forward block of a sparse layer routes each token to ``num_experts_per_tok`` of
``num_experts`` expert MLPs, as transformers 5.23 does:

- router logits ``gate(x)``, softmax in float32, top-k; Mixtral always renormalises the k
  weights to sum to one and keeps them in float32, Qwen renormalises when ``norm_topk_prob``
  and casts them to the hidden dtype;
- the experts' outputs, weighted, summed per token;
- Qwen2-MoE adds a shared expert gated per token by ``sigmoid(shared_expert_gate(x))``;
- Qwen layers are sparse unless listed in ``mlp_only_layers`` or off the ``decoder_sparse_step``
  grid; those have a dense MLP of ``intermediate_size``;
- Mixtral multiplies the block's input by uniform noise in ``1 +- router_jitter_noise`` in training.

``output_router_logits=True`` (or the config's) returns every sparse layer's router logits
``[batch * seq, num_experts]``; the causal LM then also returns the auxiliary load-balancing loss
(Switch Transformer, over the tokens the attention mask keeps) and adds ``router_aux_loss_coef``
times it to the loss when labels are given.

Checkpoint layout: one module per expert, as Hub checkpoints and transformers' ``save_pretrained``
store them: ``model.layers.N.block_sparse_moe.experts.E.w1/w2/w3`` (Mixtral: gate, down, up) and
``model.layers.N.mlp.experts.E.gate_proj/up_proj/down_proj`` (Qwen). transformers fuses the experts
into 3-d tensors on load and writes them back per expert, except with ``save_pretrained(...,
save_original_format=False)``: that writes its in-memory layout, ``...mlp.experts.gate_up_proj``
``[experts, 2 * inner, hidden]`` (gate rows, then up rows) and ``...mlp.experts.down_proj``
``[experts, hidden, inner]``. Those load too: the models declare how they split
(:func:`split_fused_experts`, read by ``factory.build.weights.split_fused``), each part a view of the file.
``factory.save`` writes the per-expert layout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError
from factory.models.heads import causal_lm_loss
from factory.models.llama import (
    _ACTIVATIONS,
    MLP,
    DecoderForCausalLM,
    DecoderForQuestionAnswering,
    DecoderForSequenceClassification,
    DecoderForTokenClassification,
    DecoderLayer,
    DecoderModel,
    _DecoderConfig,
    check_config,
    layer_type_windows,
)
from factory.models.outputs import MoeCausalLMOutput, MoeModelOutput

#: transformers' in-memory names of a sparse block: ``<layer>.mlp.gate.weight`` and the fused experts
#: ``<layer>.mlp.experts.gate_up_proj`` / ``.down_proj``.
_FUSED_KEY = re.compile(r"^(?P<layer>.*)\.mlp\.(?P<kind>gate\.weight|experts\.gate_up_proj|experts\.down_proj)$")


# --- configs ------------------------------------------------------------------
class _MoeConfig(_DecoderConfig):
    """What the MoE blocks read; each family maps its own fields onto these methods."""

    num_experts_per_tok: int
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001

    #: Renormalise the top-k weights (Mixtral always; Qwen when ``norm_topk_prob``).
    def _renormalize(self) -> bool:
        return bool(getattr(self, "norm_topk_prob", False))

    def _expert_count(self) -> int:
        return int(self.num_experts)

    def _expert_size(self) -> int:
        return int(self.moe_intermediate_size)

    def _sparse_layer(self, layer_idx: int) -> bool:
        """transformers' rule: sparse unless in ``mlp_only_layers`` or off the ``decoder_sparse_step`` grid."""
        return (
            layer_idx not in self.mlp_only_layers
            and self._expert_count() > 0
            and (layer_idx + 1) % self.decoder_sparse_step == 0
        )


class MixtralConfig(_MoeConfig):
    model_type = "mixtral"
    attribute_map = {"num_experts": "num_local_experts"}
    intermediate_size: int = 14336
    num_key_value_heads: int = 8
    head_dim: int | None = None
    max_position_embeddings: int = 4096 * 32
    rms_norm_eps: float = 1e-5
    bos_token_id: int | None = 1
    eos_token_id: Any = 2
    sliding_window: int | None = None
    num_experts_per_tok: int = 2
    num_local_experts: int = 8
    router_jitter_noise: float = 0.0

    _default_theta: ClassVar[float] = 1_000_000.0

    def _renormalize(self) -> bool:
        return True

    def _expert_count(self) -> int:
        return int(self.num_local_experts)

    def _expert_size(self) -> int:
        return int(self.intermediate_size)

    def _sparse_layer(self, layer_idx: int) -> bool:
        return True

    def _layer_windows(self) -> list[int | None]:
        return [self.sliding_window] * self.num_hidden_layers


class Qwen2MoeConfig(_MoeConfig):
    model_type = "qwen2_moe"
    vocab_size: int = 151936
    hidden_size: int = 2048
    intermediate_size: int = 5632
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    max_position_embeddings: int = 32768
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28
    decoder_sparse_step: int = 1
    moe_intermediate_size: int = 1408
    shared_expert_intermediate_size: int = 5632
    num_experts_per_tok: int = 4
    num_experts: int = 60
    norm_topk_prob: bool = False
    mlp_only_layers: list[int] = None  # type: ignore[assignment]  # a list after __init__
    qkv_bias: bool = True
    layer_types: list[str] = None  # type: ignore[assignment]  # derived in __init__

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.mlp_only_layers is None:
            self.mlp_only_layers = []
        if not self.use_sliding_window:
            self.sliding_window = 0  # transformers' value for "off"
        if self.layer_types is None:
            self.layer_types = [
                "sliding_attention"
                if (i + 1) % 2 and i < self.max_window_layers and self.use_sliding_window
                else "full_attention"
                for i in range(self.num_hidden_layers)
            ]

    def _attention_bias(self) -> tuple[bool, bool]:
        return bool(self.qkv_bias), False

    def _layer_windows(self) -> list[int | None]:
        return layer_type_windows(self)


class Qwen3MoeConfig(_MoeConfig):
    model_type = "qwen3_moe"
    attribute_map = {"num_local_experts": "num_experts"}  # transformers 5 writes num_local_experts
    vocab_size: int = 151936
    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_hidden_layers: int = 24
    num_attention_heads: int = 32
    num_key_value_heads: int = 4
    max_position_embeddings: int = 32768
    attention_bias: bool = False
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    decoder_sparse_step: int = 1
    moe_intermediate_size: int = 768
    num_experts_per_tok: int = 8
    num_experts: int = 128
    norm_topk_prob: bool = False
    mlp_only_layers: list[int] = None  # type: ignore[assignment]  # a list after __init__

    _qk_norm: ClassVar[bool] = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.mlp_only_layers is None:
            self.mlp_only_layers = []
        if not self.use_sliding_window:
            self.sliding_window = None

    def _attention_bias(self) -> tuple[bool, bool]:
        return bool(self.attention_bias), bool(self.attention_bias)

    def _layer_windows(self) -> list[int | None]:
        return [self.sliding_window] * self.num_hidden_layers


def check_moe_config(config: _MoeConfig) -> None:
    """Raise :class:`ConfigError` for expert counts and layer lists no MoE model can be built from."""
    check_config(config)
    name = type(config).__name__
    experts, top_k = config._expert_count(), config.num_experts_per_tok
    if type(experts) is not int or type(top_k) is not int or not 0 < top_k <= experts:
        raise ConfigError(
            f"{name}: num_experts_per_tok={top_k!r} must be between 1 and the number of experts ({experts!r})",
            hint="each token is routed to num_experts_per_tok of the experts",
        )
    step = getattr(config, "decoder_sparse_step", 1)
    if type(step) is not int or step < 1:
        raise ConfigError(f"{name}: decoder_sparse_step={step!r} must be a positive integer")
    dense = getattr(config, "mlp_only_layers", [])
    if not isinstance(dense, list) or not all(type(i) is int for i in dense):
        raise ConfigError(f"{name}: mlp_only_layers must be a list of layer indices, got {dense!r}")


# --- the sparse block -------------------------------------------------------------
class MixtralExpert(nn.Module):
    """Mixtral's expert MLP under its checkpoint names: ``w2(act(w1(x)) * w3(x))``."""

    def __init__(self, config: _MoeConfig) -> None:
        super().__init__()
        inner = config._expert_size()
        self.w1 = nn.Linear(config.hidden_size, inner, bias=False)
        self.w2 = nn.Linear(inner, config.hidden_size, bias=False)
        self.w3 = nn.Linear(config.hidden_size, inner, bias=False)
        self.act = _ACTIVATIONS[config._activation()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.w2(self.act(self.w1(x)) * self.w3(x))
        return out


class SparseMoeBlock(nn.Module):
    """Router ``gate`` and ``experts``: each token's output is the weighted sum of its top-k experts'."""

    #: The experts' gate, up and down projections (their checkpoint names).
    projections: ClassVar[tuple[str, str, str]] = ("gate_proj", "up_proj", "down_proj")

    def __init__(self, config: _MoeConfig) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.renormalize = config._renormalize()
        self.gate = nn.Linear(config.hidden_size, config._expert_count(), bias=False)
        self.experts = nn.ModuleList(self.expert(config) for _ in range(config._expert_count()))

    def expert(self, config: _MoeConfig) -> nn.Module:
        return MLP(config, config._expert_size())

    def route(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k ``(weights, expert indices)``, each ``[tokens, k]``; weights in the hidden dtype."""
        weights, selected = torch.topk(F.softmax(logits, dim=-1, dtype=torch.float32), self.top_k, dim=-1)
        if self.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(logits.dtype), selected

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        weights, selected = self.route(self.gate(flat))
        return self.mix(flat, weights, selected).view_as(hidden_states)

    def mix(self, flat: torch.Tensor, weights: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """Run each expert on its tokens; one host sync to learn which experts got any (as transformers)."""
        out = torch.zeros_like(flat)
        hit = torch.bincount(selected.flatten(), minlength=len(self.experts)).nonzero().flatten().tolist()
        for index in hit:
            token, slot = torch.where(selected == index)
            expert_out = self.experts[index](flat[token]) * weights[token, slot, None]
            out.index_add_(0, token, expert_out.to(out.dtype))
        return out


class MixtralSparseMoeBlock(SparseMoeBlock):
    """Mixtral's experts (``w1``/``w2``/``w3``), float32 routing weights and training-time input jitter."""

    projections = ("w1", "w3", "w2")

    def __init__(self, config: _MoeConfig) -> None:
        super().__init__(config)
        self.jitter_noise = config.router_jitter_noise

    def expert(self, config: _MoeConfig) -> nn.Module:
        return MixtralExpert(config)

    def route(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights, selected = torch.topk(F.softmax(logits, dim=-1, dtype=torch.float32), self.top_k, dim=-1)
        return weights / weights.sum(dim=-1, keepdim=True), selected

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.training and self.jitter_noise > 0:
            noise = torch.empty_like(hidden_states).uniform_(1.0 - self.jitter_noise, 1.0 + self.jitter_noise)
            hidden_states = hidden_states * noise
        return super().forward(hidden_states)


class Qwen2MoeSparseMoeBlock(SparseMoeBlock):
    """Qwen2-MoE's block: the routed experts plus a ``shared_expert`` gated by ``shared_expert_gate``."""

    def __init__(self, config: _MoeConfig) -> None:
        super().__init__(config)
        self.shared_expert = MLP(config, config.shared_expert_intermediate_size)
        self.shared_expert_gate = nn.Linear(config.hidden_size, 1, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        shared: torch.Tensor = torch.sigmoid(self.shared_expert_gate(flat)) * self.shared_expert(flat)
        routed = super().forward(hidden_states).reshape_as(flat)
        return (routed + shared).view_as(hidden_states)


def load_balancing_loss(
    router_logits: Sequence[torch.Tensor],
    num_experts: int,
    top_k: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Switch Transformer's auxiliary loss, as transformers computes it: ``num_experts`` times the sum over
    experts of (the share of top-k assignments it got) x (its mean router probability), over all layers
    and the tokens ``attention_mask`` keeps (its last columns when it also covers cached tokens)."""
    device = router_logits[0].device
    tokens = router_logits[0].shape[0]
    keep = torch.ones(tokens, dtype=torch.float32, device=device)
    if attention_mask is not None:
        new = tokens // attention_mask.shape[0]
        keep = attention_mask[:, -new:].reshape(-1).to(device=device, dtype=torch.float32)
    assigned = torch.zeros(num_experts, dtype=torch.float32, device=device)
    probability = torch.zeros(num_experts, dtype=torch.float32, device=device)
    for logits in router_logits:
        probs = F.softmax(logits.to(device), dim=-1)
        selected = torch.topk(probs, top_k, dim=-1).indices
        assigned = assigned + torch.zeros_like(assigned).scatter_add_(
            0, selected.reshape(-1), keep.repeat_interleave(top_k)
        )
        probability = probability + (probs.float() * keep[:, None]).sum(dim=0)
    rows = keep.sum() * len(router_logits)
    return torch.sum((assigned / rows) * (probability / rows)) * num_experts


def split_fused_experts(
    key: str, shape: tuple[int, ...], layer_class: type[MoeDecoderLayer]
) -> list[tuple[str, int, int, tuple[int, ...]]] | None:
    """Where the per-expert parameters lie in one of transformers' fused expert tensors (rows of its last
    dimension), for ``factory.build.weights.split_fused``; ``None`` for any other tensor. Mixtral's
    router, ``mlp.gate`` in that layout, is renamed to ``block_sparse_moe.gate`` (one part, all rows)."""
    match = _FUSED_KEY.match(key)
    block = f"{match['layer']}.{layer_class.feed_forward_name}" if match else ""
    if match is not None and match["kind"] == "gate.weight" and len(shape) == 2:
        renamed = f"{block}.gate.weight"
        return None if renamed == key else [(renamed, 0, shape[0], shape)]
    if match is None or len(shape) != 3:
        return None
    experts, rows, width = shape
    gate, up, down = layer_class.sparse_class.projections
    prefix = f"{block}.experts"
    if match["kind"] == "experts.down_proj":
        return [(f"{prefix}.{e}.{down}.weight", e * rows, (e + 1) * rows, (rows, width)) for e in range(experts)]
    inner = rows // 2
    return [
        part
        for e in range(experts)
        for part in (
            (f"{prefix}.{e}.{gate}.weight", e * rows, e * rows + inner, (inner, width)),
            (f"{prefix}.{e}.{up}.weight", e * rows + inner, (e + 1) * rows, (rows - inner, width)),
        )
    ]


# --- models -----------------------------------------------------------------------
class MoeDecoderLayer(DecoderLayer):
    """A decoder layer whose feed-forward block is ``sparse_class`` where the config says so, else a dense MLP."""

    sparse_class: ClassVar[type[SparseMoeBlock]] = SparseMoeBlock

    def feed_forward(self, config: _DecoderConfig, layer_idx: int) -> nn.Module:
        assert isinstance(config, _MoeConfig)
        return self.sparse_class(config) if config._sparse_layer(layer_idx) else MLP(config)


class MixtralDecoderLayer(MoeDecoderLayer):
    feed_forward_name = "block_sparse_moe"
    sparse_class = MixtralSparseMoeBlock


class Qwen2MoeDecoderLayer(MoeDecoderLayer):
    sparse_class = Qwen2MoeSparseMoeBlock


class MoeModel(DecoderModel):
    """The decoder with sparse layers; ``output_router_logits`` adds each sparse layer's router logits."""

    config: _MoeConfig
    layer_class: ClassVar[type[MoeDecoderLayer]] = MoeDecoderLayer

    def split_checkpoint_tensor(self, key: str, shape: tuple[int, ...]) -> Any:
        """transformers' fused expert tensors, split per expert (see :func:`split_fused_experts`)."""
        return split_fused_experts(key, shape, self.layer_class)

    @staticmethod
    def check_config(config: Any) -> None:
        check_moe_config(config)

    def sparse_blocks(self) -> list[SparseMoeBlock]:
        return [m for m in self.modules() if isinstance(m, SparseMoeBlock)]

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor | None = None, *, output_router_logits: bool | None = None, **inputs: Any
    ) -> MoeModelOutput:
        if output_router_logits is None:
            output_router_logits = bool(self.config.output_router_logits)
        logits: list[torch.Tensor] = []
        hooks = [
            block.gate.register_forward_hook(lambda module, args, out: logits.append(out))
            for block in (self.sparse_blocks() if output_router_logits else [])
        ]
        try:
            out = super().forward(input_ids, **inputs)
        finally:
            for hook in hooks:
                hook.remove()
        carried = {f.name: getattr(out, f.name) for f in fields(out)}
        return MoeModelOutput(**carried, router_logits=tuple(logits) if output_router_logits else None)


class _MoeTask:
    """The MoE heads load fused expert tensors as their trunk does."""

    trunk: Any

    def split_checkpoint_tensor(self, key: str, shape: tuple[int, ...]) -> Any:
        return self.trunk.split_checkpoint_tensor(key, shape)


class MoeForCausalLM(_MoeTask, DecoderForCausalLM):
    """Next-token logits; with router logits also ``aux_loss``, added to the loss (times
    ``router_aux_loss_coef``) when labels are given."""

    output_class = MoeCausalLMOutput

    def predict(self, out: Any, inputs: Any) -> dict[str, torch.Tensor]:
        fields = super().predict(out, inputs)
        if out.router_logits:
            config = self.config
            fields["aux_loss"] = load_balancing_loss(
                out.router_logits, config._expert_count(), config.num_experts_per_tok, inputs.get("attention_mask")
            )
        return fields

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        loss = causal_lm_loss(logits, labels)
        if aux_loss is not None:
            loss = loss + self.config.router_aux_loss_coef * aux_loss.to(loss.device)
        return loss


class MoeForSequenceClassification(_MoeTask, DecoderForSequenceClassification):
    pass


class MoeForTokenClassification(_MoeTask, DecoderForTokenClassification):
    pass


class MoeForQuestionAnswering(_MoeTask, DecoderForQuestionAnswering):
    pass


class MixtralModel(MoeModel):
    config_class = MixtralConfig
    layer_class = MixtralDecoderLayer


class MixtralForCausalLM(MoeForCausalLM):
    config_class, trunk_class = MixtralConfig, MixtralModel


class MixtralForSequenceClassification(MoeForSequenceClassification):
    config_class, trunk_class = MixtralConfig, MixtralModel


class MixtralForTokenClassification(MoeForTokenClassification):
    config_class, trunk_class = MixtralConfig, MixtralModel


class MixtralForQuestionAnswering(MoeForQuestionAnswering):
    config_class, trunk_class = MixtralConfig, MixtralModel


class Qwen2MoeModel(MoeModel):
    config_class = Qwen2MoeConfig
    layer_class = Qwen2MoeDecoderLayer


class Qwen2MoeForCausalLM(MoeForCausalLM):
    config_class, trunk_class = Qwen2MoeConfig, Qwen2MoeModel


class Qwen2MoeForSequenceClassification(MoeForSequenceClassification):
    config_class, trunk_class = Qwen2MoeConfig, Qwen2MoeModel


class Qwen2MoeForTokenClassification(MoeForTokenClassification):
    config_class, trunk_class = Qwen2MoeConfig, Qwen2MoeModel


class Qwen2MoeForQuestionAnswering(MoeForQuestionAnswering):
    config_class, trunk_class = Qwen2MoeConfig, Qwen2MoeModel


class Qwen3MoeModel(MoeModel):
    config_class = Qwen3MoeConfig
    layer_class = MoeDecoderLayer


class Qwen3MoeForCausalLM(MoeForCausalLM):
    config_class, trunk_class = Qwen3MoeConfig, Qwen3MoeModel


class Qwen3MoeForSequenceClassification(MoeForSequenceClassification):
    config_class, trunk_class = Qwen3MoeConfig, Qwen3MoeModel


class Qwen3MoeForTokenClassification(MoeForTokenClassification):
    config_class, trunk_class = Qwen3MoeConfig, Qwen3MoeModel


class Qwen3MoeForQuestionAnswering(MoeForQuestionAnswering):
    config_class, trunk_class = Qwen3MoeConfig, Qwen3MoeModel
    base_model_prefix = "transformer"  # transformers' checkpoint keys for this head
