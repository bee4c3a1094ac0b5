"""Llama-family decoders: Llama, Mistral, Qwen2 and Qwen3 in one implementation.

The four architectures share one pre-norm decoder (RMSNorm, rotary attention
with grouped-query heads, SiLU-gated MLP). Their differences live in the
config classes, whose defaults are transformers 5.23's for each family:

- projection biases (Llama/Qwen3 ``attention_bias``; Qwen2 always has q/k/v bias),
- sliding-window attention (Mistral ``sliding_window`` on every layer; Qwen2/Qwen3
  per ``layer_types`` when ``use_sliding_window``),
- per-head RMSNorm of queries and keys (Qwen3 ``q_norm``/``k_norm``),
- rotary scaling (``rope_parameters`` or the older ``rope_scaling`` + ``rope_theta``):
  ``default``, ``linear``, ``dynamic``, ``llama3``, ``yarn`` and ``longrope``.

The same decoder serves the Gemma (:mod:`factory.models.gemma`), Phi-3
(:mod:`factory.models.phi3`) and MoE (:mod:`factory.models.moe`) families, which swap
its parts through class attributes and hooks (see :class:`DecoderModel`,
:class:`DecoderLayer`, :class:`Attention` and the config's ``_``-methods).

Parameter names equal transformers' checkpoint keys (``model.layers.0.self_attn.q_proj.weight``,
``lm_head.weight``, ``score.weight``, ``qa_outputs.weight``...). The key/value cache is a
tuple over layers of ``(key, value)`` tensors ``[batch, kv_heads, seq, head_dim]``
(keys after rotary); sliding-window layers keep the full cache and mask it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.configuration import LIMITS, Config, check_values
from factory.models.outputs import BaseModelOutput

KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]

#: rope_type -> keys of ``rope_parameters`` it needs (after standardisation).
ROPE_TYPES: dict[str, tuple[str, ...]] = {
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "yarn": ("original_max_position_embeddings",),
    "longrope": ("short_factor", "long_factor", "original_max_position_embeddings"),
}

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


# --- configs ------------------------------------------------------------------
class _DecoderConfig(Config):
    """Fields every family has; subclasses give transformers' per-family defaults.

    Like transformers 5, ``rope_scaling`` and ``rope_theta`` from older config.json
    files are folded into one ``rope_parameters`` dict that always carries
    ``rope_type`` and ``rope_theta``.
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = None  # type: ignore[assignment]  # num_attention_heads after __init__
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: Any = None
    tie_word_embeddings: bool = False
    # Normalised by __init__: always set on an instance, None only as the written default.
    rope_parameters: dict[str, Any] = None  # type: ignore[assignment]  # a dict after __init__
    attention_dropout: float = 0.0

    #: Qwen3 normalises each query/key head before rotary.
    _qk_norm: ClassVar[bool] = False
    #: ``rope_theta`` when a config.json gives none (transformers' ``default_theta``).
    _default_theta: ClassVar[float] = 10000.0

    def __init__(self, **kwargs: Any) -> None:
        rope_scaling = kwargs.pop("rope_scaling", None)
        rope_theta = kwargs.pop("rope_theta", None)
        super().__init__(**kwargs)
        if rope_scaling is not None and not isinstance(rope_scaling, Mapping):
            raise ConfigError(
                f"{type(self).__name__}: rope_scaling must be an object or null, found {rope_scaling!r}",
                key="rope_scaling",
            )
        rope = self._rope_parameters(rope_scaling, rope_theta)
        self.rope_parameters = rope
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads

    def _rope_parameters(self, rope_scaling: Mapping[str, Any] | None, rope_theta: float | None) -> dict[str, Any]:
        """``rope_parameters`` from config.json's, or from its older ``rope_scaling`` and ``rope_theta``."""
        return self._standard_rope(dict(rope_scaling or self.rope_parameters or {}), rope_theta)

    def _standard_rope(self, rope: dict[str, Any], rope_theta: float | None) -> dict[str, Any]:
        """One flat ``rope_parameters`` dict with ``rope_type`` and ``rope_theta``, as transformers 5 keeps it."""
        rope.setdefault("rope_theta", self._default_theta if rope_theta is None else rope_theta)
        rope.setdefault("rope_type", rope.get("type", "default"))
        if rope["rope_type"] in ("llama3", "yarn", "longrope"):
            original = getattr(self, "original_max_position_embeddings", None)
            if original is not None:  # Phi-3 style top-level field wins, as in transformers
                rope["original_max_position_embeddings"] = original
            rope.setdefault("original_max_position_embeddings", self.max_position_embeddings)
        check_values(
            {f"rope_parameters.{key}": value for key, value in rope.items()},
            limits={"rope_parameters.rope_theta": LIMITS["rope_theta"], "rope_parameters.factor": (1e-6, 1e6)},
            owner=type(self).__name__,
        )
        return rope

    # Architecture switches read by the model; methods so they never reach config.json.
    def _attention_bias(self) -> tuple[bool, bool]:
        """(bias on q/k/v projections, bias on the output projection)."""
        return False, False

    def _mlp_bias(self) -> bool:
        return False

    def _layer_windows(self) -> list[int | None]:
        """Sliding-window size per layer (``None``: full causal attention)."""
        return [None] * self.num_hidden_layers

    #: The config field that names the MLP activation (Gemma 2/3: ``hidden_activation``).
    _activation_key: ClassVar[str] = "hidden_act"

    def _activation(self) -> str:
        """The MLP activation's name."""
        return str(getattr(self, self._activation_key))

    def _rotary_dim(self) -> int:
        """How many leading dimensions of each head rotary embeddings turn (Phi-3: a fraction of them)."""
        return _head_dim(self)


