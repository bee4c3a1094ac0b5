"""MPNet (Song et al., 2020): BERT's post-norm layers with a relative-position attention bias, in plain torch.

The network sentence-transformers' ``all-mpnet-base-v2`` uses. Parameter names are
transformers' (``mpnet.encoder.layer.N.attention.attn.q``, ``...attention.LayerNorm``,
``mpnet.encoder.relative_attention_bias``...). What it shares: RoBERTa's embeddings
(positions from ``padding_idx + 1``, padding_idx fixed at 1, no token types) and heads
(``lm_head``, the first-token ``classifier``: MPNet's heads are RoBERTa's), BERT's trunk
(:class:`~factory.models.bert.BertModel`: input checks, layer loop, pooler), attention and
feed-forward. Every layer adds one bias ``relative_attention_bias[bucket(key - query)]`` per
head to its attention scores, as transformers' ``MPNetEncoder.compute_position_bias`` does
(32 buckets, distances up to 128; :mod:`factory.models.relative_position`).

Classes (task -> class):
    model                       MPNetModel
    masked-lm, pretraining      MPNetForMaskedLM
    sequence-classification     MPNetForSequenceClassification
    multiple-choice             MPNetForMultipleChoice
    token-classification        MPNetForTokenClassification
    question-answering          MPNetForQuestionAnswering
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from factory.errors import ConfigError
from factory.models import heads
from factory.models.bert import (
    BertEncoder,
    BertLayer,
    BertModel,
    BertPreTrainedModel,
    BertSelfAttention,
    EncoderConfig,
    LayerCache,
    padding_mask,
)
from factory.models.configuration import Config
from factory.models.relative_position import relative_position_bucket
from factory.models.roberta import (
    RobertaEmbeddings,
    RobertaForMaskedLM,
    RobertaForMultipleChoice,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaLMHead,
    tied_lm_head,
)

#: transformers computes the bias with 32 buckets whatever ``relative_attention_num_buckets`` says.
NUM_BUCKETS = 32
#: MPNet's embeddings use padding index 1 whatever ``pad_token_id`` says.
PADDING_IDX = 1


class MPNetConfig(EncoderConfig):
    """MPNet hyper-parameters; defaults are those of transformers' ``MPNetConfig``."""

    model_type = "mpnet"
    vocab_size: int = 30527
    relative_attention_num_buckets: int = 32
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    tie_word_embeddings: bool = True


class MPNetSelfAttention(BertSelfAttention):
    """BERT's attention as ``q``, ``k``, ``v`` and ``o``; the relative-position bias comes in ``mask``."""

    projection_names = ("q", "k", "v")
    output_name = "o"


class MPNetAttention(nn.Module):
    """Self-attention, dropout, residual and ``LayerNorm``."""

    def __init__(self, config: MPNetConfig) -> None:
        super().__init__()
        self.attn = MPNetSelfAttention(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool = False,
        output_attentions: bool = False,
        past: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, LayerCache]:
        attended, probs, present = self.attn(hidden_states, mask, is_causal, output_attentions, past)
        return self.LayerNorm(self.dropout(attended) + hidden_states), probs, present


class MPNetLayer(BertLayer):
    """MPNet attention, then BERT's feed-forward (``intermediate``, ``output``)."""

    attention_class = MPNetAttention


class MPNetEncoder(BertEncoder):
    """The layers and the per-head relative-position bias table they share."""

    layer_class = MPNetLayer

    def __init__(self, config: MPNetConfig) -> None:
        buckets = config.relative_attention_num_buckets
        if not isinstance(buckets, int) or buckets < NUM_BUCKETS:
            raise ConfigError(
                f"MPNet: relative_attention_num_buckets must be at least {NUM_BUCKETS} (the buckets "
                f"transformers' MPNet indexes), found {buckets!r}",
                hint=f"set relative_attention_num_buckets to {NUM_BUCKETS} in config.json",
            )
        super().__init__(config)
        self.relative_attention_bias = nn.Embedding(buckets, config.num_attention_heads)

    def position_bias(self, seq_len: int, device: torch.device) -> torch.Tensor:
        """The bias ``[1, heads, query, key]`` of every query/key pair of a ``seq_len`` sequence."""
        positions = torch.arange(seq_len, dtype=torch.long, device=device)
        buckets = relative_position_bucket(positions[None, :] - positions[:, None], num_buckets=NUM_BUCKETS)
        bias: torch.Tensor = self.relative_attention_bias(buckets)
        return bias.permute(2, 0, 1)[None]


class MPNetEmbeddings(RobertaEmbeddings):
    """RoBERTa's embeddings with padding index 1 and no token types."""

    def __init__(self, config: MPNetConfig) -> None:
        super().__init__(config, padding_idx=PADDING_IDX, token_types=False)


class MPNetPreTrainedModel(BertPreTrainedModel):
    """BERT's base (config checks, initialisation) with MPNet's config class, prefix and LM head."""

    config_class = MPNetConfig
    base_model_prefix = "mpnet"
    _lm_heads = (RobertaLMHead,)


class MPNetModel(MPNetPreTrainedModel, BertModel):
    """BERT's trunk with MPNet's embeddings and layers, every layer's scores biased by relative position.

    Returns ``BaseModelOutput`` with ``last_hidden_state``, ``pooler_output`` and, when asked,
    ``hidden_states`` (embeddings, then every layer) and ``attentions``.
    """

    embeddings_class = MPNetEmbeddings
    encoder_class = MPNetEncoder
    encoder: MPNetEncoder

    def _attention_mask(
        self, attention_mask: torch.Tensor | None, hidden: torch.Tensor, past_length: int
    ) -> tuple[torch.Tensor | None, bool]:
        """The bias and the padding in one additive mask: padded keys get the dtype's minimum."""
        mask = self.encoder.position_bias(hidden.shape[1], hidden.device).to(hidden.dtype)
        padding = padding_mask(attention_mask)
        if padding is not None:
            mask = mask.masked_fill(~padding, torch.finfo(mask.dtype).min)
        return mask, False


# --- task heads: RoBERTa's (factory.models.roberta) on MPNetModel under ``mpnet`` ------------------------
class _MPNet:
    """What MPNet's heads change in RoBERTa's: the config class, the trunk and its prefix."""

    config_class: ClassVar[type[Config]] = MPNetConfig
    trunk_class: ClassVar[Callable[..., heads.Trunk]] = MPNetModel
    base_model_prefix = "mpnet"


class MPNetForMaskedLM(_MPNet, RobertaForMaskedLM):
    tied = tied_lm_head("mpnet")


class MPNetForSequenceClassification(_MPNet, RobertaForSequenceClassification):
    pass


class MPNetForMultipleChoice(_MPNet, RobertaForMultipleChoice):
    pass


class MPNetForTokenClassification(_MPNet, RobertaForTokenClassification):
    pass


class MPNetForQuestionAnswering(_MPNet, RobertaForQuestionAnswering):
    pass


__all__ = [
    "MPNetConfig",
    "MPNetForMaskedLM",
    "MPNetForMultipleChoice",
    "MPNetForQuestionAnswering",
    "MPNetForSequenceClassification",
    "MPNetForTokenClassification",
    "MPNetModel",
]
