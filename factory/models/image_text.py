"""What the two-tower image-text families (CLIP, SigLIP) share: the text tower's outline and the pair.

:class:`TextTower` runs ``embeddings``, ``encoder`` and ``final_layer_norm``; a family says which
positions see which (:meth:`TextTower.attention_mask`) and how the sequence is pooled
(:meth:`TextTower.pool`). :class:`ImageTextPair` holds ``text_model`` and ``vision_model``, embeds
each side (:meth:`ImageTextPair.embed_text` / ``embed_image``: CLIP projects, SigLIP does not),
compares the normalised embeddings (:meth:`ImageTextPair.scores`) and, with ``return_loss``,
scores the matching pairs (:meth:`ImageTextPair.pair_loss`). Both come before the family's base
class in the bases.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ModelInputError
from factory.models.layers import Encoder, TextEmbeddings, check_input_ids
from factory.models.outputs import BaseModelOutput, ImageTextOutput


class TextTower(nn.Module):
    """``embeddings``, ``encoder``, ``final_layer_norm``; the family's :meth:`attention_mask` and :meth:`pool`.

    The family's base class (which stores the config) comes after this one in the bases, as for the heads.
    """

    config: Any

    def __init__(self, config: Any) -> None:
        super().__init__(config)  # the family's base class
        self.embeddings = TextEmbeddings(config)
        self.encoder = Encoder(config, type(self).__name__)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.token_embedding

    def attention_mask(self, attention_mask: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor | None:
        """The additive mask the encoder's layers use."""
        raise NotImplementedError

    def pool(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """The text's embedding from the normed final states."""
        raise NotImplementedError

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        input_ids = check_input_ids(input_ids, self.config, type(self).__name__)
        hidden = self.embeddings(input_ids, position_ids)
        mask = self.attention_mask(attention_mask, hidden)
        hidden, all_hidden, attentions = self.encoder(hidden, mask, output_attentions, output_hidden_states)
        hidden = self.final_layer_norm(hidden)
        return BaseModelOutput(
            last_hidden_state=hidden,
            pooler_output=self.pool(hidden, input_ids),
            hidden_states=all_hidden,
            attentions=attentions,
        )


def check_pairs(logits_per_text: torch.Tensor, owner: str) -> int:
    """The number of pairs in a square score matrix, or a :class:`ModelInputError` (a loss needs text i to
    describe image i)."""
    texts, images = logits_per_text.shape
    if texts != images:
        raise ModelInputError(
            f"{owner}: return_loss needs matching image-text pairs, found {texts} texts and {images} images",
            hint="pass one text per image (text i describes image i), or leave return_loss out",
        )
    return int(texts)


class ImageTextPair(nn.Module):
    """``text_model`` and ``vision_model`` compared; ``forward(input_ids, pixel_values, ...)``.

    ``get_text_features`` / ``get_image_features`` return the tower's output with ``pooler_output`` the side's
    (not normalised) embedding, as transformers 5 does.
    """

    text_model: nn.Module
    vision_model: nn.Module

    def embed_text(self, pooled: torch.Tensor | None) -> torch.Tensor:
        return cast(torch.Tensor, pooled)

    def embed_image(self, pooled: torch.Tensor | None) -> torch.Tensor:
        return cast(torch.Tensor, pooled)

    def scores(self, cosine: torch.Tensor) -> torch.Tensor:
        """``logits_per_text [texts, images]`` from the cosine similarities."""
        raise NotImplementedError

    def pair_loss(self, logits_per_text: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_input_embeddings(self) -> nn.Module:
        return cast(TextTower, self.text_model).get_input_embeddings()

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
        out.pooler_output = self.embed_text(out.pooler_output)
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
        out.pooler_output = self.embed_image(out.pooler_output)
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
        logits_per_text = self.scores(text_embeds @ image_embeds.t())
        return ImageTextOutput(
            loss=self.pair_loss(logits_per_text) if return_loss else None,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text,
            vision_model_output=vision,
        )
