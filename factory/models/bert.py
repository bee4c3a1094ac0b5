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

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.initialisation import default_init
from factory.models.llama import KVCache, causal_mask
from factory.models.outputs import BaseModelOutput, NextSentencePredictorOutput, PreTrainingOutput


class EncoderConfig(Config):
    """The hyper-parameters of BERT's network that BERT, RoBERTa and MPNet share, with BERT's defaults."""

    vocab_size: int = 30522
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


class BertConfig(EncoderConfig):
    """BERT hyper-parameters; defaults are those of transformers' ``BertConfig``.

    ``id2label`` / ``label2id`` / ``num_labels`` / ``problem_type`` come from :class:`Config`.
    """

    model_type = "bert"
    type_vocab_size: int = 2
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


class Activation(nn.Module):
    """One of :data:`ACTIVATIONS` as a module (a head layer without parameters)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def _check_config(config: Config) -> None:
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
    position_embedding_type = getattr(config, "position_embedding_type", "absolute")
    if position_embedding_type != "absolute":
        raise ConfigError(
            f"BERT: position_embedding_type {position_embedding_type!r} is not supported; "
            "only 'absolute' is implemented (as in transformers 5)",
            hint="use a checkpoint with absolute position embeddings",
        )
    if getattr(config, "add_cross_attention", False):
        raise ConfigError(
            "BERT: add_cross_attention=True (BERT as the decoder of an encoder-decoder) is not supported natively",
            hint="set add_cross_attention to false, or use transformers for encoder-decoder BERT",
        )


class BertEmbeddings(nn.Module):
    """Word + token-type + absolute position embeddings, then LayerNorm.

    Other families reuse it: ``token_types=False`` drops the token-type table (DistilBERT,
    MPNet), ``eps`` and ``dropout`` replace the config's ``layer_norm_eps`` and
    ``hidden_dropout_prob``, and a subclass overrides :meth:`default_position_ids` (RoBERTa).
    """

    def __init__(
        self, config: Config, *, token_types: bool = True, eps: float | None = None, dropout: float | None = None
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size) if token_types else None
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps if eps is None else eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)

    @property
    def max_length(self) -> int:
        """The most positions (cached ones included) the default position ids cover."""
        return self.position_embeddings.num_embeddings

    def default_position_ids(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, past_length: int
    ) -> torch.Tensor | None:
        """Position ids when none are given; None means ``past_length, past_length + 1, ...`` for every row."""
        return None

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_length: int = 0,
    ) -> torch.Tensor:
        if position_ids is None:
            position_ids = self.default_position_ids(input_ids, inputs_embeds, past_length)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        seq_len = inputs_embeds.shape[1]
        # Defaults are slices of the tables (broadcast over the batch), not lookups.
        if position_ids is None:
            embeddings = inputs_embeds + self.position_embeddings.weight[past_length : past_length + seq_len]
        else:
            embeddings = inputs_embeds + self.position_embeddings(position_ids)
        if self.token_type_embeddings is None:
            if token_type_ids is not None:
                raise ModelInputError(
                    f"{type(self).__name__}: this model has no token types, but token_type_ids were given",
                    hint="drop token_type_ids from the inputs",
                )
        elif token_type_ids is None:
            embeddings = embeddings + self.token_type_embeddings.weight[0]
        else:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        out: torch.Tensor = self.dropout(self.LayerNorm(embeddings))
        return out


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention of ``[batch, heads, seq, head_dim]`` tensors.

    ``mask`` is boolean (True = attend) or additive (a float bias, -inf/min where masked).
    Through ``scaled_dot_product_attention``; an explicit softmax when ``output_attentions``
    asks for the probabilities, which are returned second (else None).
    """
    if not output_attentions:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
        return out, None
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    elif mask is not None:
        scores = scores + mask
    elif is_causal:
        causal = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1)
    return F.dropout(probs, dropout_p, dropout_p > 0) @ v, probs


