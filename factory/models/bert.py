"""BERT (Devlin et al., 2018) in plain torch, with every head transformers offers.

Parameter names equal those in checkpoints saved by transformers, so Hub
checkpoints load as they are. Attention runs through
``torch.nn.functional.scaled_dot_product_attention``; the padding mask is a
boolean ``(batch, 1, 1, seq)`` mask, and no mask is built when nothing is
padded. ``output_attentions=True`` switches to an explicit softmax so the
attention probabilities can be returned.

Classes (task -> class):
    model                     BertModel
    pretraining               BertForPreTraining
    masked-lm                 BertForMaskedLM
    next-sentence-prediction  BertForNextSentencePrediction
    sequence-classification   BertForSequenceClassification
    multiple-choice           BertForMultipleChoice
    token-classification      BertForTokenClassification
    question-answering        BertForQuestionAnswering
    text-encoding             BertForTextEncoding (the trunk, as AutoModelForTextEncoding)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.outputs import BaseModelOutput, NextSentencePredictorOutput, PreTrainingOutput


class BertConfig(Config):
    """BERT hyper-parameters; defaults are those of transformers' ``BertConfig``.

    ``id2label`` / ``label2id`` / ``num_labels`` / ``problem_type`` come from :class:`Config`.
    """

    model_type = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    position_embedding_type: str = "absolute"
    classifier_dropout: float | None = None
    is_decoder: bool = False
    add_cross_attention: bool = False
    use_cache: bool = True
    tie_word_embeddings: bool = True


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


#: ``hidden_act`` names (as in transformers' ACT2FN) that BERT checkpoints use.
ACTIVATIONS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def _check_config(config: BertConfig) -> None:
    """Reject configs this implementation would otherwise run wrongly."""
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(
            f"BERT: hidden_size ({config.hidden_size}) is not a multiple of "
            f"num_attention_heads ({config.num_attention_heads})",
            hint="fix hidden_size or num_attention_heads in config.json",
        )
    if config.hidden_act not in ACTIVATIONS:
        raise ConfigError(
            f"BERT: hidden_act {config.hidden_act!r} is not supported; supported: {sorted(ACTIVATIONS)}",
            hint="use one of the supported activations, or register your own model class",
        )
    if config.position_embedding_type != "absolute":
        raise ConfigError(
            f"BERT: position_embedding_type {config.position_embedding_type!r} is not supported; "
            "only 'absolute' is implemented (as in transformers 5)",
            hint="use a checkpoint with absolute position embeddings",
        )
    if config.add_cross_attention:
        raise ConfigError(
            "BERT: add_cross_attention=True (BERT as the decoder of an encoder-decoder) is not supported natively",
            hint="set add_cross_attention to false, or use transformers for encoder-decoder BERT",
        )


class BertEmbeddings(nn.Module):
    """Word + token-type + absolute position embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        seq_len = inputs_embeds.shape[1]
        # Defaults are slices of the tables (broadcast over the batch), not lookups.
        if token_type_ids is None:
            token_type = self.token_type_embeddings.weight[0]
        else:
            token_type = self.token_type_embeddings(token_type_ids)
        if position_ids is None:
            position = self.position_embeddings.weight[:seq_len]
        else:
            position = self.position_embeddings(position_ids)
        embeddings = inputs_embeds + token_type + position
        out: torch.Tensor = self.dropout(self.LayerNorm(embeddings))
        return out


class BertSelfAttention(nn.Module):
    """Multi-head attention projections and the attention itself."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, _ = hidden_states.shape
        shape = (batch, seq_len, -1, self.head_dim)  # -1 heads: a tensor-parallel rank holds a share of them
        q = self.query(hidden_states).view(shape).transpose(1, 2)
        k = self.key(hidden_states).view(shape).transpose(1, 2)
        v = self.value(hidden_states).view(shape).transpose(1, 2)
        dropout_p = self.dropout_p if self.training else 0.0
        probs = None
        if output_attentions:
            scores = (q @ k.transpose(-1, -2)) * self.scale
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            elif is_causal:
                causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=scores.device).tril()
                scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
            probs = scores.softmax(dim=-1)
            out = F.dropout(probs, dropout_p, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
        return out.transpose(1, 2).reshape(batch, seq_len, -1), probs


class BertSelfOutput(nn.Module):
    """Attention output projection, residual and LayerNorm."""

    def __init__(self, config: BertConfig, in_features: int | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)
        return out


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.self(hidden_states, mask, is_causal, output_attentions)
        return self.output(attended, hidden_states), probs


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden_states))


class BertOutput(BertSelfOutput):
    """Feed-forward down projection, residual and LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config, in_features=config.intermediate_size)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attention(hidden_states, mask, is_causal, output_attentions)
        return self.output(self.intermediate(attended), attended), probs


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    """tanh(dense(first token))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.LayerNorm(self.act(self.dense(hidden_states)))
        return out


class BertLMPredictionHead(nn.Module):
    """Transform, then project onto the vocabulary.

    Checkpoints store the output bias as ``bias``; ``decoder.bias`` is tied to it
    (and ``decoder.weight`` to the word embeddings) unless ``tie_word_embeddings``
    is false, in which case the checkpoint carries ``decoder.*`` itself.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.decoder(self.transform(hidden_states))
        return logits


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.predictions(sequence_output)
        return logits


class BertOnlyNSPHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.seq_relationship(pooled_output)
        return logits


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertPreTrainedModel(nn.Module):
    """What every BERT model class shares: config class, prefix, config checks and init."""

    config_class = BertConfig
    base_model_prefix = "bert"
    # Buffers saved by transformers < 4.31 (e.g. all-MiniLM-L6-v2): an arange and zeros, not needed here.
    _keys_to_ignore_on_load_unexpected = (r"embeddings\.position_ids$", r"embeddings\.token_type_ids$")

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config

    @property
    def tied_weights(self) -> dict[str, str]:
        """``{dest: source}`` parameter names that share one tensor (the heads' are in :class:`heads.TaskModel`)."""
        return {}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation: N(0, initializer_range) weights, zero biases, unit norms."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, BertLMPredictionHead):
            module.bias.zero_()
            # ``apply`` visits the decoder after the embeddings: keep the tied padding row zero.
            tied = isinstance(self, heads.TaskModel) and module.decoder.weight is self.get_input_embeddings().weight
            if tied and self.config.pad_token_id is not None:
                module.decoder.weight[self.config.pad_token_id].zero_()


class BertModel(BertPreTrainedModel):
    """The BERT encoder: embeddings, transformer layers and (optionally) the pooler.

    Returns ``BaseModelOutput`` with ``last_hidden_state``, ``pooler_output`` and,
    when asked, ``hidden_states`` (embeddings, then every layer) and ``attentions``.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def _attention_mask(
        self, attention_mask: torch.Tensor | None, seq_len: int, device: torch.device
    ) -> tuple[torch.Tensor | None, bool]:
        """A boolean ``(batch, 1, q, k)`` mask (True = attend), or None when nothing is masked."""
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if attention_mask is None:
            return None, bool(self.config.is_decoder)
        mask = attention_mask[:, None, None, :].bool()
        if self.config.is_decoder:
            mask = mask & torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
        return mask, False

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        if input_ids is not None and inputs_embeds is None:
            shape = tuple(input_ids.shape)
        elif inputs_embeds is not None and input_ids is None:
            shape = tuple(inputs_embeds.shape[:-1])
        else:
            raise ModelInputError(
                "BertModel: pass exactly one of input_ids or inputs_embeds, "
                f"found {'both' if input_ids is not None else 'neither'}"
            )
        if len(shape) != 2:
            raise ModelInputError(
                f"BertModel: input_ids must have shape (batch, seq_len), found shape {shape}",
                hint="add a batch dimension, e.g. input_ids[None]",
            )
        if attention_mask is not None and tuple(attention_mask.shape) != shape:
            raise ModelInputError(
                f"BertModel: attention_mask must have the inputs' shape {shape} (1 = token, 0 = padding), "
                f"found {tuple(attention_mask.shape)}"
            )
        if shape[1] > self.config.max_position_embeddings:
            raise ModelInputError(
                f"BertModel: sequence length {shape[1]} exceeds max_position_embeddings "
                f"({self.config.max_position_embeddings})",
                hint="truncate the inputs (tokenizer truncation=True)",
            )
        hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        mask, is_causal = self._attention_mask(attention_mask, shape[1], hidden.device)

        all_hidden = [hidden] if output_hidden_states else None
        all_attentions: list[torch.Tensor] | None = [] if output_attentions else None
        for layer in self.encoder.layer:
            hidden, probs = layer(hidden, mask, is_causal, output_attentions)
            if all_hidden is not None:
                all_hidden.append(hidden)
            if all_attentions is not None:
                all_attentions.append(probs)

        return BaseModelOutput(
            last_hidden_state=hidden,
            pooler_output=self.pooler(hidden) if self.pooler is not None else None,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            attentions=tuple(all_attentions) if all_attentions is not None else None,
        )


class BertForTextEncoding(BertModel):
    """The ``text-encoding`` task: the bare trunk (transformers' AutoModelForTextEncoding maps bert to BertModel)."""


# --- task heads (factory.models.heads): BertModel under ``bert`` plus the head layers -----------------
_DROPOUT = heads.dropout("hidden_dropout_prob")
_NO_POOLER = {"add_pooling_layer": False}
_TIED_LM = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


def _span_outputs(config: BertConfig) -> nn.Linear:
    """``qa_outputs``: transformers sizes it by ``num_labels``, which must be 2 (start and end)."""
    if config.num_labels != 2:
        raise ConfigError(
            f"BertForQuestionAnswering: needs num_labels == 2 (start and end logits), found {config.num_labels}",
            hint="remove num_labels / id2label from the config, or set num_labels=2",
        )
    return nn.Linear(config.hidden_size, 2)


class BertTaskModel(heads.TaskModel, BertPreTrainedModel):
    """The base of the BERT heads: a :class:`BertModel` under ``bert``."""

    trunk_class = BertModel


class BertForPreTraining(BertTaskModel):
    """Masked-LM and next-sentence heads; ``loss`` needs both ``labels`` and ``next_sentence_label``."""

    output_class = PreTrainingOutput
    label_names = ("labels", "next_sentence_label")
    head_layers = {"cls": BertPreTrainingHeads}
    tied = _TIED_LM
    cls: BertPreTrainingHeads

    def predict(self, out: BaseModelOutput, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {
            "prediction_logits": self.cls.predictions(out.last_hidden_state),
            "seq_relationship_logits": self.cls.seq_relationship(out.pooler_output),
        }

    def loss(
        self,
        prediction_logits: torch.Tensor,
        seq_relationship_logits: torch.Tensor,
        labels: torch.Tensor | None,
        next_sentence_label: torch.Tensor | None,
    ) -> torch.Tensor:
        if labels is None or next_sentence_label is None:
            raise ModelInputError(
                "BertForPreTraining: the pre-training loss needs both labels (masked LM) and "
                f"next_sentence_label, found only {'labels' if labels is not None else 'next_sentence_label'}",
                hint="pass both, or use BertForMaskedLM / BertForNextSentencePrediction for one loss",
            )
        return heads.cross_entropy_loss(prediction_logits, labels) + heads.cross_entropy_loss(
            seq_relationship_logits, next_sentence_label
        )


class BertForMaskedLM(heads.MaskedLM, BertTaskModel):
    """Masked language modelling; ``labels`` of -100 are ignored in the loss."""

    trunk_options = _NO_POOLER
    head_layers = {"cls": BertOnlyMLMHead}
    tied = _TIED_LM
    cls: BertOnlyMLMHead

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder


class BertForNextSentencePrediction(BertTaskModel):
    """Is sentence B the continuation of sentence A? ``labels``: 0 = yes, 1 = random."""

    output_class = NextSentencePredictorOutput
    pool = heads.pooler_output
    head_layers = {"cls": BertOnlyNSPHead}


class BertForSequenceClassification(heads.SequenceClassification, BertTaskModel):
    """Linear head on the pooled output; regression, single- or multi-label loss by ``problem_type``."""

    pool = heads.pooler_output
    head_layers = {"dropout": _DROPOUT, "classifier": heads.linear("num_labels")}


class BertForMultipleChoice(heads.MultipleChoice, BertTaskModel):
    """Scores each of ``num_choices`` candidates by its pooled output; inputs ``(batch, num_choices, seq_len)``."""

    pool = heads.pooler_output
    head_layers = {"dropout": _DROPOUT, "classifier": heads.linear(1)}


class BertForTokenClassification(heads.TokenClassification, BertTaskModel):
    """A label per token (NER, POS); ``labels`` of -100 are ignored in the loss."""

    trunk_options = _NO_POOLER
    head_layers = {"dropout": _DROPOUT, "classifier": heads.linear("num_labels")}


class BertForQuestionAnswering(heads.QuestionAnswering, BertTaskModel):
    """Extractive QA: start/end logits per token; positions outside the input are ignored in the loss."""

    trunk_options = _NO_POOLER
    head_layers = {"qa_outputs": _span_outputs}


__all__ = [
    "BertConfig",
    "BertForMaskedLM",
    "BertForMultipleChoice",
    "BertForNextSentencePrediction",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTextEncoding",
    "BertForTokenClassification",
    "BertModel",
    "BertTaskModel",
]
