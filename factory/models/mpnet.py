"""MPNet (Song et al., 2020): BERT's post-norm layers with a relative-position attention bias, in plain torch.

The network sentence-transformers' ``all-mpnet-base-v2`` uses. Parameter names are
transformers' (``mpnet.encoder.layer.N.attention.attn.q``, ``...attention.LayerNorm``,
``mpnet.encoder.relative_attention_bias``...). What it shares: RoBERTa's embeddings
(positions from ``padding_idx + 1``, padding_idx fixed at 1, no token types) and heads
(``lm_head``, the first-token ``classifier``), BERT's feed-forward, pooler, attention and
layer loop. Every layer adds one bias ``relative_attention_bias[bucket(key - query)]`` per
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

import torch
from torch import nn

from factory.errors import ConfigError
from factory.models import heads
from factory.models.bert import (
    NO_POOLER,
    BertIntermediate,
    BertOutput,
    BertPooler,
    BertPreTrainedModel,
    LayerCache,
    check_length,
    input_shape,
    padding_mask,
    run_layers,
    self_attention,
)
from factory.models.configuration import Config
from factory.models.outputs import BaseModelOutput
from factory.models.relative_position import relative_position_bucket
from factory.models.roberta import RobertaClassificationHead, RobertaEmbeddings, RobertaLMHead, hidden_dropout

#: transformers computes the bias with 32 buckets whatever ``relative_attention_num_buckets`` says.
NUM_BUCKETS = 32
#: MPNet's embeddings use padding index 1 whatever ``pad_token_id`` says.
PADDING_IDX = 1


class MPNetConfig(Config):
    """MPNet hyper-parameters; defaults are those of transformers' ``MPNetConfig``."""

    model_type = "mpnet"
    vocab_size: int = 30527
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    relative_attention_num_buckets: int = 32
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    tie_word_embeddings: bool = True


class MPNetSelfAttention(nn.Module):
    """Projections ``q``, ``k``, ``v`` and ``o``; the scores get the relative-position bias (in ``mask``)."""

    def __init__(self, config: MPNetConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.q = nn.Linear(config.hidden_size, config.hidden_size)
        self.k = nn.Linear(config.hidden_size, config.hidden_size)
        self.v = nn.Linear(config.hidden_size, config.hidden_size)
        self.o = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool = False,
        output_attentions: bool = False,
        past: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, LayerCache]:
        projections = (self.q, self.k, self.v)
        dropout_p = self.dropout_p if self.training else 0.0
        attended, probs, present = self_attention(
            hidden_states, projections, self.num_heads, mask, is_causal, output_attentions, past, dropout_p
        )
        return self.o(attended), probs, present


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


class MPNetLayer(nn.Module):
    """MPNet attention, then BERT's feed-forward (``intermediate``, ``output``)."""

    def __init__(self, config: MPNetConfig) -> None:
        super().__init__()
        self.attention = MPNetAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool = False,
        output_attentions: bool = False,
        past: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, LayerCache]:
        attended, probs, present = self.attention(hidden_states, mask, is_causal, output_attentions, past)
        return self.output(self.intermediate(attended), attended), probs, present


class MPNetEncoder(nn.Module):
    """The layers and the per-head relative-position bias table they share."""

    def __init__(self, config: MPNetConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(MPNetLayer(config) for _ in range(config.num_hidden_layers))
        self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets, config.num_attention_heads)

    def position_bias(self, seq_len: int, device: torch.device) -> torch.Tensor:
        """The bias ``[1, heads, query, key]`` of every query/key pair of a ``seq_len`` sequence."""
        positions = torch.arange(seq_len, dtype=torch.long, device=device)
        buckets = relative_position_bucket(positions[None, :] - positions[:, None], num_buckets=NUM_BUCKETS)
        bias: torch.Tensor = self.relative_attention_bias(buckets)
        return bias.permute(2, 0, 1)[None]