class LlamaConfig(_DecoderConfig):
    model_type = "llama"
    bos_token_id: int | None = 1
    eos_token_id: Any = 2
    pretraining_tp: int = 1
    attention_bias: bool = False
    mlp_bias: bool = False
    head_dim: int | None = None

    limits = {"pretraining_tp": (1, 1024)}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.head_dim is None and self.num_attention_heads:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def _attention_bias(self) -> tuple[bool, bool]:
        return bool(self.attention_bias), bool(self.attention_bias)

    def _mlp_bias(self) -> bool:
        return bool(self.mlp_bias)


class MistralConfig(_DecoderConfig):
    model_type = "mistral"
    intermediate_size: int = 14336
    num_key_value_heads: int = 8
    head_dim: int | None = None
    max_position_embeddings: int = 4096 * 32
    bos_token_id: int | None = 1
    eos_token_id: Any = 2
    sliding_window: int | None = 4096

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.head_dim is None and self.num_attention_heads:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def _layer_windows(self) -> list[int | None]:
        return [self.sliding_window] * self.num_hidden_layers


class Qwen2Config(_DecoderConfig):
    model_type = "qwen2"
    vocab_size: int = 151936
    intermediate_size: int = 22016
    num_key_value_heads: int = 32
    max_position_embeddings: int = 32768
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28
    layer_types: list[str] = None  # type: ignore[assignment]  # derived from the window fields in __init__

    limits = {"max_window_layers": (0, 1024)}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.use_sliding_window:
            self.sliding_window = None
        if self.layer_types is None:
            self.layer_types = [
                "sliding_attention"
                if self.sliding_window is not None and i >= self.max_window_layers
                else "full_attention"
                for i in range(self.num_hidden_layers)
            ]

    def _attention_bias(self) -> tuple[bool, bool]:
        return True, False

    def _layer_windows(self) -> list[int | None]:
        return layer_type_windows(self)


def layer_type_windows(config: Any) -> list[int | None]:
    """Windows from ``config.layer_types``: ``sliding_window`` for 'sliding_attention' layers, else ``None``."""
    kinds = config.layer_types
    if not isinstance(kinds, list) or len(kinds) != config.num_hidden_layers:
        raise ConfigError(
            f"{config.model_type} config has {len(kinds) if isinstance(kinds, list) else kinds!r} layer_types for "
            f"num_hidden_layers={config.num_hidden_layers}",
            hint="give one 'full_attention'/'sliding_attention' entry per layer, or drop layer_types",
        )
    unknown = sorted({str(kind) for kind in kinds} - {"full_attention", "sliding_attention"})
    if unknown:
        raise ConfigError(
            f"{config.model_type} config has layer_types {unknown}, this implementation knows "
            "'full_attention' and 'sliding_attention'",
            hint="give one 'full_attention'/'sliding_attention' entry per layer",
        )
    window = config.sliding_window or None
    return [window if kind == "sliding_attention" else None for kind in kinds]


