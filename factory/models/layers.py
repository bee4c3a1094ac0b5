"""Layers the bidirectional encoder families share (ViT, CLIP, SigLIP, wav2vec2 and its relatives).

* :func:`attend`: scaled dot-product attention over ``[batch, heads, seq, head_dim]`` tensors, through
  ``scaled_dot_product_attention``, or an explicit softmax when the probabilities are wanted;
* :class:`SelfAttention`: ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` around :func:`attend`;
* :class:`MLP`: ``fc1``, the activation, ``fc2``;
* :class:`EncoderLayer` / :class:`Encoder`: the pre-norm layer of CLIP and SigLIP (``layer_norm1``, ``self_attn``,
  ``layer_norm2``, ``mlp``) and its stack under ``layers``;
* :func:`run_layers`: a layer stack with the hidden states and attentions transformers returns
  (the first layer's input, then every layer's output);
* masks: :func:`padding_mask` (keys), :func:`causal_padding_mask` (CLIP's text tower). They are additive float
  masks with the dtype's most negative value where a key is hidden, as transformers' eager attention adds,
  so a row that sees no key at all averages over every key instead of turning into NaN;
* :func:`interpolate_positions`: a square table of patch position embeddings resized (bicubic) to another grid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models.bert import ACTIVATIONS


def activation(name: str, owner: str, key: str = "hidden_act") -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function ``name`` (transformers' ACT2FN names), or a :class:`ConfigError` naming ``key``."""
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"{owner}: {key} {name!r} is not supported; supported: {sorted(ACTIVATIONS)}",
            key=key,
            hint=f"fix {key} in config.json, or register your own model class",
        )
    return ACTIVATIONS[name]


def check_pixel_values(pixel_values: torch.Tensor | None, config: Any, owner: str) -> torch.Tensor:
    """``pixel_values [batch, num_channels, height, width]``, or a :class:`ModelInputError` saying what was found."""
    if pixel_values is None:
        raise ModelInputError(f"{owner}: pixel_values are required", hint="pass pixel_values from the image processor")
    if pixel_values.dim() != 4 or pixel_values.shape[1] != config.num_channels:
        raise ModelInputError(
            f"{owner}: pixel_values must have shape (batch, {config.num_channels}, height, width), "
            f"found {tuple(pixel_values.shape)}",
            hint="add a batch dimension, or check num_channels in config.json",
        )
    return pixel_values


