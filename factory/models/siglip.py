"""SigLIP (Zhai et al., 2023) in plain torch: CLIP's two towers, trained with a sigmoid loss.

What differs from :mod:`factory.models.clip`: the text tower is bidirectional (padding mask only, no causal
mask) and pools its last position through ``head``; the image tower has no class token and no pre-norm,
norms every position (``post_layernorm``) and pools with a multi-head attention head (``head``: a learned
``probe`` attending over the patches, then a residual MLP) when ``vision_use_head``. :class:`SiglipModel`
has no projections: ``logits = cos(text, image) * logit_scale.exp() + logit_bias``, and ``return_loss=True``
gives the pairwise sigmoid loss.

Classes (architecture, task -> class):
    siglip                model, zero-shot-image-classification   SiglipModel
    siglip                image-classification                     SiglipForImageClassification (mean state)
    siglip_vision_model   model                                    SiglipVisionModel
    siglip_text_model     (the pack registers no task; the config only)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.image_text import ImageTextPair, TextTower, check_pairs
from factory.models.initialisation import default_init
from factory.models.layers import (
    MLP,
    Encoder,
    VisionEmbeddings,
    activation,
    check_pixel_values,
    padding_mask,
)
from factory.models.outputs import BaseModelOutput


class SiglipTextConfig(Config):
    """The text tower; defaults are those of transformers' ``SiglipTextConfig``."""

    model_type = "siglip_text_model"
    vocab_size: int = 32000
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 64
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    pad_token_id: int | None = 1
    bos_token_id: int | None = 49406
    eos_token_id: int | None = 49407
    projection_size: int | None = None  # None: hidden_size


class SiglipVisionConfig(Config):
    """The image tower; defaults are those of transformers' ``SiglipVisionConfig`` (So400m's layout at base size)."""

    model_type = "siglip_vision_model"
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 16
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    attention_dropout: float = 0.0
    vision_use_head: bool = True


class SiglipConfig(Config):
    """Both towers (``text_config``, ``vision_config``)."""

    model_type = "siglip"
    sub_configs = {"text_config": SiglipTextConfig, "vision_config": SiglipVisionConfig}
    text_config: SiglipTextConfig
    vision_config: SiglipVisionConfig
    initializer_factor: float = 1.0


class SiglipPreTrainedModel(nn.Module):
    """What every SigLIP class shares: the initialisation."""

    config_class: ClassVar[type[Config]] = SiglipConfig
    base_model_prefix: ClassVar[str] = "siglip"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' scheme, simplified: N(0, 0.02) layers (transformers uses LeCun and Xavier), a
        N(0, hidden**-0.5) probe, zero ``logit_scale`` and ``logit_bias``."""
        default_init(module, 0.02)
        if isinstance(module, MultiheadAttentionPoolingHead):
            module.probe.normal_(0.0, module.probe.shape[-1] ** -0.5)
        elif isinstance(module, SiglipModel):
            module.logit_scale.zero_()
            module.logit_bias.zero_()


class SiglipTextModel(TextTower, SiglipPreTrainedModel):
    """The text tower: ``embeddings``, ``encoder`` (bidirectional), ``final_layer_norm``; ``head`` on the last
    position is the pooled output."""

    config_class = SiglipTextConfig
    base_model_prefix = "text_model"

    def __init__(self, config: SiglipTextConfig) -> None:
        super().__init__(config)
        self.head = nn.Linear(config.hidden_size, config.projection_size or config.hidden_size)

    def attention_mask(self, attention_mask: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor | None:
        return padding_mask(attention_mask, hidden.dtype)

    def pool(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(hidden[:, -1])
        return out


class MultiheadAttentionPoolingHead(nn.Module):
    """MAP pooling: a learned ``probe`` attends over every position (``attention``, torch's
    ``MultiheadAttention``), then ``x + mlp(layernorm(x))``."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.attention = nn.MultiheadAttention(config.hidden_size, config.num_attention_heads, batch_first=True)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config.hidden_size, config.intermediate_size, activation(config.hidden_act, "SigLIP"))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        probe = self.probe.expand(hidden_states.shape[0], -1, -1)
        pooled = self.attention(probe, hidden_states, hidden_states, need_weights=False)[0]
        pooled = pooled + self.mlp(self.layernorm(pooled))
        out: torch.Tensor = pooled[:, 0]
        return out