class Qwen3Config(Qwen2Config):
    model_type = "qwen3"
    head_dim: int = 128
    attention_bias: bool = False
    _qk_norm: ClassVar[bool] = True

    def _attention_bias(self) -> tuple[bool, bool]:
        return bool(self.attention_bias), bool(self.attention_bias)


def _head_dim(config: Config) -> int:
    head_dim: int = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return head_dim


def check_config(config: _DecoderConfig) -> None:
    """Raise :class:`ConfigError` for a config no Llama-family model can be built from."""
    name = type(config).__name__
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    if not heads or not kv_heads or heads % kv_heads:
        raise ConfigError(
            f"{name}: num_attention_heads={heads} must be a positive multiple of num_key_value_heads={kv_heads}",
            hint="grouped-query attention shares each key/value head between an equal number of query heads",
        )
    if config.hidden_size % heads and _head_dim(config) == config.hidden_size // heads:  # a derived head_dim
        raise ConfigError(
            f"{name}: hidden_size={config.hidden_size} is not a multiple of num_attention_heads={heads}",
            hint="set head_dim explicitly or fix hidden_size / num_attention_heads",
        )
    if config._rotary_dim() % 2:
        raise ConfigError(
            f"{name}: the rotary dimension {config._rotary_dim()} (head_dim={_head_dim(config)}) must be even"
        )
    if config._activation() not in _ACTIVATIONS:
        raise ConfigError(
            f"{name}: {config._activation_key}={config._activation()!r} is not supported",
            hint=f"supported activations: {', '.join(sorted(_ACTIVATIONS))}",
        )
    pad = config.pad_token_id
    if pad is not None and not (isinstance(pad, int) and 0 <= pad < config.vocab_size):
        raise ConfigError(
            f"{name}: pad_token_id={pad!r} is not a token id below vocab_size={config.vocab_size}",
            hint="set pad_token_id to a valid id or null",
        )
    rope = config.rope_parameters
    kind = rope.get("rope_type")
    if any(isinstance(value, dict) for value in rope.values()):
        raise ConfigError(
            f"{name}: per-layer-type rope_parameters {sorted(rope)} are not supported by this architecture",
            hint="give one flat rope_parameters dict with rope_type and rope_theta",
        )
    if kind not in ROPE_TYPES:
        raise ConfigError(
            f"{name}: rope_type={kind!r} is not supported",
            hint=f"supported rope types: {', '.join(ROPE_TYPES)}",
        )
    missing = [key for key in ROPE_TYPES[kind] if rope.get(key) is None]
    if missing:
        raise ConfigError(
            f"{name}: rope_type={kind!r} needs rope_parameters {missing}, got {rope}",
            hint="complete rope_parameters (or rope_scaling in older config.json files)",
        )
    for key in ("short_factor", "long_factor") if kind == "longrope" else ():
        factors = rope[key]
        numbers = isinstance(factors, list) and all(type(f) in (int, float) for f in factors)
        if not numbers or len(factors) != config._rotary_dim() // 2:
            raise ConfigError(
                f"{name}: rope_parameters {key} must be a list of rotary_dim / 2 = {config._rotary_dim() // 2} "
                f"numbers, got {factors!r}",
                hint="longrope scales each rotary frequency by one factor",
            )
    bad_windows = sorted({w for w in config._layer_windows() if w is not None and (type(w) is not int or w < 1)})
    if bad_windows:
        raise ConfigError(
            f"{name}: sliding_window must be a positive number of tokens, got {bad_windows[0]!r}",
            hint="set sliding_window to the window size, or null for full attention",
        )


