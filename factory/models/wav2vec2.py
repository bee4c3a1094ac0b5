"""wav2vec 2.0 (Baevski et al., 2020), HuBERT (Hsu et al., 2021) and WavLM (Chen et al., 2021) in plain torch.

The three share one body, read from the raw waveform ``input_values [batch, samples]``:

* ``feature_extractor``: strided 1-D convolutions (``conv_dim``, ``conv_kernel``, ``conv_stride``), with a
  group norm on the first (``feat_extract_norm: group``, the base models) or a layer norm on each (``layer``);
* ``feature_projection``: layer norm (HuBERT: if ``feat_proj_layer_norm``) and a linear map to ``hidden_size``;
* ``encoder``: a grouped convolution over time as relative position embedding (``pos_conv_embed``, weight
  normalised as torch's ``parametrizations.weight_norm`` does, :class:`WeightNorm`: checkpoint keys
  ``...conv.parametrizations.weight.original0/1``; the legacy ``weight_g``/``weight_v`` of Hub checkpoints
  are read under those names; HuBERT's ``conv_pos_batch_norm`` variant has a batch norm instead), then
  transformer layers, post-norm or (with
  ``do_stable_layer_norm``) pre-norm. WavLM's attention adds a gated relative position bias (bucketed
  distances embedded in the first layer, gated per head and position from the layer's input).

Padded batches: ``attention_mask [batch, samples]`` becomes a frame mask (the frames a row's samples fill);
padded frames are zeroed before the position convolution and hidden from attention, as in transformers.
Training mode applies SpecAugment (``mask_time_prob``, ``mask_feature_prob``) with torch's generator;
``mask_time_indices`` masks given frames.

Classes (task -> class, per architecture):
    model                        Wav2Vec2Model, HubertModel, WavLMModel
    ctc                          Wav2Vec2ForCTC, HubertForCTC, WavLMForCTC
    audio-classification         Wav2Vec2ForSequenceClassification, HubertForSequenceClassification, WavLM...
    audio-frame-classification   Wav2Vec2ForAudioFrameClassification, WavLMForAudioFrameClassification
    audio-xvector                Wav2Vec2ForXVector, WavLMForXVector
    pretraining                  Wav2Vec2ForPreTraining (quantizer and contrastive loss)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.initialisation import default_init
from factory.models.layers import SelfAttention, activation, attend, padding_mask, run_layers
from factory.models.outputs import ModelOutput, PerLayer, Tensor


# --- configs ---------------------------------------------------------------------------
class _SpeechConfig(Config):
    """What the three configs share; defaults are transformers' (the base models)."""

    vocab_size: int | None = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: list[int] = [512, 512, 512, 512, 512, 512, 512]
    conv_stride: list[int] = [5, 2, 2, 2, 2, 2, 2]
    conv_kernel: list[int] = [10, 3, 3, 3, 3, 2, 2]
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    ctc_loss_reduction: str = "sum"
    ctc_zero_infinity: bool = False
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    num_feat_extract_layers: int = 7  # written by transformers; len(conv_dim) is what counts


class _QuantizerAndXVectorConfig(_SpeechConfig):
    num_codevectors_per_group: int = 320
    num_codevector_groups: int = 2
    contrastive_logits_temperature: float = 0.1
    num_negatives: int = 100
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    diversity_loss_weight: float = 0.1
    tdnn_dim: list[int] = [512, 512, 512, 512, 1500]
    tdnn_kernel: list[int] = [5, 3, 3, 1, 1]
    tdnn_dilation: list[int] = [1, 2, 3, 1, 1]
    xvector_output_dim: int = 512
    add_adapter: bool = False
    adapter_kernel_size: int = 3
    adapter_stride: int = 2
    num_adapter_layers: int = 3
    output_hidden_size: int | None = None  # None: hidden_size


class Wav2Vec2Config(_QuantizerAndXVectorConfig):
    """wav2vec 2.0 hyper-parameters; defaults are those of transformers' ``Wav2Vec2Config`` (wav2vec2-base)."""

    model_type = "wav2vec2"
    mask_feature_min_masks: int = 0
    feat_quantizer_dropout: float = 0.0
    adapter_attn_dim: int | None = None


class HubertConfig(_SpeechConfig):
    """HuBERT hyper-parameters; defaults are those of transformers' ``HubertConfig`` (hubert-base)."""

    model_type = "hubert"
    mask_feature_min_masks: int = 0
    feat_proj_layer_norm: bool = True
    conv_pos_batch_norm: bool = False


class WavLMConfig(_QuantizerAndXVectorConfig):
    """WavLM hyper-parameters; defaults are those of transformers' ``WavLMConfig`` (wavlm-base)."""

    model_type = "wavlm"
    num_buckets: int = 320
    max_bucket_distance: int = 800
    num_ctc_classes: int = 80
    ctc_loss_reduction: str = "mean"