#: One layer's cached (key, value), each ``[batch, heads, seq, head_dim]``.
LayerCache = tuple[torch.Tensor, torch.Tensor]


class BertSelfAttention(nn.Module):
    """Multi-head self-attention (before any output projection); extends a key/value cache.

    Families with BERT's attention under other checkpoint names subclass it: the query, key
    and value projections are ``projection_names``, ``output_name`` adds an output projection
    (DistilBERT's ``q_lin``... ``out_lin``, MPNet's ``q``... ``o``), and ``dropout_key`` names the
    config's attention dropout.
    """

    projection_names: ClassVar[tuple[str, str, str]] = ("query", "key", "value")
    output_name: ClassVar[str | None] = None
    dropout_key: ClassVar[str] = "attention_probs_dropout_prob"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        for name in (*self.projection_names, *([self.output_name] if self.output_name else [])):
            setattr(self, name, nn.Linear(config.hidden_size, config.hidden_size))
        self.dropout_p: float = getattr(config, self.dropout_key)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool = False,
        output_attentions: bool = False,
        past: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, LayerCache]:
        """``[batch, seq, hidden]`` in and out, the probabilities (with ``output_attentions``) and the
        layer's ``(key, value)`` with ``past`` in front."""
        batch, seq_len, _ = hidden_states.shape
        shape = (batch, seq_len, -1, self.head_dim)  # -1 heads: a tensor-parallel rank holds a share of them
        q, k, v = (
            self.get_submodule(name)(hidden_states).view(shape).transpose(1, 2) for name in self.projection_names
        )
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        dropout_p = self.dropout_p if self.training else 0.0
        out, probs = attend(q, k, v, mask, is_causal, dropout_p, output_attentions)
        out = out.transpose(1, 2).reshape(batch, seq_len, -1)
        if self.output_name is not None:
            out = self.get_submodule(self.output_name)(out)
        return out, probs, (k, v)


class BertSelfOutput(nn.Module):
    """Attention output projection, residual and LayerNorm."""

    def __init__(self, config: Config, in_features: int | None = None) -> None:
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
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        output_attentions: bool,
        past: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, LayerCache]:
        attended, probs, present = self.self(hidden_states, mask, is_causal, output_attentions, past)
        return self.output(attended, hidden_states), probs, present


class BertIntermediate(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden_states))