# --- rotary embeddings ----------------------------------------------------------
def rope_frequencies(
    config: _DecoderConfig, seq_len: torch.Tensor | None = None, *, long: bool = False
) -> tuple[torch.Tensor, float]:
    """Inverse frequencies ``[rotary_dim // 2]`` (float32) and the cos/sin scale, as transformers computes them.

    ``seq_len`` (a 0-d tensor) is only used by ``dynamic`` scaling beyond ``max_position_embeddings``;
    ``long`` picks ``longrope``'s ``long_factor`` (positions beyond ``original_max_position_embeddings``).
    """
    rope = config.rope_parameters
    kind = rope["rope_type"]
    base = rope["rope_theta"]
    dim = config._rotary_dim()
    if kind == "longrope":
        return _longrope_frequencies(config, base, dim, long)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    factor: Any = rope.get("factor")  # present for the rope types that use it (check_config)

    if kind == "dynamic":
        # NTK-aware base for sequences beyond max_position_embeddings (tensor maths on the
        # positions' device, python floats at rest: exactly as transformers does it).
        max_pos = config.max_position_embeddings
        length: int | torch.Tensor = max_pos
        if seq_len is not None:
            length = torch.maximum(seq_len, torch.tensor(max_pos, dtype=seq_len.dtype, device=seq_len.device))
            exponents = exponents.to(seq_len.device)
        base = base * ((factor * length / max_pos) - (factor - 1)) ** (dim / (dim - 2))

    inv_freq = 1.0 / (base**exponents)
    if kind == "linear":
        return inv_freq / factor, 1.0
    if kind == "llama3":
        old_context = rope["original_max_position_embeddings"]
        low, high = rope["low_freq_factor"], rope["high_freq_factor"]
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
        smooth = (old_context / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = ~(wavelen < old_context / high) * ~(wavelen > old_context / low)
        return torch.where(is_medium, smoothed, scaled), 1.0
    if kind == "yarn":
        return _yarn_frequencies(config, base, dim)
    return inv_freq, 1.0


def _yarn_frequencies(config: _DecoderConfig, base: float, dim: int) -> tuple[torch.Tensor, float]:
    rope = config.rope_parameters
    original = rope["original_max_position_embeddings"]
    factor = rope.get("factor") or config.max_position_embeddings / original
    attention_factor = rope.get("attention_factor")
    mscale, mscale_all_dim = rope.get("mscale"), rope.get("mscale_all_dim")

    def get_mscale(scale: float, m: float = 1) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)
    beta_fast = rope.get("beta_fast") or 32
    beta_slow = rope.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rope.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation_weight = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation_weight) + (1.0 / pos_freqs) * extrapolation_weight
    return inv_freq, attention_factor


def _longrope_frequencies(config: _DecoderConfig, base: float, dim: int, long: bool) -> tuple[torch.Tensor, float]:
    rope = config.rope_parameters
    original = rope["original_max_position_embeddings"]
    factor = rope.get("factor") or config.max_position_embeddings / original
    attention_factor = rope.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    ext_factors = torch.tensor(rope["long_factor" if long else "short_factor"], dtype=torch.float32)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (ext_factors * base**exponents), attention_factor