def check_input_ids(input_ids: torch.Tensor | None, config: Any, owner: str) -> torch.Tensor:
    """``input_ids [batch, seq]`` no longer than the position table, or a :class:`ModelInputError`."""
    if input_ids is None:
        raise ModelInputError(f"{owner}: input_ids are required", hint="pass input_ids from the tokenizer")
    if input_ids.dim() != 2:
        raise ModelInputError(
            f"{owner}: input_ids must have shape (batch, seq_len), found {tuple(input_ids.shape)}",
            hint="add a batch dimension, e.g. input_ids[None]",
        )
    if input_ids.shape[1] > config.max_position_embeddings:
        raise ModelInputError(
            f"{owner}: sequence length {input_ids.shape[1]} exceeds max_position_embeddings "
            f"({config.max_position_embeddings})",
            hint="truncate the inputs (tokenizer truncation=True, max_length=max_position_embeddings)",
        )
    return input_ids


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    scale: float,
    dropout: float = 0.0,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention over ``[batch, heads, seq, head_dim]``; ``mask`` is additive (``[batch or 1, 1, q, k]``) or None.

    Returns the output ``[batch, heads, q, head_dim]`` and, with ``output_attentions``, the probabilities
    (softmax in float32, as transformers' eager attention).
    """
    if not output_attentions:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale), None
    scores = (q @ k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
    return F.dropout(probs, dropout, training=dropout > 0) @ v, probs


def padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``[batch, 1, 1, keys]`` additive mask hiding the keys where ``attention_mask`` is 0; None when none is."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    hidden = ~attention_mask.bool()[:, None, None, :]
    return torch.zeros(hidden.shape, dtype=dtype, device=attention_mask.device).masked_fill(
        hidden, torch.finfo(dtype).min
    )


def causal_padding_mask(
    attention_mask: torch.Tensor | None, seq_len: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``[batch or 1, 1, seq, seq]`` additive mask: each position sees itself and earlier, unpadded positions."""
    visible = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()[None, None]
    if attention_mask is not None:
        visible = visible & attention_mask.bool().to(device)[:, None, None, :]
    return torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill(~visible, torch.finfo(dtype).min)


def interpolate_positions(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``[1, n, dim]`` position embeddings of a square ``sqrt(n) x sqrt(n)`` grid to ``height x width``.

    Bicubic, ``align_corners=False``, as transformers' ``interpolate_pos_encoding`` (from DINO).
    """
    side = int(table.shape[1] ** 0.5)
    dim = table.shape[-1]
    grid = table.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, -1, dim)


def image_positions(
    table: torch.Tensor, num_patches: int, height: int, width: int, patch_size: tuple[int, int], class_token: bool
) -> torch.Tensor:
    """The ``[1, (1 +) patches, dim]`` position table for an image of ``height x width`` pixels.

    The trained table when the image has its patch count and is square (as transformers decides), else the patch
    part resized to the image's grid (:func:`interpolate_positions`), the class token's row kept in front.
    """
    first = int(class_token)
    if num_patches == table.shape[1] - first and height == width:
        return table
    resized = interpolate_positions(table[:, first:], height // patch_size[0], width // patch_size[1])
    return torch.cat((table[:, :first], resized), dim=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``q_proj``, ``k_proj``, ``v_proj`` and the output projection ``out_proj``.

    A subclass renames the projections with ``projection_names`` and ``output_name`` (ViT: ``query``, ``key``,
    ``value`` and no output projection here, ``None``, as its checkpoints keep it in another module). The
    projections are ``num_heads * head_dim`` wide; ``head_dim`` defaults to ``hidden_size // num_heads``, which
    must then divide.
    """

    projection_names: ClassVar[tuple[str, str, str]] = ("q_proj", "k_proj", "v_proj")
    output_name: ClassVar[str | None] = "out_proj"

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        owner: str,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if head_dim is None:
            if hidden_size % num_heads:
                raise ConfigError(
                    f"{owner}: hidden_size ({hidden_size}) is not a multiple of num_attention_heads ({num_heads})",
                    key="num_attention_heads",
                    hint="fix hidden_size or num_attention_heads in config.json",
                )
            head_dim = hidden_size // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.dropout = dropout
        inner = num_heads * head_dim
        for name in self.projection_names:
            setattr(self, name, nn.Linear(hidden_size, inner, bias=qkv_bias))
        if self.output_name is not None:
            setattr(self, self.output_name, nn.Linear(inner, hidden_size))

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, seq, heads * head_dim]`` -> ``[batch, heads, seq, head_dim]`` (heads counted from the width,
        so a tensor-parallel shard of the projections splits into its own heads)."""
        return x.view(*x.shape[:2], -1, self.head_dim).transpose(1, 2)

    def qkv(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The query, key and value projections, split into heads."""
        q, k, v = (self.heads(self._modules[name](hidden_states)) for name in self.projection_names)  # type: ignore[misc]
        return q, k, v

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, probs = attend(
            *self.qkv(hidden_states),
            mask,
            scale=self.scale,
            dropout=self.dropout if self.training else 0.0,
            output_attentions=output_attentions,
        )
        merged = out.transpose(1, 2).reshape(*hidden_states.shape[:2], -1)
        if self.output_name is None:
            return merged, probs
        projected: torch.Tensor = self._modules[self.output_name](merged)  # type: ignore[misc]
        return projected, probs


class MLP(nn.Module):
    """``fc2(act(fc1(x)))``."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(self.act(self.fc1(x)))
        return out


class EncoderLayer(nn.Module):
    """CLIP's and SigLIP's pre-norm layer: ``x + self_attn(layer_norm1(x))``, then ``x + mlp(layer_norm2(x))``."""

    def __init__(self, config: Any, owner: str) -> None:
        super().__init__()
        self.self_attn = SelfAttention(
            config.hidden_size, config.num_attention_heads, owner=owner, dropout=config.attention_dropout
        )
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config.hidden_size, config.intermediate_size, activation(config.hidden_act, owner))
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.self_attn(self.layer_norm1(hidden_states), mask, output_attentions)
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.layer_norm2(hidden_states)), probs


class Encoder(nn.Module):
    """``num_hidden_layers`` :class:`EncoderLayer` s under ``layers``."""

    def __init__(self, config: Any, owner: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config, owner) for _ in range(config.num_hidden_layers))

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        return run_layers(self.layers, hidden_states, mask, output_attentions, output_hidden_states)


def run_layers(
    layers: Iterable[nn.Module],
    hidden_states: torch.Tensor,
    mask: torch.Tensor | None,
    output_attentions: bool,
    output_hidden_states: bool,
    **options: Any,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
    """Run ``layer(hidden, mask, output_attentions, **options) -> (hidden, probs)`` for each layer.

    Returns the last output, the hidden states (the first layer's input, then every layer's output) and the
    attention probabilities, each None unless asked for.
    """
    all_hidden = [hidden_states] if output_hidden_states else None
    all_attentions: list[torch.Tensor] | None = [] if output_attentions else None
    for layer in layers:
        hidden_states, probs = layer(hidden_states, mask, output_attentions, **options)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
        if all_attentions is not None and probs is not None:
            all_attentions.append(probs)
    return (
        hidden_states,
        tuple(all_hidden) if all_hidden is not None else None,
        tuple(all_attentions) if all_attentions is not None else None,
    )


class TextEmbeddings(nn.Module):
    """CLIP's and SigLIP's text embeddings: ``token_embedding`` plus learned ``position_embedding``."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if position_ids is None:
            positions = self.position_embedding.weight[: input_ids.shape[-1]]
        else:
            positions = self.position_embedding(position_ids)
        out: torch.Tensor = self.token_embedding(input_ids) + positions
        return out


class VisionEmbeddings(nn.Module):
    """CLIP's and SigLIP's image embeddings: square patches through ``patch_embedding`` (a strided convolution),
    an optional learned ``class_embedding`` in front (CLIP), plus learned ``position_embedding``."""

    def __init__(self, config: Any, *, class_token: bool, conv_bias: bool) -> None:
        super().__init__()
        self.image_size, self.patch_size = config.image_size, config.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size)) if class_token else None
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size, bias=conv_bias
        )
        self.num_patches = (config.image_size // config.patch_size) ** 2
        self.position_embedding = nn.Embedding(self.num_patches + int(class_token), config.hidden_size)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        if not interpolate_pos_encoding and (height, width) != (self.image_size, self.image_size):
            raise ModelInputError(
                f"input image size ({height}*{width}) doesn't match the model ({self.image_size}*{self.image_size})",
                hint="resize the image (the image processor does), or pass interpolate_pos_encoding=True",
            )
        weight = self.patch_embedding.weight
        embeddings = self.patch_embedding(pixel_values.to(weight.dtype)).flatten(2).transpose(1, 2)
        patches, class_token = embeddings.shape[1], self.class_embedding is not None
        if self.class_embedding is not None:
            embeddings = torch.cat((self.class_embedding.expand(batch, 1, -1), embeddings), dim=1)
        table = self.position_embedding.weight[None]
        if interpolate_pos_encoding:
            patch = (self.patch_size, self.patch_size)
            table = image_positions(table, patches, height, width, patch, class_token)
        out: torch.Tensor = embeddings + table
        return out
