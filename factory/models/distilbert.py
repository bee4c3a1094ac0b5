"""DistilBERT (Sanh et al., 2019): a six-layer BERT distilled from BERT, in plain torch.

Parameter names are transformers' (``distilbert.embeddings.word_embeddings``,
``distilbert.transformer.layer.N.attention.q_lin``, ``ffn.lin1``, ``sa_layer_norm``...).
The network is BERT's without token types and pooler; the embeddings are BERT's
(:class:`factory.models.bert.BertEmbeddings`, LayerNorm epsilon fixed at 1e-12 as in
transformers), attention is BERT's (:class:`~factory.models.bert.BertSelfAttention`),
and the layers through BERT's layer loop. The config keeps DistilBERT's key names
(``dim``, ``n_heads``, ``n_layers``; ``hidden_size``... read and write them too).

Classes (task -> class):
    model, text-encoding        DistilBertModel
    masked-lm, pretraining      DistilBertForMaskedLM (vocab_transform, activation, vocab_layer_norm, vocab_projector)
    sequence-classification     DistilBertForSequenceClassification (pre_classifier, ReLU, dropout, classifier)
    multiple-choice             DistilBertForMultipleChoice
    token-classification        DistilBertForTokenClassification
    question-answering          DistilBertForQuestionAnswering
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from factory.errors import ConfigError
from factory.models import heads
from factory.models.bert import (
    ACTIVATIONS,
    Activation,
    BertEmbeddings,
    BertSelfAttention,
    LayerCache,
    check_length,
    input_shape,
    padding_mask,
    run_layers,
)
from factory.models.configuration import Config
from factory.models.initialisation import default_init
from factory.models.outputs import BaseModelOutput

#: transformers' DistilBERT LayerNorms use a fixed epsilon, not a config key.
LAYER_NORM_EPS = 1e-12


class DistilBertConfig(Config):
    """DistilBERT hyper-parameters with transformers' defaults and key names."""

    model_type = "distilbert"
    attribute_map = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 4 * 768
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    initializer_range: float = 0.02
    qa_dropout: float = 0.1
    seq_classif_dropout: float = 0.2
    pad_token_id: int | None = 0
    eos_token_id: int | None = None
    bos_token_id: int | None = None
    tie_word_embeddings: bool = True


def _check_config(config: DistilBertConfig) -> None:
    if config.dim % config.n_heads:
        raise ConfigError(
            f"DistilBERT: dim ({config.dim}) is not a multiple of n_heads ({config.n_heads})",
            hint="fix dim or n_heads in config.json",
        )
    if config.activation not in ACTIVATIONS:
        raise ConfigError(
            f"DistilBERT: activation {config.activation!r} is not supported; supported: {sorted(ACTIVATIONS)}",
            hint="use one of the supported activations, or register your own model class",
        )


def sinusoidal_positions(n_pos: int, dim: int) -> torch.Tensor:
    """The fixed ``sinusoidal_pos_embds`` table: sin on even, cos on odd features (computed in float64)."""
    positions = torch.arange(n_pos, dtype=torch.float64)[:, None]
    exponents = 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim
    angles = positions / torch.pow(10000.0, exponents)
    table = torch.empty(n_pos, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


class MultiHeadSelfAttention(BertSelfAttention):
    """BERT's attention as ``q_lin``, ``k_lin``, ``v_lin`` and the output projection ``out_lin``."""

    projection_names = ("q_lin", "k_lin", "v_lin")
    output_name = "out_lin"
    dropout_key = "attention_dropout"


class FFN(nn.Module):
    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.activation = Activation(config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(self.lin2(self.activation(self.lin1(hidden_states))))
        return out


class TransformerBlock(nn.Module):
    """Post-norm layer: attention + residual -> ``sa_layer_norm``, FFN + residual -> ``output_layer_norm``."""

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool = False,
        output_attentions: bool = False,
        past: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, LayerCache]:
        attended, probs, present = self.attention(hidden_states, mask, is_causal, output_attentions, past)
        attended = self.sa_layer_norm(attended + hidden_states)
        return self.output_layer_norm(self.ffn(attended) + attended), probs, present


class Transformer(nn.Module):
    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))