class RotaryEmbedding(nn.Module):
    """cos and sign-folded sin of ``position_ids * inv_freq``, each ``[batch, seq, rotary_dim]``.

    ``longrope`` keeps a second set, ``long_inv_freq``, used for every position of a forward
    whose positions reach beyond ``original_max_position_embeddings``.
    """

    inv_freq: torch.Tensor
    long_inv_freq: torch.Tensor

    def __init__(self, config: _DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters["rope_type"]
        self.attention_scaling = 1.0
        half = config._rotary_dim() // 2
        self.register_buffer("inv_freq", torch.empty(half, dtype=torch.float32), persistent=False)
        if self.rope_type == "longrope":
            self.register_buffer("long_inv_freq", torch.empty(half, dtype=torch.float32), persistent=False)
        self.reset_buffers()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Compute ``inv_freq`` (and the cos/sin scale) in place; a no-op on the meta device (model contract)."""
        if self.inv_freq.is_meta:
            return
        inv_freq, self.attention_scaling = rope_frequencies(self.config)
        self.inv_freq.copy_(inv_freq)
        if self.rope_type == "longrope":
            self.long_inv_freq.copy_(rope_frequencies(self.config, long=True)[0])

    def _apply(self, fn: Any, recurse: bool = True) -> RotaryEmbedding:
        # Module.to(dtype) would cast the frequencies; keep them float32 and only follow the device.
        kept = dict(self._buffers)
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]  # torch leaves Module._apply unannotated
        for name, buffer in kept.items():
            moved = self._buffers[name]
            if buffer is not None and moved is not None:
                self._buffers[name] = buffer.to(moved.device)
        return self

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq
        if self.rope_type == "dynamic":
            seq_len = position_ids.max() + 1
            if seq_len > self.config.max_position_embeddings:
                inv_freq = rope_frequencies(self.config, seq_len)[0].to(inv_freq.device)
        elif self.rope_type == "longrope":  # one set for the whole batch, chosen without a device sync
            beyond = position_ids.max() + 1 > self.config.rope_parameters["original_max_position_embeddings"]
            inv_freq = torch.where(beyond, self.long_inv_freq, inv_freq)
        freqs = position_ids[..., None].float() * inv_freq.float()
        cos, sin = freqs.cos(), freqs.sin()
        if self.attention_scaling != 1.0:
            cos, sin = cos * self.attention_scaling, sin * self.attention_scaling
        # sin carries rotate_half's sign: (-sin, sin), so rotation is x * cos + swap_halves(x) * sin.
        return torch.cat((cos, cos), dim=-1).to(dtype), torch.cat((-sin, sin), dim=-1).to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [batch, heads, seq, head_dim] by the :class:`RotaryEmbedding` outputs.

    Bit-for-bit transformers' ``x * cos + rotate_half(x) * sin`` with one negation fewer per call.
    With partial rotary (``cos`` narrower than the head) the remaining dimensions pass unchanged.
    """
    rotary = cos.shape[-1]
    if rotary != x.shape[-1]:
        return torch.cat((apply_rotary(x[..., :rotary], cos, sin), x[..., rotary:]), dim=-1)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos[:, None] + torch.cat((x2, x1), dim=-1) * sin[:, None]


# --- layers ---------------------------------------------------------------------
class RMSNorm(nn.Module):
    """Root-mean-square layer norm computed in float32, weight applied in the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), self.weight.shape, eps=self.eps)
        return self.weight * normed.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


class MLP(nn.Module):
    """Gated MLP ``down(act(gate(x)) * up(x))``; ``intermediate_size`` defaults to the config's (MoE experts
    pass their own)."""

    def __init__(self, config: _DecoderConfig, intermediate_size: int | None = None) -> None:
        super().__init__()
        bias = config._mlp_bias()
        inner = config.intermediate_size if intermediate_size is None else intermediate_size
        self.gate_proj = nn.Linear(config.hidden_size, inner, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, inner, bias=bias)
        self.down_proj = nn.Linear(inner, config.hidden_size, bias=bias)
        self.act = _ACTIVATIONS[config._activation()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
        return out


class Attention(nn.Module):
    """Grouped-query self-attention with rotary positions through ``scaled_dot_product_attention``.

    Subclasses change the projections (:meth:`init_projections`, :meth:`project`), the q/k norm
    (``norm_class``) or the attention itself (:meth:`_attend`).
    """

    #: The per-head query/key norm when the config asks for one (Qwen3).
    norm_class: ClassVar[type[RMSNorm]] = RMSNorm

    def __init__(self, config: _DecoderConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = _head_dim(config)
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.groups = self.num_heads // self.num_kv_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.init_projections(config)
        self.q_norm: nn.Module | None = None
        self.k_norm: nn.Module | None = None
        if config._qk_norm:
            self.q_norm = self.norm_class(self.head_dim, eps=config.rms_norm_eps)
            self.k_norm = self.norm_class(self.head_dim, eps=config.rms_norm_eps)

    def init_projections(self, config: _DecoderConfig) -> None:
        """The ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj`` linear layers."""
        qkv_bias, o_bias = config._attention_bias()
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, hidden, bias=o_bias)

    def project(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values, each ``[batch, seq, heads, head_dim]``."""
        shape = (*hidden_states.shape[:2], -1, self.head_dim)
        return (
            self.q_proj(hidden_states).view(shape),
            self.k_proj(hidden_states).view(shape),
            self.v_proj(hidden_states).view(shape),
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch, seq, _ = hidden_states.shape
        q, k, v = self.project(hidden_states)
        v = v.transpose(1, 2)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rotary(q.transpose(1, 2), cos, sin)
        k = apply_rotary(k.transpose(1, 2), cos, sin)
        if past is not None:
            if past[0].shape[1] != k.shape[1]:  # heads of this rank's shard under tensor parallelism
                raise ModelInputError(
                    f"past_key_values of layer {self.layer_idx} have {past[0].shape[1]} key/value heads, this "
                    f"attention computes {k.shape[1]}",
                    hint="pass back the past_key_values this model returned with use_cache=True",
                )
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        out = self._attend(q, k, v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1)), (k, v)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        batch, heads, seq, dim = q.shape
        kv_heads = k.shape[1]  # from the tensors: a tensor-parallel rank holds a share of the heads
        groups = heads // kv_heads
        if groups > 1 and seq == 1:
            # One query token: fold the query heads of each group onto the sequence axis, no key/value copies.
            out = F.scaled_dot_product_attention(
                q.reshape(batch, kv_heads, groups, dim),
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout,
                scale=self.scaling,
            )
            return out.reshape(batch, heads, 1, dim)
        gqa = groups > 1
        if gqa and mask is not None and q.device.type != "cpu":
            # Accelerator kernels refuse enable_gqa with a mask and fall back to math; repeat instead.
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
            gqa = False
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=dropout,
            scale=self.scaling,
            is_causal=mask is None and seq > 1,
            enable_gqa=gqa,
        )


class DecoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    Subclasses swap the parts: ``attention_class``, ``norm_class``, :meth:`feed_forward` (stored
    under ``feed_forward_name``, its checkpoint name), and what each branch adds to the residual
    stream (:meth:`attention_branch`, :meth:`feed_forward_branch`).
    """

    attention_class: ClassVar[type[Attention]] = Attention
    norm_class: ClassVar[type[RMSNorm]] = RMSNorm
    feed_forward_name: ClassVar[str] = "mlp"

    def __init__(self, config: _DecoderConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = self.attention_class(config, layer_idx)
        setattr(self, self.feed_forward_name, self.feed_forward(config, layer_idx))
        self.input_layernorm = self.norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = self.norm_class(config.hidden_size, eps=config.rms_norm_eps)

    def feed_forward(self, config: _DecoderConfig, layer_idx: int) -> nn.Module:
        """The block after attention (MoE families: a sparse block on some layers)."""
        return MLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attn, present = self.self_attn(self.input_layernorm(hidden_states), cos, sin, mask, past)
        hidden_states = hidden_states + self.attention_branch(attn)
        return hidden_states + self.feed_forward_branch(hidden_states), present

    def attention_branch(self, attn: torch.Tensor) -> torch.Tensor:
        """What the attention output adds to the residual stream."""
        return attn

    def feed_forward_branch(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """What the feed-forward block adds to the residual stream."""
        out: torch.Tensor = getattr(self, self.feed_forward_name)(self.post_attention_layernorm(hidden_states))
        return out


def causal_mask(
    attention_mask: torch.Tensor | None,
    query_length: int,
    past_length: int,
    window: int | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Boolean mask ``[batch or 1, 1, query, past + query]`` (True = attend), or ``None``
    when SDPA's own ``is_causal`` (or no mask, for a single query) gives the same result.

    Index ``j`` is visible from query ``i`` (absolute index ``past + i``) when ``j <= past + i``,
    ``j > past + i - window`` for sliding layers, and ``attention_mask[:, j]`` is set.
    """
    kv_length = past_length + query_length
    padded = attention_mask is not None and not bool(attention_mask.all())
    windowed = window is not None and kv_length > window
    if not padded and not windowed and (query_length == 1 or past_length == 0):
        return None
    q_index = torch.arange(past_length, kv_length, device=device)[:, None]
    kv_index = torch.arange(kv_length, device=device)[None, :]
    mask = kv_index <= q_index
    if window is not None:
        mask = mask & (kv_index > q_index - window)
    mask = mask[None, None]
    if padded and attention_mask is not None:
        mask = mask & attention_mask[:, None, None, :].bool()
    return mask