def _check_config(config: _SpeechConfig, owner: str) -> None:
    convs = {k: getattr(config, k) for k in ("conv_dim", "conv_kernel", "conv_stride")}
    if len({len(v) for v in convs.values()}) != 1 or not convs["conv_dim"]:
        raise ConfigError(
            f"{owner}: conv_dim, conv_kernel and conv_stride must be non-empty lists of one length, found "
            + ", ".join(f"{k} of {len(v)}" for k, v in convs.items()),
            key="conv_dim",
            hint="give one dimension, kernel and stride per feature-encoder layer in config.json",
        )
    if config.feat_extract_norm not in ("group", "layer"):
        raise ConfigError(
            f"{owner}: feat_extract_norm must be 'group' or 'layer', found {config.feat_extract_norm!r}",
            key="feat_extract_norm",
            hint="fix feat_extract_norm in config.json",
        )
    if config.hidden_size % config.num_conv_pos_embedding_groups:
        raise ConfigError(
            f"{owner}: hidden_size ({config.hidden_size}) is not a multiple of num_conv_pos_embedding_groups "
            f"({config.num_conv_pos_embedding_groups})",
            key="num_conv_pos_embedding_groups",
            hint="fix hidden_size or num_conv_pos_embedding_groups in config.json",
        )
    activation(config.hidden_act, owner)
    activation(config.feat_extract_activation, owner, "feat_extract_activation")


# --- outputs -----------------------------------------------------------------------------
@dataclass
class Wav2Vec2BaseModelOutput(ModelOutput):
    """The trunk's output: ``last_hidden_state`` and the normed convolutional features ``extract_features``
    (``[batch, frames, conv_dim[-1]]``; not returned by HuBERT, as in transformers)."""

    last_hidden_state: Tensor = None
    extract_features: Tensor | None = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None


@dataclass
class XVectorOutput(ModelOutput):
    """Speaker embeddings (``embeddings``) and the AM-softmax classifier's ``logits``."""

    loss: Tensor | None = None
    logits: Tensor = None
    embeddings: Tensor = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None


@dataclass
class Wav2Vec2ForPreTrainingOutput(ModelOutput):
    """Projected context and quantized states; with ``sampled_negative_indices``, the contrastive and diversity
    losses (``loss`` = contrastive + ``diversity_loss_weight`` * diversity)."""

    loss: Tensor | None = None
    projected_states: Tensor = None
    projected_quantized_states: Tensor = None
    codevector_perplexity: Tensor = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None
    contrastive_loss: Tensor | None = None
    diversity_loss: Tensor | None = None


# --- the feature encoder -----------------------------------------------------------------
class ConvLayer(nn.Module):
    """One feature-encoder layer: ``conv``, then the norm (``layer_norm``: a group norm of one channel per
    group, or a layer norm over channels), then the activation."""

    def __init__(self, config: _SpeechConfig, index: int, norm: str | None) -> None:
        super().__init__()
        in_channels = config.conv_dim[index - 1] if index > 0 else 1
        out_channels = config.conv_dim[index]
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            config.conv_kernel[index],
            stride=config.conv_stride[index],
            bias=config.conv_bias,
        )
        self.layer_norm: nn.Module | None = None
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_channels, elementwise_affine=True)
        self.norm = norm
        self.act = activation(config.feat_extract_activation, "wav2vec2", "feat_extract_activation")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x) if self.norm == "group" else self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.act(x)


