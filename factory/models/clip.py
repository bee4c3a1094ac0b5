"""CLIP (Radford et al., 2021) in plain torch: a causal text tower and a ViT image tower, projected and compared.

The towers are the pre-norm encoder of :mod:`factory.models.layers` (``quick_gelu`` by default). The text
tower is causal and pools at the end-of-text token: the first position of ``eos_token_id``, or, for
configs that still say ``eos_token_id: 2`` (the original checkpoints), the highest token id, as transformers
does. The image tower pools the class token through ``post_layernorm``. :class:`CLIPModel` normalises both
projections and scales their dot products by ``logit_scale.exp()``; ``return_loss=True`` gives the symmetric
contrastive loss.

Parameter names are transformers': ``text_model.*``, ``vision_model.*``, ``text_projection``,
``visual_projection``, ``logit_scale``. A tower alone (``clip_text_model`` / ``clip_vision_model``) has its
keys without the prefix, as transformers 5 saves it, and also reads checkpoints that carry the prefix.

Classes (architecture, task -> class):
    clip                model, zero-shot-image-classification   CLIPModel
    clip                image-classification                     CLIPForImageClassification (mean patch state)
    clip_text_model     model, text-encoding                     CLIPTextModel
    clip_vision_model   model                                    CLIPVisionModel
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.models import heads
from factory.models.configuration import Config
from factory.models.image_text import ImageTextPair, TextTower, check_pairs
from factory.models.initialisation import default_init
from factory.models.layers import Encoder, VisionEmbeddings, causal_padding_mask, check_pixel_values
from factory.models.outputs import BaseModelOutput


class CLIPTextConfig(Config):
    """The text tower; defaults are those of transformers' ``CLIPTextConfig`` (ViT-B/32's text tower)."""

    model_type = "clip_text_model"
    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    initializer_factor: float = 1.0
    pad_token_id: int | None = 1
    bos_token_id: int | None = 49406
    eos_token_id: int | None = 49407


class CLIPVisionConfig(Config):
    """The image tower; defaults are those of transformers' ``CLIPVisionConfig`` (ViT-B/32)."""

    model_type = "clip_vision_model"
    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    initializer_factor: float = 1.0


class CLIPConfig(Config):
    """Both towers (``text_config``, ``vision_config``) and the shared embedding size ``projection_dim``."""

    model_type = "clip"
    sub_configs = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}
    text_config: CLIPTextConfig
    vision_config: CLIPVisionConfig
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    initializer_factor: float = 1.0


class CLIPPreTrainedModel(nn.Module):
    """What every CLIP class shares: the config check and the initialisation."""

    config_class: ClassVar[type[Config]] = CLIPConfig
    base_model_prefix: ClassVar[str] = "clip"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' scheme, simplified: N(0, 0.02 * initializer_factor) layers (transformers scales
        attention and MLP by depth), N(0, hidden**-0.5) class embedding, ``logit_scale_init_value``."""
        factor = self.config.initializer_factor
        default_init(module, getattr(self.config, "initializer_range", 0.02) * factor)
        if isinstance(module, VisionEmbeddings) and module.class_embedding is not None:
            module.class_embedding.normal_(0.0, module.class_embedding.shape[0] ** -0.5 * factor)
        elif isinstance(module, CLIPModel):
            module.logit_scale.fill_(self.config.logit_scale_init_value)


class CLIPTextModel(TextTower, CLIPPreTrainedModel):
    """The causal text tower: ``embeddings``, ``encoder``, ``final_layer_norm``; pooled at the end-of-text token."""

    config_class = CLIPTextConfig
    base_model_prefix = "text_model"

    def attention_mask(self, attention_mask: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor | None:
        return causal_padding_mask(attention_mask, hidden.shape[1], hidden.dtype, hidden.device)

    def pool(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids.to(hidden.device, torch.int)
        if self.config.eos_token_id == 2:  # the original configs: the end-of-text token has the highest id
            end = ids.argmax(dim=-1)
        else:
            end = (ids == self.config.eos_token_id).int().argmax(dim=-1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), end]


class CLIPVisionModel(CLIPPreTrainedModel):
    """The image tower: ``embeddings`` (class token first), ``pre_layrnorm``, ``encoder``; pooled at the class
    token through ``post_layernorm`` (``last_hidden_state`` is not normed, as in transformers)."""

    config_class = CLIPVisionConfig
    base_model_prefix = "vision_model"

    def __init__(self, config: CLIPVisionConfig) -> None:
        super().__init__(config)
        self.embeddings = VisionEmbeddings(config, class_token=True, conv_bias=False)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = Encoder(config, "CLIPVisionModel")
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embedding

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        pixel_values = check_pixel_values(pixel_values, self.config, "CLIPVisionModel")
        hidden = self.pre_layrnorm(self.embeddings(pixel_values, bool(interpolate_pos_encoding)))
        hidden, all_hidden, attentions = self.encoder(hidden, None, output_attentions, output_hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden,
            pooler_output=self.post_layernorm(hidden[:, 0]),
            hidden_states=all_hidden,
            attentions=attentions,
        )


def contrastive_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric loss: the mean of the text->image and image->text cross-entropies (matches on the diagonal)."""
    targets = torch.arange(check_pairs(logits_per_text, "CLIPModel"), device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.t(), targets)) / 2


class CLIPModel(ImageTextPair, CLIPPreTrainedModel):
    """Both towers, their projections (``text_projection``, ``visual_projection``) and ``logit_scale``:
    ``logits = cos(text, image) * logit_scale.exp()``, the symmetric contrastive loss."""

    config_class = CLIPConfig

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__(config)
        self.text_model = CLIPTextModel(config.text_config)
        self.vision_model = CLIPVisionModel(config.vision_config)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))

    def embed_text(self, pooled: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = self.text_projection(pooled)
        return out

    def embed_image(self, pooled: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = self.visual_projection(pooled)
        return out

    def scores(self, cosine: torch.Tensor) -> torch.Tensor:
        return cosine * self.logit_scale.exp()

    def pair_loss(self, logits_per_text: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(logits_per_text)


# --- task heads (factory.models.heads): the image tower under ``vision_model`` plus a classifier -----------
def _classifier(config: CLIPConfig) -> nn.Module:
    return nn.Linear(config.vision_config.hidden_size, config.num_labels)


def _mean_patch_state(model: heads.TaskModel, out: BaseModelOutput, inputs: Any) -> torch.Tensor:
    """The mean of the patch tokens' final states (the class token left out), as transformers' classifier reads."""
    hidden: torch.Tensor = out.last_hidden_state
    return hidden[:, 1:].mean(dim=1)


class CLIPForImageClassification(heads.ImageClassification, heads.TaskModel, CLIPPreTrainedModel):
    """A linear classifier on the image tower's mean patch state; loss by ``problem_type``."""

    config_class = CLIPConfig
    base_model_prefix = "vision_model"
    trunk_class = CLIPVisionModel
    trunk_config = "vision_config"
    pool = _mean_patch_state
    head_layers = {"classifier": _classifier}


__all__ = [
    "CLIPConfig",
    "CLIPForImageClassification",
    "CLIPModel",
    "CLIPTextConfig",
    "CLIPTextModel",
    "CLIPVisionConfig",
    "CLIPVisionModel",
]