class BertOutput(BertSelfOutput):
    """Feed-forward down projection, residual and LayerNorm."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, in_features=config.intermediate_size)


class BertLayer(nn.Module):
    """Attention (with its residual and norm), then the feed-forward ``intermediate`` and ``output``."""

    #: Families with BERT's layer and another attention block (MPNet) set their own.
    attention_class: ClassVar[type[nn.Module]] = BertAttention

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.attention = self.attention_class(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        output_attentions: bool,
        past: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, LayerCache]:
        attended, probs, present = self.attention(hidden_states, mask, is_causal, output_attentions, past)
        return self.output(self.intermediate(attended), attended), probs, present


class BertEncoder(nn.Module):
    layer_class: ClassVar[type[nn.Module]] = BertLayer

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(self.layer_class(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    """tanh(dense(first token))."""

    def __init__(self, config: Config) -> None:
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

    config_class: ClassVar[type[Config]] = BertConfig
    base_model_prefix = "bert"
    # Buffers saved by transformers < 4.31 (e.g. all-MiniLM-L6-v2): an arange and zeros, not needed here.
    _keys_to_ignore_on_load_unexpected = (r"embeddings\.position_ids$", r"embeddings\.token_type_ids$")
    #: Language-model heads with an output ``bias`` and a ``decoder`` tied to the word embeddings.
    _lm_heads: ClassVar[tuple[type[nn.Module], ...]] = (BertLMPredictionHead,)

    def __init__(self, config: Config) -> None:
        super().__init__()
        _check_config(config)
        self.config = config

    @property
    def tied_weights(self) -> dict[str, str]:
        """``{dest: source}`` parameter names that share one tensor (the heads' are in :class:`heads.TaskModel`)."""
        return {}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation (:func:`init_weights`), zero LM-head biases."""
        default_init(module, self.config.initializer_range)
        if isinstance(module, self._lm_heads):
            cast(nn.Parameter, module.bias).zero_()
            # ``apply`` visits the decoder after the embeddings: keep the tied padding row zero.
            decoder = cast(nn.Linear, module.decoder)
            tied = isinstance(self, heads.TaskModel) and decoder.weight is self.get_input_embeddings().weight
            if tied and self.config.pad_token_id is not None:
                decoder.weight[self.config.pad_token_id].zero_()


def input_shape(
    model: nn.Module,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    past_length: int = 0,
) -> tuple[int, int]:
    """``(batch, seq_len)`` of an encoder's inputs, checked: exactly one of ids and embeddings, 2-d ids,
    and a mask of one entry per cached and new token."""
    name = type(model).__name__
    if input_ids is not None and inputs_embeds is None:
        shape = tuple(input_ids.shape)
    elif inputs_embeds is not None and input_ids is None:
        shape = tuple(inputs_embeds.shape[:-1])
    else:
        raise ModelInputError(
            f"{name}: pass exactly one of input_ids or inputs_embeds, "
            f"found {'both' if input_ids is not None else 'neither'}"
        )
    if len(shape) != 2:
        raise ModelInputError(
            f"{name}: input_ids must have shape (batch, seq_len), found shape {shape}",
            hint="add a batch dimension, e.g. input_ids[None]",
        )
    batch, seq_len = shape
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, past_length + seq_len):
        cached = f" plus {past_length} cached" if past_length else ""
        raise ModelInputError(
            f"{name}: attention_mask must have the inputs' shape{cached} {(batch, past_length + seq_len)} "
            f"(1 = token, 0 = padding), found {tuple(attention_mask.shape)}"
        )
    return batch, seq_len


def check_length(model: nn.Module, seq_len: int, position_ids: torch.Tensor | None, past_length: int = 0) -> None:
    """Refuse more tokens than ``model.embeddings``' position table has room for (with default position ids;
    given ones are only held to the table's size)."""
    table = cast(Config, model.config).max_position_embeddings
    room = cast(BertEmbeddings, model.embeddings).max_length if position_ids is None else table
    if position_ids is not None:
        past_length = 0
    if past_length + seq_len > room:
        cached = f" (past {past_length} + new {seq_len})" if past_length else ""
        usable = f", which has room for {room} tokens" if room != table else ""
        raise ModelInputError(
            f"{type(model).__name__}: sequence length {past_length + seq_len}{cached} exceeds "
            f"max_position_embeddings ({table}){usable}",
            hint="truncate the inputs (tokenizer truncation=True)",
        )


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """A boolean ``(batch, 1, 1, seq)`` mask (True = attend), or None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask[:, None, None, :].bool()


def run_layers(
    layers: Iterable[nn.Module],
    hidden: torch.Tensor,
    mask: Any,
    is_causal: bool = False,
    past_key_values: KVCache | None = None,
    use_cache: bool = False,
    output_attentions: bool = False,
    output_hidden_states: bool = False,
) -> BaseModelOutput:
    """Run BERT-style layers (``layer(hidden, mask, is_causal, output_attentions, past) -> (hidden, probs,
    (key, value))``) and collect what was asked: the cache, hidden states (the input first), attentions.

    ``mask`` is passed to every layer as it is: a mask tensor, or what a family's layers read instead
    (ModernBERT: rotary and mask per layer type).
    """
    all_hidden = [hidden] if output_hidden_states else None
    all_attentions: list[torch.Tensor] | None = [] if output_attentions else None
    presents: list[LayerCache] = []
    for i, layer in enumerate(layers):
        past = past_key_values[i] if past_key_values is not None else None
        hidden, probs, present = layer(hidden, mask, is_causal, output_attentions, past)
        if use_cache:
            presents.append(present)
        if all_hidden is not None:
            all_hidden.append(hidden)
        if all_attentions is not None:
            all_attentions.append(probs)
    return BaseModelOutput(
        last_hidden_state=hidden,
        past_key_values=tuple(presents) if use_cache else None,
        hidden_states=tuple(all_hidden) if all_hidden is not None else None,
        attentions=tuple(all_attentions) if all_attentions is not None else None,
    )


class BertModel(BertPreTrainedModel):
    """The BERT encoder: embeddings, transformer layers and (optionally) the pooler.

    Returns ``BaseModelOutput`` with ``last_hidden_state``, ``pooler_output`` and,
    when asked, ``hidden_states`` (embeddings, then every layer) and ``attentions``.
    With ``config.is_decoder`` attention is causal and ``use_cache=True`` returns
    ``past_key_values`` (per layer ``(key, value)``, ``[batch, heads, seq, head_dim]``)
    to pass back with the next tokens, as :mod:`factory.models.generation` does.
    """

    #: Families with BERT's trunk and other embeddings (RoBERTa) or layers (MPNet) set their own, and
    #: override :meth:`_attention_mask` for another mask (MPNet's relative-position bias).
    embeddings_class: ClassVar[type[BertEmbeddings]] = BertEmbeddings
    encoder_class: ClassVar[type[BertEncoder]] = BertEncoder

    def __init__(self, config: Config, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = self.embeddings_class(config)
        self.encoder = self.encoder_class(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def _attention_mask(
        self, attention_mask: torch.Tensor | None, hidden: torch.Tensor, past_length: int
    ) -> tuple[torch.Tensor | None, bool]:
        """A boolean ``(batch, 1, q, k)`` mask (True = attend) and whether SDPA's own causal mask applies."""
        if not getattr(self.config, "is_decoder", False):
            return padding_mask(attention_mask), False
        seq_len = hidden.shape[1]
        mask = causal_mask(attention_mask, seq_len, past_length, None, hidden.device)
        return mask, mask is None and past_length == 0 and seq_len > 1

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        decoder = bool(getattr(self.config, "is_decoder", False))
        if past_key_values is not None and not decoder:
            raise ModelInputError(
                f"{type(self).__name__}: past_key_values need a decoder config (is_decoder=True); "
                "this encoder attends both ways and keeps no cache",
                hint="drop past_key_values, or set is_decoder=True in config.json",
            )
        past_length = past_key_values[0][0].shape[2] if past_key_values else 0
        _, seq_len = input_shape(self, input_ids, inputs_embeds, attention_mask, past_length)
        check_length(self, seq_len, position_ids, past_length)
        hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past_length)
        mask, is_causal = self._attention_mask(attention_mask, hidden, past_length)
        out = run_layers(
            self.encoder.layer,
            hidden,
            mask,
            is_causal,
            past_key_values,
            use_cache and decoder,
            output_attentions,
            output_hidden_states,
        )
        out.pooler_output = self.pooler(out.last_hidden_state) if self.pooler is not None else None
        return out


class BertForTextEncoding(BertModel):
    """The ``text-encoding`` task: the bare trunk (transformers' AutoModelForTextEncoding maps bert to BertModel)."""


# --- task heads (factory.models.heads): BertModel under ``bert`` plus the head layers -----------------
_DROPOUT = heads.dropout("hidden_dropout_prob")
NO_POOLER = {"add_pooling_layer": False}
_TIED_LM = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


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

    trunk_options = NO_POOLER
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

    trunk_options = NO_POOLER
    head_layers = {"dropout": _DROPOUT, "classifier": heads.linear("num_labels")}


class BertForQuestionAnswering(heads.QuestionAnswering, BertTaskModel):
    """Extractive QA: start/end logits per token; positions outside the input are ignored in the loss."""

    trunk_options = NO_POOLER
    head_layers = {"qa_outputs": heads.span_outputs}


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
