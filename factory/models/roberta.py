"""RoBERTa (Liu et al., 2019) and XLM-RoBERTa: BERT's network with fairseq's position ids and heads.

The trunk is :class:`factory.models.bert.BertModel` with other embeddings: position ids
start at ``padding_idx + 1`` and padding tokens keep ``padding_idx`` (fairseq's
``make_positions``), so the position table has ``max_position_embeddings - padding_idx - 1``
usable rows. The heads differ from BERT's: a ``lm_head`` (dense, GELU, LayerNorm, decoder)
for masked and causal LM, and a ``classifier`` (dense, tanh, ``out_proj``) on the first
token for sequence classification. XLM-RoBERTa is the same network with its own config.

Classes (task -> class; XLM-RoBERTa's are named ``XLMRoberta...``):
    model, text-encoding        RobertaModel
    masked-lm, pretraining      RobertaForMaskedLM
    causal-lm                   RobertaForCausalLM (``config.is_decoder``; ``generate`` with a cache)
    sequence-classification     RobertaForSequenceClassification
    multiple-choice             RobertaForMultipleChoice
    token-classification        RobertaForTokenClassification
    question-answering          RobertaForQuestionAnswering
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError
from factory.models import heads
from factory.models.bert import NO_POOLER, BertConfig, BertEmbeddings, BertModel, BertPreTrainedModel
from factory.models.configuration import Config


class RobertaConfig(BertConfig):
    """RoBERTa hyper-parameters; defaults are those of transformers' ``RobertaConfig``."""

    model_type = "roberta"
    vocab_size: int = 50265
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2


class XLMRobertaConfig(RobertaConfig):
    """XLM-RoBERTa hyper-parameters; defaults are those of transformers' ``XLMRobertaConfig``."""

    model_type = "xlm-roberta"
    vocab_size: int = 30522


def padded_position_ids(input_ids: torch.Tensor, padding_idx: int, past_length: int = 0) -> torch.Tensor:
    """fairseq's positions: ``padding_idx + 1, + 2, ...`` over the non-padding tokens, ``padding_idx`` on padding."""
    not_pad = input_ids.ne(padding_idx).int()
    return ((torch.cumsum(not_pad, dim=1).type_as(not_pad) + past_length) * not_pad).long() + padding_idx


class RobertaEmbeddings(BertEmbeddings):
    """BERT's embeddings with position ids counted from ``padding_idx + 1`` (see :func:`padded_position_ids`).

    ``padding_idx`` defaults to ``config.pad_token_id``; MPNet fixes it at 1 and has no token types.
    With ``inputs_embeds`` padding cannot be seen, and positions simply count from ``padding_idx + 1``.
    """

    def __init__(self, config: Any, *, padding_idx: int | None = None, token_types: bool = True) -> None:
        super().__init__(config, token_types=token_types)
        padding_idx = config.pad_token_id if padding_idx is None else padding_idx
        if not isinstance(padding_idx, int) or not 0 <= padding_idx < config.max_position_embeddings - 1:
            raise ConfigError(
                f"{type(config).__name__}: position ids count from pad_token_id + 1, so pad_token_id must be "
                f"an id below max_position_embeddings - 1 ({config.max_position_embeddings - 1}), "
                f"found {padding_idx!r}",
                hint="set pad_token_id in config.json (1 for RoBERTa checkpoints)",
            )
        self.padding_idx = padding_idx
        self.word_embeddings.padding_idx = padding_idx
        self.position_embeddings.padding_idx = padding_idx

    @property
    def max_length(self) -> int:
        return self.position_embeddings.num_embeddings - self.padding_idx - 1

    def default_position_ids(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, past_length: int
    ) -> torch.Tensor:
        if input_ids is not None:
            return padded_position_ids(input_ids, self.padding_idx, past_length)
        assert inputs_embeds is not None
        start = self.padding_idx + 1 + past_length
        positions = torch.arange(start, start + inputs_embeds.shape[1], device=inputs_embeds.device)
        return positions[None].expand(inputs_embeds.shape[:2])


class RobertaLMHead(nn.Module):
    """Dense, GELU, LayerNorm, then the vocabulary projection ``decoder`` (its bias is ``bias``).

    ``decoder.weight`` is tied to the word embeddings and ``decoder.bias`` to ``bias``
    unless ``tie_word_embeddings`` is false.
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.decoder(self.layer_norm(F.gelu(self.dense(features))))
        return logits


class RobertaClassificationHead(nn.Module):
    """On the first token (``<s>``): dropout, dense, tanh, dropout, ``out_proj``."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = heads.classifier_dropout(config, "hidden_dropout_prob")
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(torch.tanh(self.dense(self.dropout(first_token))))
        logits: torch.Tensor = self.out_proj(hidden)
        return logits


def hidden_dropout(config: Any) -> nn.Dropout:
    """``hidden_dropout_prob`` (RoBERTa's and MPNet's multiple-choice dropout ignores ``classifier_dropout``)."""
    return nn.Dropout(config.hidden_dropout_prob)


class RobertaPreTrainedModel(BertPreTrainedModel):
    """BERT's base (config checks, initialisation) with RoBERTa's config class, prefix and LM head."""

    config_class: ClassVar[type[Config]] = RobertaConfig
    base_model_prefix = "roberta"
    _lm_heads = (RobertaLMHead,)