class SiglipVisionModel(SiglipPreTrainedModel):
    """The image tower: ``embeddings`` (patches only), ``encoder``, ``post_layernorm`` on every position;
    ``pooler_output`` from the attention-pooling ``head`` (None without ``vision_use_head``)."""

    config_class = SiglipVisionConfig
    base_model_prefix = "vision_model"

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__(config)
        self.embeddings = VisionEmbeddings(config, class_token=False, conv_bias=True)
        self.encoder = Encoder(config, "SiglipVisionModel")
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.head = MultiheadAttentionPoolingHead(config) if config.vision_use_head else None

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embedding

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        pixel_values = check_pixel_values(pixel_values, self.config, "SiglipVisionModel")
        hidden = self.embeddings(pixel_values, bool(interpolate_pos_encoding))
        hidden, all_hidden, attentions = self.encoder(hidden, None, output_attentions, output_hidden_states)
        hidden = self.post_layernorm(hidden)
        return BaseModelOutput(
            last_hidden_state=hidden,
            pooler_output=self.head(hidden) if self.head is not None else None,
            hidden_states=all_hidden,
            attentions=attentions,
        )


def sigmoid_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """SigLIP's loss: every (text, image) pair is a binary decision, positive on the diagonal; summed per text,
    averaged over texts."""
    signs = 2 * torch.eye(check_pairs(logits_per_text, "SiglipModel"), device=logits_per_text.device) - 1
    return -F.logsigmoid(signs * logits_per_text).sum(dim=-1).mean()


class SiglipModel(ImageTextPair, SiglipPreTrainedModel):
    """Both towers, ``logit_scale`` and ``logit_bias``: ``logits = cos(text, image) * logit_scale.exp() +
    logit_bias``, the pairwise sigmoid loss. The towers' pooled outputs are the embeddings (no projections)."""

    config_class = SiglipConfig

    def __init__(self, config: SiglipConfig) -> None:
        super().__init__(config)
        text_size = config.text_config.projection_size or config.text_config.hidden_size
        if text_size != config.vision_config.hidden_size:
            raise ConfigError(
                f"SiglipModel: the text embeddings (text_config.projection_size {text_size}) must have the image "
                f"embeddings' size (vision_config.hidden_size {config.vision_config.hidden_size})",
                key="text_config.projection_size",
                hint="set text_config.projection_size to vision_config.hidden_size in config.json",
            )
        self.text_model = SiglipTextModel(config.text_config)
        self.vision_model = SiglipVisionModel(config.vision_config)
        self.logit_scale = nn.Parameter(torch.zeros(1))
        self.logit_bias = nn.Parameter(torch.zeros(1))

    def embed_image(self, pooled: torch.Tensor | None) -> torch.Tensor:
        if pooled is None:
            raise ModelInputError(
                "SiglipModel: the image tower has no pooling head (vision_use_head is false), so images have no "
                "embedding to compare with the texts",
                hint="use a checkpoint with vision_use_head true, or SiglipVisionModel for the patch states",
            )
        return pooled

    def scores(self, cosine: torch.Tensor) -> torch.Tensor:
        return cosine * self.logit_scale.exp() + self.logit_bias

    def pair_loss(self, logits_per_text: torch.Tensor) -> torch.Tensor:
        return sigmoid_loss(logits_per_text)


# --- task heads (factory.models.heads): the image tower under ``vision_model`` plus a classifier -----------
def _classifier(config: SiglipConfig) -> nn.Module:
    return nn.Linear(config.vision_config.hidden_size, config.num_labels)


class SiglipForImageClassification(heads.ImageClassification, heads.TaskModel, SiglipPreTrainedModel):
    """A linear classifier on the mean of the image tower's (normed) final states; loss by ``problem_type``."""

    config_class = SiglipConfig
    base_model_prefix = "vision_model"
    trunk_class = SiglipVisionModel
    trunk_config = "vision_config"
    pool = heads.mean_tokens
    head_layers = {"classifier": _classifier}


__all__ = [
    "SiglipConfig",
    "SiglipForImageClassification",
    "SiglipModel",
    "SiglipTextConfig",
    "SiglipTextModel",
    "SiglipVisionConfig",
    "SiglipVisionModel",
]