# --- models -----------------------------------------------------------------------
class _PreTrained(nn.Module):
    """Class attributes and weight init shared by every Llama-family model."""

    config_class: ClassVar[type[_DecoderConfig]] = _DecoderConfig
    base_model_prefix: ClassVar[str] = "model"

    def __init__(self, config: _DecoderConfig) -> None:
        super().__init__()
        self.config = config

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation: normal(0, initializer_range), zero biases and padding row, unit norms."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, RMSNorm):
            module.reset_parameters()


class DecoderModel(_PreTrained):
    """The bare decoder: token embeddings, decoder layers, final norm -> ``last_hidden_state``.

    Families change the parts through ``embedding_class``, ``layer_class`` (whose ``norm_class``
    is also the final norm), ``rotary_class``, :meth:`layer_positions` and ``mask_function``.
    """

    embedding_class: ClassVar[type[nn.Embedding]] = nn.Embedding
    layer_class: ClassVar[type[DecoderLayer]] = DecoderLayer
    rotary_class: ClassVar[Callable[..., nn.Module]] = RotaryEmbedding
    #: The attention mask of the layers with a given sliding window (signature of :func:`causal_mask`).
    mask_function: Callable[..., torch.Tensor | None] = staticmethod(causal_mask)

    def __init__(self, config: _DecoderConfig) -> None:
        self.check_config(config)
        super().__init__(config)
        self.embed_tokens = self.embedding_class(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(self.layer_class(config, i) for i in range(config.num_hidden_layers))
        self.norm = self.layer_class.norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = self.rotary_class(config)
        self.layer_windows = config._layer_windows()

    @staticmethod
    def check_config(config: Any) -> None:
        """Raise :class:`ConfigError` for a config this model cannot be built from."""
        check_config(config)

    def layer_positions(
        self, position_ids: torch.Tensor, dtype: torch.dtype
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The rotary ``(cos, sin)`` each layer uses (one pair for all, unless a family has several)."""
        cos_sin = self.rotary_emb(position_ids, dtype)
        return [cos_sin] * len(self.layers)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """``attention_mask`` [batch, past + seq] (1 = token, 0 = padding) covers the cached tokens too."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ModelInputError(
                f"{type(self).__name__} wants exactly one of input_ids and inputs_embeds, got "
                f"{'both' if input_ids is not None else 'neither'}"
            )
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, seq = hidden.shape[:2]
        past_length = self._check_past(past_key_values, batch)
        if attention_mask is not None and tuple(attention_mask.shape) != (batch, past_length + seq):
            raise ModelInputError(
                f"attention_mask must have shape (batch, past + seq) = {(batch, past_length + seq)}, "
                f"got {tuple(attention_mask.shape)}",
                hint="when decoding with past_key_values, pass the mask of the cached tokens plus the new ones",
            )
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + seq, device=hidden.device)[None]
        elif position_ids.dim() != 2 or position_ids.shape[1] != seq or position_ids.shape[0] not in (1, batch):
            raise ModelInputError(
                f"position_ids must have shape ({batch} or 1, {seq}) like the new tokens, "
                f"got {tuple(position_ids.shape)}",
                hint="give one position per new token (not per cached token)",
            )
        positions = self.layer_positions(position_ids, hidden.dtype)
        masks = {
            window: self.mask_function(attention_mask, seq, past_length, window, hidden.device)
            for window in set(self.layer_windows)
        }

        states = [hidden] if output_hidden_states else None
        presents = []
        for i, layer in enumerate(self.layers):
            past = past_key_values[i] if past_key_values is not None else None
            hidden, present = layer(hidden, *positions[i], masks[self.layer_windows[i]], past)
            if use_cache:
                presents.append(present)
            if states is not None:
                states.append(hidden)
        hidden = self.norm(hidden)
        if states is not None:
            states[-1] = hidden  # as transformers: the last entry is the normed output
        return BaseModelOutput(
            last_hidden_state=hidden,
            past_key_values=tuple(presents) if use_cache else None,
            hidden_states=tuple(states) if states is not None else None,
        )

    def _check_past(self, past_key_values: KVCache | None, batch: int) -> int:
        if past_key_values is None:
            return 0
        if len(past_key_values) != len(self.layers):
            raise ModelInputError(
                f"past_key_values has {len(past_key_values)} layers, the model has {len(self.layers)}",
                hint="pass back the past_key_values this model returned with use_cache=True",
            )
        key = past_key_values[0][0]
        want = (batch, _head_dim(self.config))  # the heads are checked per layer (a rank holds a share of them)
        if key.dim() != 4 or (key.shape[0], key.shape[3]) != want:
            raise ModelInputError(
                f"past_key_values tensors must be [batch, kv_heads, seq, head_dim] with "
                f"(batch, head_dim) = {want}, got {tuple(key.shape)}",
                hint="pass back the past_key_values this model returned with use_cache=True",
            )
        return key.shape[2]