class MPNetPreTrainedModel(BertPreTrainedModel):
    """BERT's base (config checks, initialisation) with MPNet's config class, prefix and LM head."""

    config_class = MPNetConfig
    base_model_prefix = "mpnet"
    _lm_heads = (RobertaLMHead,)

    def __init__(self, config: MPNetConfig) -> None:
        buckets = config.relative_attention_num_buckets
        if not isinstance(buckets, int) or buckets < NUM_BUCKETS:
            raise ConfigError(
                f"MPNet: relative_attention_num_buckets must be at least {NUM_BUCKETS} (the buckets "
                f"transformers' MPNet indexes), found {buckets!r}",
                hint=f"set relative_attention_num_buckets to {NUM_BUCKETS} in config.json",
            )
        super().__init__(config)


class MPNetModel(MPNetPreTrainedModel):
    """The MPNet encoder: embeddings, layers with the relative-position bias, (optionally) the pooler.

    Returns ``BaseModelOutput`` with ``last_hidden_state``, ``pooler_output`` and, when asked,
    ``hidden_states`` (embeddings, then every layer) and ``attentions``.
    """

    def __init__(self, config: MPNetConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = RobertaEmbeddings(config, padding_idx=PADDING_IDX, token_types=False)
        self.encoder = MPNetEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        _, seq_len = input_shape(self, input_ids, inputs_embeds, attention_mask)
        check_length(self, seq_len, position_ids)
        hidden = self.embeddings(input_ids, None, position_ids, inputs_embeds)
        # The bias and the padding in one additive mask: padded keys get the dtype's minimum.
        mask = self.encoder.position_bias(seq_len, hidden.device).to(hidden.dtype)
        padding = padding_mask(attention_mask)
        if padding is not None:
            mask = mask.masked_fill(~padding, torch.finfo(mask.dtype).min)
        out = run_layers(
            self.encoder.layer,
            hidden,
            mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        out.pooler_output = self.pooler(out.last_hidden_state) if self.pooler is not None else None
        return out


# --- task heads (factory.models.heads): MPNetModel under ``mpnet`` plus RoBERTa's head layers -------------
class MPNetTaskModel(heads.TaskModel, MPNetPreTrainedModel):
    """The base of the MPNet heads: an :class:`MPNetModel` under ``mpnet``."""

    trunk_class = MPNetModel


class MPNetForMaskedLM(heads.MaskedLM, MPNetTaskModel):
    """Masked language modelling with RoBERTa's ``lm_head``; ``labels`` of -100 are ignored in the loss."""

    trunk_options = NO_POOLER
    head_layers = {"lm_head": RobertaLMHead}
    tied = {"lm_head.decoder.weight": "mpnet.embeddings.word_embeddings.weight", "lm_head.decoder.bias": "lm_head.bias"}

    def get_output_embeddings(self) -> nn.Module:
        return self.get_submodule("lm_head.decoder")


class MPNetForSequenceClassification(heads.SequenceClassification, MPNetTaskModel):
    """RoBERTa's classification head on the first token; loss by ``problem_type``."""

    trunk_options = NO_POOLER
    pool = heads.first_token
    head_layers = {"classifier": RobertaClassificationHead}


class MPNetForMultipleChoice(heads.MultipleChoice, MPNetTaskModel):
    """Scores each of ``num_choices`` candidates by its pooled output; inputs ``(batch, num_choices, seq_len)``."""

    pool = heads.pooler_output
    head_layers = {"dropout": hidden_dropout, "classifier": heads.linear(1)}


class MPNetForTokenClassification(heads.TokenClassification, MPNetTaskModel):
    """A label per token (NER, POS); ``labels`` of -100 are ignored in the loss."""

    trunk_options = NO_POOLER
    head_layers = {"dropout": hidden_dropout, "classifier": heads.linear("num_labels")}


class MPNetForQuestionAnswering(heads.QuestionAnswering, MPNetTaskModel):
    """Extractive QA: start/end logits per token; positions outside the input are ignored in the loss."""

    trunk_options = NO_POOLER
    head_layers = {"qa_outputs": heads.span_outputs}


__all__ = [
    "MPNetConfig",
    "MPNetForMaskedLM",
    "MPNetForMultipleChoice",
    "MPNetForQuestionAnswering",
    "MPNetForSequenceClassification",
    "MPNetForTokenClassification",
    "MPNetModel",
    "MPNetTaskModel",
]