class RobertaModel(RobertaPreTrainedModel, BertModel):
    """The RoBERTa encoder: :class:`BertModel` with :class:`RobertaEmbeddings`."""

    embeddings_class = RobertaEmbeddings


# --- task heads (factory.models.heads): RobertaModel under ``roberta`` plus the head layers -------------
def tied_lm_head(prefix: str) -> dict[str, str]:
    """``lm_head``'s decoder tied to the word embeddings of the trunk under ``prefix``, its bias to ``bias``."""
    return {
        "lm_head.decoder.weight": f"{prefix}.embeddings.word_embeddings.weight",
        "lm_head.decoder.bias": "lm_head.bias",
    }


_TIED_LM = tied_lm_head("roberta")


class RobertaTaskModel(heads.TaskModel, RobertaPreTrainedModel):
    """The base of the RoBERTa heads: a :class:`RobertaModel` under ``roberta``."""

    trunk_class: ClassVar[Callable[..., heads.Trunk]] = RobertaModel


class RobertaForMaskedLM(heads.MaskedLM, RobertaTaskModel):
    """``lm_head`` on every token (no pooler); the loss ignores labels of -100."""

    trunk_options = NO_POOLER
    head_layers = {"lm_head": RobertaLMHead}
    tied = _TIED_LM

    def get_output_embeddings(self) -> nn.Module:
        return self.get_submodule("lm_head.decoder")


class RobertaForCausalLM(heads.CausalLM, RobertaTaskModel):
    """Left-to-right language modelling with the MLM head; ``generate`` with a key/value cache.

    Causal (and cached) only with ``config.is_decoder``, as in transformers; without it attention
    stays bidirectional and ``generate`` runs the whole sequence at every step, as transformers does.
    """

    trunk_options = NO_POOLER
    head_layers = {"lm_head": RobertaLMHead}
    tied = _TIED_LM

    def get_output_embeddings(self) -> nn.Module:
        return self.get_submodule("lm_head.decoder")


class RobertaForSequenceClassification(heads.SequenceClassification, RobertaTaskModel):
    """:class:`RobertaClassificationHead` on ``<s>`` (no pooler)."""

    trunk_options = NO_POOLER
    pool = heads.first_token
    head_layers = {"classifier": RobertaClassificationHead}


class RobertaForMultipleChoice(heads.MultipleChoice, RobertaTaskModel):
    """Dropout (``hidden_dropout_prob``) and one score per choice on the pooler's output."""

    pool = heads.pooler_output
    head_layers = {"dropout": hidden_dropout, "classifier": heads.linear(1)}


class RobertaForTokenClassification(heads.TokenClassification, RobertaTaskModel):
    """Dropout (``classifier_dropout``, else ``hidden_dropout_prob``) and ``classifier`` on every token."""

    trunk_options = NO_POOLER
    head_layers = {"dropout": heads.dropout("hidden_dropout_prob"), "classifier": heads.linear("num_labels")}


class RobertaForQuestionAnswering(heads.QuestionAnswering, RobertaTaskModel):
    """``qa_outputs`` (start and end logits) on every token, no pooler."""

    trunk_options = NO_POOLER
    head_layers = {"qa_outputs": heads.span_outputs}


# --- XLM-RoBERTa: the same classes with its config ------------------------------------------------------
class XLMRobertaModel(RobertaModel):
    config_class = XLMRobertaConfig


class _XLMRoberta:
    """What XLM-RoBERTa's heads change in RoBERTa's: the config class and the trunk."""

    config_class: ClassVar[type[Config]] = XLMRobertaConfig
    trunk_class: ClassVar[Callable[..., heads.Trunk]] = XLMRobertaModel


class XLMRobertaForMaskedLM(_XLMRoberta, RobertaForMaskedLM):
    pass


class XLMRobertaForCausalLM(_XLMRoberta, RobertaForCausalLM):
    pass


class XLMRobertaForSequenceClassification(_XLMRoberta, RobertaForSequenceClassification):
    pass


class XLMRobertaForMultipleChoice(_XLMRoberta, RobertaForMultipleChoice):
    pass


class XLMRobertaForTokenClassification(_XLMRoberta, RobertaForTokenClassification):
    pass


class XLMRobertaForQuestionAnswering(_XLMRoberta, RobertaForQuestionAnswering):
    pass


__all__ = [
    "RobertaConfig",
    "RobertaEmbeddings",
    "RobertaForCausalLM",
    "RobertaForMaskedLM",
    "RobertaForMultipleChoice",
    "RobertaForQuestionAnswering",
    "RobertaForSequenceClassification",
    "RobertaForTokenClassification",
    "RobertaLMHead",
    "RobertaModel",
    "RobertaTaskModel",
    "XLMRobertaConfig",
    "XLMRobertaForCausalLM",
    "XLMRobertaForMaskedLM",
    "XLMRobertaForMultipleChoice",
    "XLMRobertaForQuestionAnswering",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForTokenClassification",
    "XLMRobertaModel",
    "padded_position_ids",
    "tied_lm_head",
]
