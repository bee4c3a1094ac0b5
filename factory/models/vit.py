"""ViT (Dosovitskiy et al., 2020) in plain torch: patches, a class token, learned positions, a pre-norm encoder.

Parameter names are the checkpoint keys (``vit.encoder.layer.0.attention.attention.query``...): those of the
Hub checkpoints, which transformers 5's ``save_pretrained`` still writes although its modules are named
otherwise in memory (``vit.layers.0.attention.q_proj``...); a state dict saved under those names is read
through ``_checkpoint_conversion_mapping``.

``interpolate_pos_encoding=True`` resizes the position table (bicubic) for images of another size; without
it the image must have the configured size.

Classes (task -> class):
    model                   ViTModel
    image-classification    ViTForImageClassification (the class token's final state)
    masked-image-modeling   ViTForMaskedImageModeling (SimMIM: a 1x1 convolution and pixel shuffle)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.initialisation import default_init
from factory.models.layers import (
    SelfAttention,
    activation,
    check_pixel_values,
    image_positions,
    padding_mask,
    run_layers,
)
from factory.models.outputs import BaseModelOutput, MaskedImageModelingOutput


class ViTConfig(Config):
    """ViT hyper-parameters; defaults are those of transformers' ``ViTConfig`` (ViT-Base/16 at 224 pixels)."""

    model_type = "vit"
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | list[int] = 224
    patch_size: int | list[int] = 16
    num_channels: int = 3
    qkv_bias: bool = True
    encoder_stride: int = 16
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"


def pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of an int or a two-element sequence."""
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)


class ViTPatchEmbeddings(nn.Module):
    """Non-overlapping patches projected by a strided convolution (``projection``), flattened to a sequence."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.image_size, self.patch_size = pair(config.image_size), pair(config.patch_size)
        self.num_patches = (self.image_size[0] // self.patch_size[0]) * (self.image_size[1] // self.patch_size[1])
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.projection(pixel_values).flatten(2).transpose(1, 2)
        return out


class ViTEmbeddings(nn.Module):
    """Class token, patch embeddings (masked patches replaced by ``mask_token``) and position embeddings."""

    def __init__(self, config: ViTConfig, use_mask_token: bool = False) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.patch_embeddings = ViTPatchEmbeddings(config)
        positions = self.patch_embeddings.num_patches + 1
        self.position_embeddings = nn.Parameter(torch.zeros(1, positions, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        embeddings = self.patch_embeddings(pixel_values)
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ModelInputError(
                    "ViT: bool_masked_pos needs a model with a mask token (ViTForMaskedImageModeling)",
                    hint="build the masked-image-modeling task, or leave bool_masked_pos out",
                )
            mask = bool_masked_pos.unsqueeze(-1).type_as(embeddings)
            embeddings = embeddings * (1.0 - mask) + self.mask_token.expand_as(embeddings) * mask
        embeddings = torch.cat((self.cls_token.expand(batch, -1, -1), embeddings), dim=1)
        if interpolate_pos_encoding:
            patches, patch_size = embeddings.shape[1] - 1, self.patch_embeddings.patch_size
            embeddings = embeddings + image_positions(
                self.position_embeddings, patches, height, width, patch_size, class_token=True
            )
        else:
            expected = self.patch_embeddings.image_size
            if (height, width) != expected:
                raise ModelInputError(
                    f"ViT: input image size ({height}*{width}) doesn't match the model ({expected[0]}*{expected[1]})",
                    hint="resize the image (the image processor does), or pass interpolate_pos_encoding=True",
                )
            embeddings = embeddings + self.position_embeddings
        out: torch.Tensor = self.dropout(embeddings)
        return out


class ViTSelfAttention(SelfAttention):
    """The attention itself: ``query``, ``key``, ``value`` (biased unless ``qkv_bias`` is false)."""

    projection_names = ("query", "key", "value")
    output_name = None


class ViTSelfOutput(nn.Module):
    """The attention's output projection (``dense``) and dropout; the residual is added by the layer."""

    def __init__(self, config: ViTConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(self.dense(x))
        return out


class ViTAttention(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.attention = ViTSelfAttention(
            config.hidden_size,
            config.num_attention_heads,
            owner="ViT",
            head_dim=head_dim,
            qkv_bias=config.qkv_bias,
            dropout=config.attention_probs_dropout_prob,
        )
        self.output = ViTSelfOutput(config, config.num_attention_heads * head_dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attention(x, mask, output_attentions)
        return self.output(attended), probs


class ViTIntermediate(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act, "ViT")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class ViTLayer(nn.Module):
    """Pre-norm layer: ``x + attention(layernorm_before(x))``, then ``x + output(intermediate(layernorm_after(x)))``."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.attention = ViTAttention(config)
        self.intermediate = ViTIntermediate(config)
        self.output = ViTSelfOutput(config, config.intermediate_size)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attention(self.layernorm_before(hidden_states), mask, output_attentions)
        hidden_states = hidden_states + attended
        return hidden_states + self.output(self.intermediate(self.layernorm_after(hidden_states))), probs


class ViTEncoder(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(ViTLayer(config) for _ in range(config.num_hidden_layers))


class ViTPooler(nn.Module):
    """``pooler_act(dense(class token))``."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_output_size or config.hidden_size)
        self.act = activation(config.pooler_act, "ViT", "pooler_act")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden_states[:, 0]))


#: transformers 5's in-memory names (``model.state_dict()`` saved by hand) -> the checkpoint names used here, which
#: transformers' ``save_pretrained`` writes and Hub checkpoints carry.
STATE_DICT_NAMES: Mapping[str, str] = {
    r"(^|\.)layers\.": r"\1encoder.layer.",
    r"\.attention\.q_proj\.": ".attention.attention.query.",
    r"\.attention\.k_proj\.": ".attention.attention.key.",
    r"\.attention\.v_proj\.": ".attention.attention.value.",
    r"\.attention\.o_proj\.": ".attention.output.dense.",
    r"\.mlp\.fc1\.": ".intermediate.dense.",
    r"\.mlp\.fc2\.": ".output.dense.",
}


class ViTPreTrainedModel(nn.Module):
    """What every ViT class shares: config class, prefix, checkpoint names, init."""

    config_class = ViTConfig
    base_model_prefix = "vit"
    _checkpoint_conversion_mapping = STATE_DICT_NAMES

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        for name, value in (("image_size", config.image_size), ("patch_size", config.patch_size)):
            ok = isinstance(value, int) or (isinstance(value, (list, tuple)) and len(value) == 2)
            if not ok or min(pair(value)) < 1:
                raise ConfigError(
                    f"ViT: {name} must be a positive integer or [height, width], found {value!r}",
                    key=name,
                    hint=f"fix {name} in config.json",
                )
        self.config = config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation: N(0, initializer_range) layers, truncated-normal class token and positions."""
        std = self.config.initializer_range
        default_init(module, std)
        if isinstance(module, ViTEmbeddings):
            nn.init.trunc_normal_(module.position_embeddings, std=std)
            nn.init.trunc_normal_(module.cls_token, std=std)
            if module.mask_token is not None:
                module.mask_token.zero_()


class ViTModel(ViTPreTrainedModel):
    """The ViT encoder: embeddings, ``encoder.layer``, the final ``layernorm`` and (optionally) the pooler.

    Returns ``BaseModelOutput`` with ``last_hidden_state`` (normed), ``pooler_output`` and, when asked,
    ``hidden_states`` (the embeddings, then every layer's output) and ``attentions``.
    """

    def __init__(self, config: ViTConfig, add_pooling_layer: bool = True, use_mask_token: bool = False) -> None:
        super().__init__(config)
        self.embeddings = ViTEmbeddings(config, use_mask_token=use_mask_token)
        self.encoder = ViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        pixel_values = check_pixel_values(pixel_values, self.config, "ViTModel")
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        hidden = self.embeddings(pixel_values, bool_masked_pos, bool(interpolate_pos_encoding))
        mask = padding_mask(attention_mask, hidden.dtype)
        hidden, all_hidden, attentions = run_layers(
            self.encoder.layer, hidden, mask, output_attentions, output_hidden_states
        )
        hidden = self.layernorm(hidden)
        return BaseModelOutput(
            last_hidden_state=hidden,
            pooler_output=self.pooler(hidden) if self.pooler is not None else None,
            hidden_states=all_hidden,
            attentions=attentions,
        )


# --- task heads (factory.models.heads): ViTModel under ``vit`` plus the head layers --------------------
class ViTTaskModel(heads.TaskModel, ViTPreTrainedModel):
    """The base of the ViT heads: a :class:`ViTModel` under ``vit``."""

    trunk_class = ViTModel
    main_input_name = "pixel_values"


class ViTForImageClassification(heads.ImageClassification, ViTTaskModel):
    """A linear classifier on the class token's final state; loss by ``problem_type``."""

    trunk_options = {"add_pooling_layer": False}
    pool = heads.first_token
    head_layers = {"classifier": heads.linear("num_labels")}


def _simmim_decoder(config: ViTConfig) -> nn.Module:
    """``decoder.0``: a 1x1 convolution to ``encoder_stride**2 * num_channels``; ``decoder.1``: pixel shuffle."""
    return nn.Sequential(
        nn.Conv2d(config.hidden_size, config.encoder_stride**2 * config.num_channels, kernel_size=1),
        nn.PixelShuffle(config.encoder_stride),
    )


class ViTForMaskedImageModeling(ViTTaskModel):
    """SimMIM: the patches' final states decoded back to pixels; with ``bool_masked_pos [batch, patches]`` the
    masked patches are replaced by the mask token and the loss is the L1 error over them."""

    output_class = MaskedImageModelingOutput
    trunk_options = {"add_pooling_layer": False, "use_mask_token": True}
    head_layers = {"decoder": _simmim_decoder}
    label_names = ("bool_masked_pos",)
    loss_inputs = ("bool_masked_pos", "pixel_values")

    def predict(self, out: BaseModelOutput, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        patches = out.last_hidden_state[:, 1:]
        batch, _, channels = patches.shape
        # the image's patch grid (transformers assumes a square one, and fails on other interpolated sizes)
        height, width = inputs["pixel_values"].shape[-2:]
        patch_h, patch_w = pair(self.config.patch_size)
        grid = patches.permute(0, 2, 1).reshape(batch, channels, height // patch_h, width // patch_w)
        return {"reconstruction": self.run_head(grid)}

    def loss(
        self, reconstruction: torch.Tensor, bool_masked_pos: torch.Tensor, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        config = self.config
        if pair(config.patch_size) != (config.encoder_stride, config.encoder_stride):
            raise ConfigError(
                f"ViTForMaskedImageModeling: with bool_masked_pos, patch_size ({config.patch_size}) must equal "
                f"encoder_stride ({config.encoder_stride}) so that the reconstruction has the input's size",
                key="encoder_stride",
                hint="set encoder_stride to patch_size in config.json",
            )
        size = pair(config.image_size)[0] // config.encoder_stride
        mask = bool_masked_pos.reshape(-1, size, size)
        mask = mask.repeat_interleave(config.encoder_stride, 1).repeat_interleave(config.encoder_stride, 2)
        mask = mask.unsqueeze(1).to(pixel_values.dtype)
        error = F.l1_loss(pixel_values, reconstruction, reduction="none")
        loss: torch.Tensor = (error * mask).sum() / (mask.sum() + 1e-5) / config.num_channels
        return loss


__all__ = [
    "ViTConfig",
    "ViTForImageClassification",
    "ViTForMaskedImageModeling",
    "ViTModel",
    "ViTTaskModel",
]