class DistilBertPreTrainedModel(nn.Module):
    """What every DistilBERT model class shares: config class, prefix, config checks and init."""

    config_class = DistilBertConfig
    base_model_prefix = "distilbert"
    # The position_ids buffer older transformers saved; an arange, not needed here.
    _keys_to_ignore_on_load_unexpected = (r"embeddings\.position_ids$",)

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation; the sinusoidal table when ``sinusoidal_pos_embds``."""
        default_init(module, self.config.initializer_range)
        trunk = cast(DistilBertModel, getattr(self, self.base_model_prefix, self))
        if self.config.sinusoidal_pos_embds and module is trunk.embeddings.position_embeddings:
            module.weight.copy_(sinusoidal_positions(self.config.max_position_embeddings, self.config.dim))


class DistilBertModel(DistilBertPreTrainedModel):
    """Embeddings (word + position) and the transformer layers -> ``last_hidden_state``."""

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config, token_types=False, eps=LAYER_NORM_EPS, dropout=config.dropout)
        self.transformer = Transformer(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        _, seq_len = input_shape(self, input_ids, inputs_embeds, attention_mask)
        check_length(self, seq_len, position_ids)
        hidden = self.embeddings(input_ids, None, position_ids, inputs_embeds)
        return run_layers(
            self.transformer.layer,
            hidden,
            padding_mask(attention_mask),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )


# --- task heads (factory.models.heads): DistilBertModel under ``distilbert`` plus the head layers ---------
def _dim(config: DistilBertConfig) -> nn.Linear:
    return nn.Linear(config.dim, config.dim)


def _activation(config: DistilBertConfig) -> nn.Module:
    return Activation(config.activation)


def _layer_norm(config: DistilBertConfig) -> nn.Module:
    return nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)


def _relu(config: DistilBertConfig) -> nn.Module:
    return nn.ReLU()


def _pre_classifier(out_features: str | int) -> dict[str, heads.LayerBuilder]:
    """``pre_classifier``, ReLU, dropout (``seq_classif_dropout``) and ``classifier`` on the first token."""
    return {
        "pre_classifier": _dim,
        "relu": _relu,
        "dropout": heads.dropout("seq_classif_dropout"),
        "classifier": heads.linear(out_features),
    }


class DistilBertTaskModel(heads.TaskModel, DistilBertPreTrainedModel):
    """The base of the DistilBERT heads: a :class:`DistilBertModel` under ``distilbert``."""

    trunk_class = DistilBertModel


class DistilBertForMaskedLM(heads.MaskedLM, DistilBertTaskModel):
    """Masked language modelling; ``vocab_projector`` is tied to the word embeddings."""

    head_layers = {
        "vocab_transform": _dim,
        "activation": _activation,
        "vocab_layer_norm": _layer_norm,
        "vocab_projector": heads.linear("vocab_size"),
    }
    tied = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def get_output_embeddings(self) -> nn.Module:
        return self.get_submodule("vocab_projector")


class DistilBertForSequenceClassification(heads.SequenceClassification, DistilBertTaskModel):
    """``pre_classifier``, ReLU, dropout and ``classifier`` on ``[CLS]``."""

    pool = heads.first_token
    head_layers = _pre_classifier("num_labels")


class DistilBertForMultipleChoice(heads.MultipleChoice, DistilBertTaskModel):
    """The sequence classifier's layers with one score per choice."""

    pool = heads.first_token
    head_layers = _pre_classifier(1)


class DistilBertForTokenClassification(heads.TokenClassification, DistilBertTaskModel):
    """Dropout (``dropout``) and ``classifier`` on every token."""

    head_layers = {"dropout": heads.dropout("dropout"), "classifier": heads.linear("num_labels")}


class DistilBertForQuestionAnswering(heads.QuestionAnswering, DistilBertTaskModel):
    """Extractive QA: dropout (``qa_dropout``), then start/end logits per token."""

    head_layers = {"dropout": heads.dropout("qa_dropout"), "qa_outputs": heads.span_outputs}


__all__ = [
    "DistilBertConfig",
    "DistilBertForMaskedLM",
    "DistilBertForMultipleChoice",
    "DistilBertForQuestionAnswering",
    "DistilBertForSequenceClassification",
    "DistilBertForTokenClassification",
    "DistilBertModel",
    "DistilBertTaskModel",
    "sinusoidal_positions",
]