# --- task heads (factory.models.heads): DecoderModel under ``model`` plus the head layers -------------
class _DecoderTask(heads.TaskModel, _PreTrained):
    """The base of the decoder heads; each family's classes set ``config_class`` and ``trunk_class``."""

    trunk_class: ClassVar[type[DecoderModel]] = DecoderModel


class DecoderForCausalLM(heads.CausalLM, _DecoderTask):
    """Next-token logits (``lm_head``, tied to ``embed_tokens`` when ``tie_word_embeddings``); ``generate``."""


class DecoderForSequenceClassification(heads.DecoderSequenceClassification, _DecoderTask):
    """Scores of the last non-padding token (``config.pad_token_id`` marks padding, left or right)."""


class DecoderForTokenClassification(heads.DecoderTokenClassification, _DecoderTask):
    """Per-token scores; ``labels`` [batch, seq] (-100 ignored) give the mean cross-entropy."""


class DecoderForQuestionAnswering(heads.QuestionAnswering, _DecoderTask):
    """Span start/end logits; positions outside the input are ignored in the loss."""


# --- the registered classes: one trunk and four heads per family ---------------------
class LlamaModel(DecoderModel):
    config_class = LlamaConfig


class LlamaForCausalLM(DecoderForCausalLM):
    config_class, trunk_class = LlamaConfig, LlamaModel


class LlamaForSequenceClassification(DecoderForSequenceClassification):
    config_class, trunk_class = LlamaConfig, LlamaModel


class LlamaForTokenClassification(DecoderForTokenClassification):
    config_class, trunk_class = LlamaConfig, LlamaModel


class LlamaForQuestionAnswering(DecoderForQuestionAnswering):
    config_class, trunk_class = LlamaConfig, LlamaModel
    base_model_prefix = "transformer"  # transformers' checkpoint keys for this head


class MistralModel(DecoderModel):
    config_class = MistralConfig


class MistralForCausalLM(DecoderForCausalLM):
    config_class, trunk_class = MistralConfig, MistralModel


class MistralForSequenceClassification(DecoderForSequenceClassification):
    config_class, trunk_class = MistralConfig, MistralModel


class MistralForTokenClassification(DecoderForTokenClassification):
    config_class, trunk_class = MistralConfig, MistralModel


class MistralForQuestionAnswering(DecoderForQuestionAnswering):
    config_class, trunk_class = MistralConfig, MistralModel


class Qwen2Model(DecoderModel):
    config_class = Qwen2Config


class Qwen2ForCausalLM(DecoderForCausalLM):
    config_class, trunk_class = Qwen2Config, Qwen2Model


class Qwen2ForSequenceClassification(DecoderForSequenceClassification):
    config_class, trunk_class = Qwen2Config, Qwen2Model


class Qwen2ForTokenClassification(DecoderForTokenClassification):
    config_class, trunk_class = Qwen2Config, Qwen2Model


class Qwen2ForQuestionAnswering(DecoderForQuestionAnswering):
    config_class, trunk_class = Qwen2Config, Qwen2Model
    base_model_prefix = "transformer"


class Qwen3Model(DecoderModel):
    config_class = Qwen3Config


class Qwen3ForCausalLM(DecoderForCausalLM):
    config_class, trunk_class = Qwen3Config, Qwen3Model


class Qwen3ForSequenceClassification(DecoderForSequenceClassification):
    config_class, trunk_class = Qwen3Config, Qwen3Model


class Qwen3ForTokenClassification(DecoderForTokenClassification):
    config_class, trunk_class = Qwen3Config, Qwen3Model


class Qwen3ForQuestionAnswering(DecoderForQuestionAnswering):
    config_class, trunk_class = Qwen3Config, Qwen3Model
    base_model_prefix = "transformer"