class FeatureEncoder(nn.Module):
    """``conv_layers``: the waveform ``[batch, samples]`` to features ``[batch, conv_dim[-1], frames]``."""

    def __init__(self, config: _SpeechConfig) -> None:
        super().__init__()
        group = config.feat_extract_norm == "group"
        self.conv_layers = nn.ModuleList(
            ConvLayer(config, i, ("group" if i == 0 else None) if group else "layer")
            for i in range(len(config.conv_dim))
        )

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """``layer_norm`` (unless HuBERT's ``feat_proj_layer_norm`` is false), ``projection``, dropout."""

    def __init__(self, config: _SpeechConfig) -> None:
        super().__init__()
        norm = getattr(config, "feat_proj_layer_norm", True)
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps) if norm else None
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.dropout = nn.Dropout(config.feat_proj_dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected states and the (normed) features they came from."""
        if self.layer_norm is not None:
            features = self.layer_norm(features)
        return self.dropout(self.projection(features)), features


# --- the transformer encoder ---------------------------------------------------------------
class WeightNorm(nn.Module):
    """torch's weight-norm parametrization (``weight = g * v / |v|``, the norm over every dimension but ``dim``),
    registered under the same names (``parametrizations.weight.original0`` = g, ``original1`` = v).

    Unlike ``torch.nn.utils.parametrizations.weight_norm`` it computes nothing for a weight on the meta device
    (torch's meta kernel for the norm imports ``torch._dynamo``: seconds of a cold build).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
        return torch._weight_norm(weight_v, weight_g, self.dim)

    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if weight.is_meta:
            shape = [1] * weight.dim()
            shape[self.dim] = weight.shape[self.dim]
            return torch.empty(shape, dtype=weight.dtype, device=weight.device), weight
        return torch.norm_except_dim(weight, 2, self.dim), weight


class PositionalConvEmbedding(nn.Module):
    """A grouped convolution over time (``conv``), weight-normalised over its kernel dimension (HuBERT's
    ``conv_pos_batch_norm``: a ``batch_norm`` before a plain convolution), then the activation; an even
    kernel's extra output frame is dropped."""

    def __init__(self, config: _SpeechConfig) -> None:
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        conv = nn.Conv1d(
            config.hidden_size,
            config.hidden_size,
            kernel_size=kernel,
            padding=kernel // 2,
            groups=config.num_conv_pos_embedding_groups,
        )
        self.batch_norm = nn.BatchNorm1d(config.hidden_size) if getattr(config, "conv_pos_batch_norm", False) else None
        if self.batch_norm is None:
            parametrize.register_parametrization(conv, "weight", WeightNorm(dim=2), unsafe=True)
        self.conv = conv
        self.remove = 1 if kernel % 2 == 0 else 0
        self.act = activation(config.feat_extract_activation, "wav2vec2", "feat_extract_activation")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states.transpose(1, 2)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        x = self.conv(x)
        if self.remove:
            x = x[:, :, : -self.remove]
        return self.act(x).transpose(1, 2)


class FeedForward(nn.Module):
    """``output_dense(act(intermediate_dense(x)))`` with dropouts."""

    def __init__(self, config: _SpeechConfig) -> None:
        super().__init__()
        self.intermediate_dropout = nn.Dropout(config.activation_dropout)
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act, "wav2vec2")
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(self.act(self.intermediate_dense(x)))
        out: torch.Tensor = self.output_dropout(self.output_dense(x))
        return out


class AttnAdapterLayer(nn.Module):
    """MMS's per-language adapter after a pre-norm layer (``adapter_attn_dim``): norm, linear, ReLU, linear."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size)
        self.linear_1 = nn.Linear(config.hidden_size, config.adapter_attn_dim)
        self.linear_2 = nn.Linear(config.adapter_attn_dim, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear_2(F.relu(self.linear_1(self.norm(x))))
        return out


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device: torch.device) -> torch.Tensor:
    """WavLM's (T5's) bidirectional buckets of ``key - query`` distances, ``[length, length]``: half the
    buckets per direction, exact below a quarter of them, logarithmic up to ``max_distance``."""
    positions = torch.arange(length, dtype=torch.long, device=device)
    relative = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).to(torch.long) * half
    relative = relative.abs()
    exact = half // 2
    large = exact + (torch.log(relative.float() / exact) / math.log(max_distance / exact) * (half - exact)).to(
        torch.long
    )
    large = torch.minimum(large, torch.full_like(large, half - 1))
    return buckets + torch.where(relative < exact, relative, large)


class WavLMAttention(SelfAttention):
    """Self-attention plus WavLM's gated relative position bias.

    The first layer embeds the bucketed distances (``rel_attn_embed``); every layer gates that bias per head
    and query position with ``gru_rel_pos_linear`` of its input and ``gru_rel_pos_const``.
    """

    def __init__(self, config: WavLMConfig, has_relative_position_bias: bool) -> None:
        super().__init__(
            config.hidden_size, config.num_attention_heads, owner="WavLM", dropout=config.attention_dropout
        )
        self.num_buckets, self.max_distance = config.num_buckets, config.max_bucket_distance
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 8)
        self.rel_attn_embed = nn.Embedding(self.num_buckets, self.num_heads) if has_relative_position_bias else None

    def position_bias(self, length: int) -> torch.Tensor:
        """``[heads, length, length]``: the embedded distance buckets (first layer only)."""
        assert self.rel_attn_embed is not None
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance, self.gru_rel_pos_const.device)
        bias: torch.Tensor = self.rel_attn_embed(buckets).permute(2, 0, 1)
        return bias

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool,
        position_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        gate_input = self.heads(hidden_states)  # the layer input split into heads, [batch, heads, T, head_dim]
        gates = self.gru_rel_pos_linear(gate_input).view(batch, self.num_heads, length, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(gates).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0  # [batch, heads, T, 1]
        bias = gate * position_bias[None]
        if mask is not None:
            bias = bias + mask
        dropout = self.dropout if self.training else 0.0
        out, probs = attend(
            *self.qkv(hidden_states), bias, scale=self.scale, dropout=dropout, output_attentions=output_attentions
        )
        if probs is not None:  # transformers returns torch's head-averaged weights, repeated per head
            probs = probs.mean(dim=1, keepdim=True).expand_as(probs)
        projected: torch.Tensor = self._modules["out_proj"](out.transpose(1, 2).reshape(batch, length, -1))  # type: ignore[misc]
        return projected, probs


class EncoderLayer(nn.Module):
    """Post-norm (``x = layer_norm(x + attention(x))``, ``x = final_layer_norm(x + feed_forward(x))``) or, with
    ``do_stable_layer_norm``, pre-norm (plus MMS's ``adapter_layer`` when ``adapter_attn_dim`` is set)."""

    def __init__(self, config: _SpeechConfig, attention: nn.Module) -> None:
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.attention = attention
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        adapter = self.stable and getattr(config, "adapter_attn_dim", None) is not None
        self.adapter_layer = AttnAdapterLayer(config) if adapter else None

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, output_attentions: bool, **options: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.stable:
            attended, probs = self.attention(x, mask, output_attentions, **options)
            x = self.layer_norm(x + self.dropout(attended))
            return self.final_layer_norm(x + self.feed_forward(x)), probs
        attended, probs = self.attention(self.layer_norm(x), mask, output_attentions, **options)
        x = x + self.dropout(attended)
        x = x + self.feed_forward(self.final_layer_norm(x))
        if self.adapter_layer is not None:
            x = x + self.adapter_layer(x)
        return x, probs


class Encoder(nn.Module):
    """``pos_conv_embed``, ``layer_norm`` (first, or last with ``do_stable_layer_norm``) and ``layers``.

    Layers are skipped at random in training (``layerdrop``; WavLM never skips the first, which holds the
    position embedding).
    """

    def __init__(self, config: _SpeechConfig) -> None:
        super().__init__()
        self.config = config
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.wavlm = isinstance(config, WavLMConfig)
        layers = range(config.num_hidden_layers)
        self.layers = nn.ModuleList(EncoderLayer(config, self._attention(config, i)) for i in layers)

    @staticmethod
    def _attention(config: _SpeechConfig, index: int) -> nn.Module:
        if isinstance(config, WavLMConfig):
            return WavLMAttention(config, has_relative_position_bias=index == 0)
        owner, heads_, dropout = type(config).__name__, config.num_attention_heads, config.attention_dropout
        return SelfAttention(config.hidden_size, heads_, owner=owner, dropout=dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        frame_mask: torch.Tensor | None,
        output_attentions: bool,
        output_hidden_states: bool,
    ) -> tuple[torch.Tensor, PerLayer, PerLayer]:
        if frame_mask is not None:
            hidden_states = hidden_states.masked_fill(~frame_mask[..., None], 0.0)
        mask = padding_mask(frame_mask, hidden_states.dtype)
        hidden_states = hidden_states + self.pos_conv_embed(hidden_states)
        if not self.config.do_stable_layer_norm:
            hidden_states = self.layer_norm(hidden_states)
        hidden_states = self.dropout(hidden_states)
        options: dict[str, Any] = {}
        if self.wavlm:
            first = cast(WavLMAttention, cast(EncoderLayer, self.layers[0]).attention)
            options["position_bias"] = first.position_bias(hidden_states.shape[1])
        hidden_states, all_hidden, attentions = run_layers(
            self._active_layers(), hidden_states, mask, output_attentions, output_hidden_states, **options
        )
        if self.config.do_stable_layer_norm:
            hidden_states = self.layer_norm(hidden_states)
        return hidden_states, all_hidden, attentions

    def _active_layers(self) -> list[nn.Module]:
        if not self.training or self.config.layerdrop <= 0:
            return list(self.layers)
        keep = torch.rand(len(self.layers)) >= self.config.layerdrop
        if self.wavlm:
            keep[0] = True
        return [layer for layer, kept in zip(self.layers, keep.tolist(), strict=True) if kept]


class AdapterLayer(nn.Module):
    """A strided convolution to twice the width, then a GLU."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        width = config.output_hidden_size or config.hidden_size
        self.conv = nn.Conv1d(width, 2 * width, config.adapter_kernel_size, stride=config.adapter_stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.conv(x), dim=1)


class Adapter(nn.Module):
    """``add_adapter``: an optional projection to ``output_hidden_size`` and ``num_adapter_layers`` strided
    :class:`AdapterLayer` s that shorten the sequence (for speech encoder-decoders)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        width = config.output_hidden_size or config.hidden_size
        self.proj = nn.Linear(config.hidden_size, width) if width != config.hidden_size else None
        self.proj_layer_norm = nn.LayerNorm(width) if width != config.hidden_size else None
        self.layers = nn.ModuleList(AdapterLayer(config) for _ in range(config.num_adapter_layers))
        self.layerdrop = config.layerdrop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None and self.proj_layer_norm is not None:
            x = self.proj_layer_norm(self.proj(x))
        x = x.transpose(1, 2)
        for layer in self.layers:
            if not self.training or float(torch.rand(())) > self.layerdrop:
                x = layer(x)
        return x.transpose(1, 2)


# --- SpecAugment ---------------------------------------------------------------------------
def compute_mask_indices(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    lengths: list[int] | None = None,
    min_masks: int = 0,
) -> torch.Tensor:
    """Random spans to mask, ``[batch, length]`` booleans (SpecAugment), drawn with torch's generator.

    transformers' algorithm: about ``mask_prob * length / mask_length`` spans of ``mask_length`` per row (at
    least ``min_masks``), starting at distinct positions of the row's ``lengths`` (spans may overlap).
    """
    batch, seq_len = shape
    if mask_length < 1 or mask_length > seq_len:
        raise ModelInputError(
            f"SpecAugment: mask_length must be from 1 to the sequence length ({seq_len}), found {mask_length}",
            hint="lower mask_time_length / mask_feature_length in config.json, or use longer inputs",
        )
    epsilon = float(torch.rand(()))

    def spans(length: int) -> int:
        n = max(int(mask_prob * length / mask_length + epsilon), min_masks)
        n = min(n, seq_len // mask_length)
        return max(min(n, length - (mask_length - 1)), 0)

    mask = torch.zeros(batch, seq_len, dtype=torch.bool)
    for row, length in enumerate(lengths or [seq_len] * batch):
        n = spans(length)
        if n == 0:
            continue
        starts = torch.randperm(length - (mask_length - 1))[:n]
        mask[row, (starts[:, None] + torch.arange(mask_length)).flatten().clamp(max=seq_len - 1)] = True
    return mask


# --- trunks ------------------------------------------------------------------------------------
class Wav2Vec2PreTrainedModel(nn.Module):
    """What every model of the family shares: config check, frame lengths and masks, init."""

    config_class: ClassVar[type[Config]] = Wav2Vec2Config
    base_model_prefix: ClassVar[str] = "wav2vec2"

    #: Heads that cannot read the adapter's shortened sequence (transformers refuses them too).
    refuses_adapter: ClassVar[bool] = False

    def __init__(self, config: _SpeechConfig) -> None:
        super().__init__()
        _check_config(config, type(self).__name__)
        if self.refuses_adapter and getattr(config, "add_adapter", False):
            raise ConfigError(
                f"{type(self).__name__} does not support the adapter (add_adapter is true)",
                key="add_adapter",
                hint="set add_adapter to false in config.json, or use the model or ctc task",
            )
        self.config = config

    def frame_lengths(self, input_lengths: torch.Tensor, add_adapter: bool | None = None) -> torch.Tensor:
        """How many frames inputs of ``input_lengths`` samples give (through the adapter too, by default when
        the config has one)."""
        config = self.config
        lengths = input_lengths
        for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        if getattr(config, "add_adapter", False) if add_adapter is None else add_adapter:
            for _ in range(config.num_adapter_layers):
                lengths = torch.div(lengths - 1, config.adapter_stride, rounding_mode="floor") + 1
        return lengths

    def frame_mask(self, frames: int, attention_mask: torch.Tensor, add_adapter: bool | None = None) -> torch.Tensor:
        """``[batch, frames]``: True for the frames each row's unpadded samples fill."""
        lengths = self.frame_lengths(attention_mask.sum(-1), add_adapter).to(torch.long)
        return torch.arange(frames, device=attention_mask.device)[None, :] < lengths[:, None]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation (normal linear layers, Kaiming convolutions, uniform codevectors...)."""
        config = self.config
        if isinstance(module, parametrize.ParametrizationList):  # the position convolution's weight norm: g = |v|
            direction, norm = module.get_parameter("original1"), module.get_parameter("original0")
            direction.normal_(0.0, 2 * math.sqrt(1 / (direction.shape[-1] * config.hidden_size)))
            norm.copy_(direction.norm(dim=(0, 1), keepdim=True))
        elif parametrize.is_parametrized(module):
            module.get_parameter("bias").zero_()
        elif isinstance(module, FeatureProjection):
            bound = math.sqrt(1 / module.projection.in_features)
            nn.init.uniform_(module.projection.weight, -bound, bound)
            nn.init.uniform_(module.projection.bias, -bound, bound)
        elif isinstance(module, GumbelVectorQuantizer):
            module.weight_proj.weight.normal_(0.0, 1.0)
            module.weight_proj.bias.zero_()
            nn.init.uniform_(module.codevectors)
        elif isinstance(module, nn.Conv1d):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                bound = math.sqrt(module.groups / (module.in_channels * module.kernel_size[0]))
                nn.init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, AMSoftmaxLoss):
            module.weight.normal_()
        elif isinstance(module, WavLMAttention):
            default_init(module, config.initializer_range)
            module.gru_rel_pos_const.fill_(1.0)
        else:
            default_init(module, config.initializer_range)
        if isinstance(module, Wav2Vec2Model) and module.masked_spec_embed is not None:
            nn.init.uniform_(module.masked_spec_embed)
        if isinstance(module, heads.TaskModel) and "layer_weights" in module._parameters:
            weights = module.get_parameter("layer_weights")
            weights.fill_(1.0 / weights.numel())


class Wav2Vec2Model(Wav2Vec2PreTrainedModel):
    """The wav2vec 2.0 body: ``feature_extractor``, ``feature_projection``, ``encoder`` (and ``adapter``).

    Returns :class:`Wav2Vec2BaseModelOutput`; ``hidden_states`` are the first layer's input, then every layer's
    output (before a stable-layer-norm model's final norm), as in transformers 5.
    """

    returns_extract_features: ClassVar[bool] = True

    def __init__(self, config: _SpeechConfig) -> None:
        super().__init__(config)
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        masking = config.mask_time_prob > 0 or config.mask_feature_prob > 0
        self.masked_spec_embed = nn.Parameter(torch.zeros(config.hidden_size)) if masking else None
        self.encoder = Encoder(config)
        self.adapter = Adapter(config) if getattr(config, "add_adapter", False) else None

    def get_input_embeddings(self) -> nn.Module:
        """The module that embeds the raw audio: the convolutional feature encoder."""
        return self.feature_extractor

    def freeze_feature_encoder(self) -> None:
        """Stop training the convolutional feature encoder (what fine-tuning recipes do)."""
        self.feature_extractor.requires_grad_(False)

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> Wav2Vec2BaseModelOutput:
        input_values = self._check_inputs(input_values, attention_mask)
        features = self.feature_extractor(input_values).transpose(1, 2)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = self.frame_mask(features.shape[1], attention_mask, add_adapter=False)
        hidden, features = self.feature_projection(features)
        hidden = self._mask_hidden_states(hidden, mask_time_indices, frame_mask)
        hidden, all_hidden, attentions = self.encoder(hidden, frame_mask, output_attentions, output_hidden_states)
        if self.adapter is not None:
            hidden = self.adapter(hidden)
        return Wav2Vec2BaseModelOutput(
            last_hidden_state=hidden,
            extract_features=features if self.returns_extract_features else None,
            hidden_states=all_hidden,
            attentions=attentions,
        )

    def _check_inputs(self, input_values: torch.Tensor | None, attention_mask: torch.Tensor | None) -> torch.Tensor:
        name = type(self).__name__
        if input_values is None or input_values.dim() != 2:
            found = None if input_values is None else tuple(input_values.shape)
            raise ModelInputError(
                f"{name}: input_values must be raw audio of shape (batch, samples), found {found}",
                hint="pass the feature extractor's input_values; add a batch dimension for one clip",
            )
        if attention_mask is not None and attention_mask.shape != input_values.shape:
            raise ModelInputError(
                f"{name}: attention_mask must have the shape of input_values {tuple(input_values.shape)}, "
                f"found {tuple(attention_mask.shape)}"
            )
        frames = int(self.frame_lengths(torch.tensor(input_values.shape[1]), add_adapter=False))
        if frames < 1:
            raise ModelInputError(
                f"{name}: {input_values.shape[1]} samples are too short for the feature encoder (no frame left)",
                hint="pad or concatenate the audio to at least a few hundred samples",
            )
        return input_values.to(self.feature_projection.projection.weight.dtype)

    def _mask_hidden_states(
        self, hidden: torch.Tensor, mask_time_indices: torch.Tensor | None, frame_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """SpecAugment: given frames (``mask_time_indices``) or, in training, random spans of frames become
        ``masked_spec_embed``; in training, random feature spans become zero."""
        config = self.config
        if not config.apply_spec_augment:
            return hidden
        batch, frames, width = hidden.shape
        if mask_time_indices is None and config.mask_time_prob > 0 and self.training:
            lengths = frame_mask.sum(-1).tolist() if frame_mask is not None else None
            mask_time_indices = compute_mask_indices(
                (batch, frames), config.mask_time_prob, config.mask_time_length, lengths, config.mask_time_min_masks
            ).to(hidden.device)
        if mask_time_indices is not None:
            if self.masked_spec_embed is None:
                raise ModelInputError(
                    f"{type(self).__name__}: mask_time_indices need masked_spec_embed, which this model does not "
                    "have (mask_time_prob and mask_feature_prob are 0)",
                    hint="leave mask_time_indices out, or use a checkpoint trained with masking",
                )
            embed = self.masked_spec_embed.to(hidden.dtype)
            hidden = torch.where(mask_time_indices.bool()[..., None], embed, hidden)
        if config.mask_feature_prob > 0 and self.training:
            features = compute_mask_indices(
                (batch, width),
                config.mask_feature_prob,
                config.mask_feature_length,
                None,
                getattr(config, "mask_feature_min_masks", 0),  # WavLM configs have none
            )
            features = features.to(hidden.device)
            hidden = hidden.masked_fill(features[:, None, :], 0.0)
        return hidden


class HubertPreTrainedModel(Wav2Vec2PreTrainedModel):
    config_class = HubertConfig
    base_model_prefix = "hubert"


class HubertModel(HubertPreTrainedModel, Wav2Vec2Model):
    """The HuBERT body: wav2vec 2.0's, without the quantizer's features in the output."""

    returns_extract_features = False


class WavLMPreTrainedModel(Wav2Vec2PreTrainedModel):
    config_class = WavLMConfig
    base_model_prefix = "wavlm"


class WavLMModel(WavLMPreTrainedModel, Wav2Vec2Model):
    """The WavLM body: wav2vec 2.0's with gated relative position bias in every attention layer."""


# --- task heads (factory.models.heads): the body under wav2vec2 / hubert / wavlm plus the head layers ------
def _lm_head(config: Any) -> nn.Module:
    width = (config.output_hidden_size or config.hidden_size) if getattr(config, "add_adapter", False) else None
    if config.vocab_size is None:
        raise ConfigError(
            "CTC: vocab_size is null, so the model has no output vocabulary",
            key="vocab_size",
            hint="set vocab_size in config.json (the tokenizer's vocabulary size)",
        )
    return nn.Linear(width or config.hidden_size, config.vocab_size)


_CTC_LAYERS = {"dropout": heads.dropout("final_dropout"), "lm_head": _lm_head}


class TDNNLayer(nn.Module):
    """A dilated 1-D convolution stored as a linear ``kernel`` (``[out, kernel_size * in]``), then ReLU."""

    def __init__(self, config: Any, index: int) -> None:
        super().__init__()
        self.in_dim = config.tdnn_dim[index - 1] if index > 0 else config.tdnn_dim[0]
        self.out_dim = config.tdnn_dim[index]
        self.kernel_size = config.tdnn_kernel[index]
        self.dilation = config.tdnn_dilation[index]
        self.kernel = nn.Linear(self.in_dim * self.kernel_size, self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.kernel.weight.view(self.out_dim, self.kernel_size, self.in_dim).transpose(1, 2)
        x = F.conv1d(x.transpose(1, 2), weight, self.kernel.bias, dilation=self.dilation)
        return F.relu(x.transpose(1, 2))


class AMSoftmaxLoss(nn.Module):
    """Additive-margin softmax over cosine similarities to ``weight [dim, num_labels]`` (scale 30, margin 0.4)."""

    def __init__(self, input_dim: int, num_labels: int, scale: float = 30.0, margin: float = 0.4) -> None:
        super().__init__()
        self.scale, self.margin, self.num_labels = scale, margin, num_labels
        self.weight = nn.Parameter(torch.zeros(input_dim, num_labels))

    def forward(self, hidden_states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.flatten()
        cos_theta = F.normalize(hidden_states, dim=1) @ F.normalize(self.weight, dim=0)
        onehot = F.one_hot(labels, self.num_labels).bool()
        return F.cross_entropy(self.scale * torch.where(onehot, cos_theta - self.margin, cos_theta), labels)


def _tdnn(config: Any) -> nn.Module:
    return nn.ModuleList(TDNNLayer(config, i) for i in range(len(config.tdnn_dim)))


class GumbelVectorQuantizer(nn.Module):
    """Product quantization of the features: ``num_codevector_groups`` choices among
    ``num_codevectors_per_group`` ``codevectors`` each (Gumbel-softmax in training, argmax otherwise)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.num_groups, self.num_vars = config.num_codevector_groups, config.num_codevectors_per_group
        if config.codevector_dim % self.num_groups:
            raise ConfigError(
                f"wav2vec2: codevector_dim ({config.codevector_dim}) must be a multiple of num_codevector_groups "
                f"({self.num_groups})",
                key="codevector_dim",
                hint="fix codevector_dim or num_codevector_groups in config.json",
            )
        group_dim = config.codevector_dim // self.num_groups
        self.codevectors = nn.Parameter(torch.zeros(1, self.num_groups * self.num_vars, group_dim))
        self.weight_proj = nn.Linear(config.conv_dim[-1], self.num_groups * self.num_vars)
        self.temperature = 2.0

    @staticmethod
    def perplexity(probs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``exp(entropy)`` of the mean choice distribution per group (over the masked frames), summed."""
        if mask is not None:
            probs = torch.where(mask.flatten()[:, None, None], probs, torch.zeros_like(probs))
            marginal = probs.sum(dim=0) / mask.sum()
        else:
            marginal = probs.mean(dim=0)
        return torch.exp(-torch.sum(torch.xlogy(marginal, marginal), dim=-1)).sum()

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, _ = features.shape
        logits = self.weight_proj(features).view(batch * frames * self.num_groups, -1)
        if self.training:
            probs = F.gumbel_softmax(logits.float(), tau=self.temperature, hard=True).type_as(logits)
            soft = torch.softmax(logits.view(batch * frames, self.num_groups, -1).float(), dim=-1)
            perplexity = self.perplexity(soft, mask)
        else:
            probs = torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
            perplexity = self.perplexity(probs.view(batch * frames, self.num_groups, -1), mask)
        chosen = probs.view(batch * frames, -1).unsqueeze(-1) * self.codevectors
        codevectors = chosen.view(batch * frames, self.num_groups, self.num_vars, -1).sum(-2)
        return codevectors.view(batch, frames, -1), perplexity


def _xvector_projector(config: Any) -> nn.Module:
    return nn.Linear(config.hidden_size, config.tdnn_dim[0])


def _statistics_projection(config: Any) -> nn.Module:
    return nn.Linear(config.tdnn_dim[-1] * 2, config.xvector_output_dim)


def _xvector_classifier(config: Any) -> nn.Module:
    return nn.Linear(config.xvector_output_dim, config.xvector_output_dim)


def _objective(config: Any) -> nn.Module:
    return AMSoftmaxLoss(config.xvector_output_dim, config.num_labels)


class XVector(heads.AudioTaskModel):
    """Speaker embeddings: ``projector``, the ``tdnn`` layers, mean and standard deviation over each row's
    frames, ``feature_extractor`` (the embedding), ``classifier``; AM-softmax loss (``objective``)."""

    output_class = XVectorOutput
    head_layers = {
        "projector": _xvector_projector,
        "tdnn": _tdnn,
        "feature_extractor": _statistics_projection,
        "classifier": _xvector_classifier,
        "objective": _objective,
    }
    projector: nn.Linear
    tdnn: nn.ModuleList
    feature_extractor: nn.Linear
    classifier: nn.Linear
    objective: AMSoftmaxLoss

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        hidden = self.projector(self.pool(out, inputs))
        for layer in self.tdnn:
            hidden = layer(hidden)
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None:
            mean, std = hidden.mean(dim=1), hidden.std(dim=1)
        else:
            lengths = self.audio_trunk.frame_lengths(attention_mask.sum(dim=1))
            for kernel in self.config.tdnn_kernel:  # transformers' count: stride 1, the dilation left out
                lengths = lengths - kernel + 1
            rows = [hidden[i, : int(n)] for i, n in enumerate(lengths)]
            mean = torch.stack([row.mean(dim=0) for row in rows])
            std = torch.stack([row.std(dim=0) for row in rows])
        embeddings = self.feature_extractor(torch.cat([mean, std], dim=-1))
        return {"logits": self.classifier(embeddings), "embeddings": embeddings}

    def loss(self, logits: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.objective(logits, labels)
        return out


def _feature_dropout(config: Any) -> nn.Module:
    return nn.Dropout(config.feat_quantizer_dropout)


def _project_hidden(config: Any) -> nn.Module:
    return nn.Linear(config.hidden_size, config.proj_codevector_dim)


def _project_quantized(config: Any) -> nn.Module:
    return nn.Linear(config.codevector_dim, config.proj_codevector_dim)


# --- wav2vec2 ---------------------------------------------------------------------------------------------------
class Wav2Vec2TaskModel(heads.TaskModel, Wav2Vec2PreTrainedModel):
    """The base of the wav2vec 2.0 heads: a :class:`Wav2Vec2Model` under ``wav2vec2``."""

    trunk_class = Wav2Vec2Model
    main_input_name = "input_values"


class Wav2Vec2ForCTC(heads.CTC, Wav2Vec2TaskModel):
    """Per-frame vocabulary logits (``lm_head``) and the CTC loss."""

    head_layers = _CTC_LAYERS


class Wav2Vec2ForSequenceClassification(heads.AudioClassification, Wav2Vec2TaskModel):
    """One label per utterance (keyword spotting, emotion, language id)."""

    refuses_adapter = True


class Wav2Vec2ForAudioFrameClassification(heads.AudioFrameClassification, Wav2Vec2TaskModel):
    """A label per frame (speaker diarization)."""

    refuses_adapter = True


class Wav2Vec2ForXVector(XVector, Wav2Vec2TaskModel):
    """Speaker embeddings (x-vectors) and their AM-softmax classifier."""


class Wav2Vec2ForPreTraining(Wav2Vec2TaskModel):
    """Self-supervised pre-training: the context (``project_hid``) of masked frames should pick their quantized
    features (``quantizer``, ``project_q``) among ``sampled_negative_indices [batch, frames, negatives]``
    (flat indices into ``batch * frames``) given with ``mask_time_indices [batch, frames]``."""

    output_class = Wav2Vec2ForPreTrainingOutput
    label_names = ("sampled_negative_indices",)
    loss_inputs = ("mask_time_indices",)
    head_layers = {
        "dropout_features": _feature_dropout,
        "quantizer": GumbelVectorQuantizer,
        "project_hid": _project_hidden,
        "project_q": _project_quantized,
    }
    dropout_features: nn.Dropout
    quantizer: GumbelVectorQuantizer
    project_hid: nn.Linear
    project_q: nn.Linear

    def set_gumbel_temperature(self, temperature: float) -> None:
        """The Gumbel-softmax temperature of the quantizer in training (annealed by pre-training recipes)."""
        self.quantizer.temperature = temperature

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        mask = inputs.get("mask_time_indices")
        mask = mask.bool() if mask is not None else None
        features = self.dropout_features(out.extract_features)
        quantized, perplexity = self.quantizer(features, mask)
        return {
            "projected_states": self.project_hid(out.last_hidden_state),
            "projected_quantized_states": self.project_q(quantized.to(self.project_q.weight.dtype)),
            "codevector_perplexity": perplexity,
        }

    def loss(
        self,
        projected_states: torch.Tensor,
        projected_quantized_states: torch.Tensor,
        codevector_perplexity: torch.Tensor,
        sampled_negative_indices: torch.Tensor,
        mask_time_indices: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        if mask_time_indices is None:
            raise ModelInputError(
                "Wav2Vec2ForPreTraining: the contrastive loss needs mask_time_indices with sampled_negative_indices",
                hint="pass the mask the negatives were sampled for (mask_time_indices [batch, frames])",
            )
        config = self.config
        quantized = projected_quantized_states
        batch, frames, width = quantized.shape
        negatives = quantized.reshape(-1, width)[sampled_negative_indices.long().reshape(-1)]
        negatives = negatives.view(batch, frames, -1, width).permute(2, 0, 1, 3)
        targets = torch.cat([quantized[None], negatives], dim=0)
        logits = torch.cosine_similarity(projected_states.float(), targets.float(), dim=-1).type_as(targets)
        logits = logits / config.contrastive_logits_temperature
        negative_is_positive = (quantized == negatives).all(-1)
        if negative_is_positive.any():
            logits[1:][negative_is_positive] = float("-inf")
        logits = logits.transpose(0, 2).reshape(-1, logits.size(0))
        labels = ((1 - mask_time_indices.long()) * -100).transpose(0, 1).flatten()
        contrastive = F.cross_entropy(logits.float(), labels, reduction="sum")
        codevectors = config.num_codevectors_per_group * config.num_codevector_groups
        diversity = ((codevectors - codevector_perplexity) / codevectors) * mask_time_indices.sum()
        return {
            "loss": contrastive + config.diversity_loss_weight * diversity,
            "contrastive_loss": contrastive,
            "diversity_loss": diversity,
        }


# --- hubert ------------------------------------------------------------------------------------------------------
class HubertTaskModel(heads.TaskModel, HubertPreTrainedModel):
    """The base of the HuBERT heads: a :class:`HubertModel` under ``hubert``."""

    trunk_class = HubertModel
    main_input_name = "input_values"


class HubertForCTC(heads.CTC, HubertTaskModel):
    """Per-frame vocabulary logits (``lm_head``) and the CTC loss."""

    head_layers = _CTC_LAYERS


class HubertForSequenceClassification(heads.AudioClassification, HubertTaskModel):
    """One label per utterance."""

    refuses_adapter = True


# --- wavlm -------------------------------------------------------------------------------------------------------
class WavLMTaskModel(heads.TaskModel, WavLMPreTrainedModel):
    """The base of the WavLM heads: a :class:`WavLMModel` under ``wavlm``."""

    trunk_class = WavLMModel
    main_input_name = "input_values"


class WavLMForCTC(heads.CTC, WavLMTaskModel):
    """Per-frame vocabulary logits (``lm_head``) and the CTC loss."""

    head_layers = _CTC_LAYERS


class WavLMForSequenceClassification(heads.AudioClassification, WavLMTaskModel):
    """One label per utterance."""

    refuses_adapter = True


class WavLMForAudioFrameClassification(heads.AudioFrameClassification, WavLMTaskModel):
    """A label per frame (speaker diarization)."""

    refuses_adapter = True


class WavLMForXVector(XVector, WavLMTaskModel):
    """Speaker embeddings (x-vectors) and their AM-softmax classifier."""


__all__ = [
    "HubertConfig",
    "HubertForCTC",
    "HubertForSequenceClassification",
    "HubertModel",
    "Wav2Vec2Config",
    "Wav2Vec2ForAudioFrameClassification",
    "Wav2Vec2ForCTC",
    "Wav2Vec2ForPreTraining",
    "Wav2Vec2ForSequenceClassification",
    "Wav2Vec2ForXVector",
    "Wav2Vec2Model",
    "WavLMConfig",
    "WavLMForAudioFrameClassification",
    "WavLMForCTC",
    "WavLMForSequenceClassification",
    "WavLMForXVector",
    "WavLMModel",
]
