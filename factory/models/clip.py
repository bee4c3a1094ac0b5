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

from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ModelInputError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.layers import (
    Encoder,
    TextEmbeddings,
    VisionEmbeddings,
    causal_padding_mask,
    check_input_ids,
    check_pixel_values,
    default_init,
)
from factory.models.outputs import BaseModelOutput, ImageTextOutput


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


class CLIPTextModel(CLIPPreTrainedModel):
    """The causal text tower: ``embeddings``, ``encoder``, ``final_layer_norm``; pooled at the end-of-text token."""

    config_class = CLIPTextConfig
    base_model_prefix = "text_model"

    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.encoder = Encoder(config, "CLIPTextModel")
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.token_embedding

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        input_ids = check_input_ids(input_ids, self.config, "CLIPTextModel")
        hidden = self.embeddings(input_ids, position_ids)
        mask = causal_padding_mask(attention_mask, input_ids.shape[1], hidden.dtype, hidden.device)
        hidden, all_hidden, attentions = self.encoder(hidden, mask, output_attentions, output_hidden_states)
        hidden = self.final_layer_norm(hidden)
        ids = input_ids.to(hidden.device, torch.int)
        if self.config.eos_token_id == 2:  # the original configs: the end-of-text token has the highest id
            end = ids.argmax(dim=-1)
        else:
            end = (ids == self.config.eos_token_id).int().argmax(dim=-1)
        return BaseModelOutput(
            last_hidden_state=hidden,
            pooler_output=hidden[torch.arange(hidden.shape[0], device=hidden.device), end],
            hidden_states=all_hidden,
            attentions=attentions,
        )


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
    texts, images = logits_per_text.shape
    if texts != images:
        raise ModelInputError(
            f"CLIPModel: return_loss needs matching image-text pairs, found {texts} texts and {images} images",
            hint="pass one text per image (text i describes image i), or leave return_loss out",
        )
    targets = torch.arange(texts, device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.t(), targets)) / 2


class CLIPModel(CLIPPreTrainedModel):
    """Both towers, their projections and ``logit_scale``; ``forward(input_ids, pixel_values, ...)``.

    ``get_text_features`` / ``get_image_features`` return the tower's output with ``pooler_output``
    replaced by the projected (not normalised) embedding, as transformers 5 does.
    """

    config_class = CLIPConfig

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__(config)
        self.text_model = CLIPTextModel(config.text_config)
        self.vision_model = CLIPVisionModel(config.vision_config)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def get_text_features(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        out: BaseModelOutput = self.text_model(
            input_ids, attention_mask, position_ids, output_attentions, output_hidden_states
        )
        out.pooler_output = self.text_projection(out.pooler_output)
        return out

    def get_image_features(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        out: BaseModelOutput = self.vision_model(
            pixel_values, interpolate_pos_encoding, output_attentions, output_hidden_states
        )
        out.pooler_output = self.visual_projection(out.pooler_output)
        return out

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ImageTextOutput:
        outputs = (output_attentions, output_hidden_states)
        vision = self.get_image_features(pixel_values, interpolate_pos_encoding, *outputs)
        text = self.get_text_features(input_ids, attention_mask, position_ids, *outputs)
        image_embeds = F.normalize(cast(torch.Tensor, vision.pooler_output), dim=-1)
        text_embeds = F.normalize(cast(torch.Tensor, text.pooler_output), dim=-1)
        logits_per_text = (text_embeds @ image_embeds.t()) * self.logit_scale.exp()
        return ImageTextOutput(
            loss=contrastive_loss(logits_per_text) if return_loss else None,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text,
            vision_model_output=vision,
        )


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
