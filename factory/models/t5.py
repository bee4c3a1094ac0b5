"""T5 (Raffel et al., 2019), mT5 and UMT5 in plain torch, with every head transformers offers.

Parameter names equal transformers' checkpoint keys, which have no trunk prefix for the
encoder-decoder classes (``shared.weight``, ``encoder.block.0.layer.0.SelfAttention.q.weight``,
``decoder.block.0.layer.1.EncDecAttention.o.weight``, ``lm_head.weight``): those heads derive from
:class:`T5Model` (``inline_trunk``, see :mod:`factory.models.heads`). The sequence and token
classifiers keep their trunk under ``transformer``.

The network: RMS layer norms before each block; attention without score scaling whose scores get
a learned bias per relative-position bucket (bidirectional in the encoder, causal in the decoder),
computed by the first layer and shared by all (T5, mT5) or computed by every layer (UMT5); a ReLU
or gated (``feed_forward_proj: gated-gelu``, T5 v1.1 / Flan / mT5) feed-forward.

Output projection, as transformers 5.23 does it: ``lm_head`` is tied to ``shared`` (unless the
checkpoint holds a different ``lm_head.weight``: then the builder keeps both), and the decoder
output is scaled by ``d_model ** -0.5`` before it when ``scale_decoder_outputs`` (T5: true unless
``config.json`` said ``tie_word_embeddings: false``), never (mT5), always (UMT5).

Classes (task -> class), and the same with ``MT5`` / ``UMT5``:
    model                      T5Model
    seq2seq-lm, pretraining    T5ForConditionalGeneration (``generate``)
    text-encoding              T5EncoderModel
    sequence-classification    T5ForSequenceClassification (decoder state at the last EOS)
    token-classification       T5ForTokenClassification (encoder only)
    question-answering         T5ForQuestionAnswering
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import torch
from torch import nn

from factory.errors import ConfigError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.llama import RMSNorm
from factory.models.outputs import BaseModelOutput
from factory.models.seq2seq import (
    Attention,
    Cache,
    EncoderDecoderModel,
    activation,
    check_heads,
    decoder_mask,
    embeddings_or_ids,
    full_mask,
    padding_mask,
    past_length,
    run_stack,
)


# --- configs ------------------------------------------------------------------------------
class T5Config(Config):
    """T5 hyper-parameters with transformers' defaults and key names.

    Derived as transformers does: ``num_decoder_layers`` (= ``num_layers``), ``dense_act_fn`` and
    ``is_gated_act`` from ``feed_forward_proj``, ``scale_decoder_outputs`` (kept when config.json has
    it, else ``tie_word_embeddings is not False``); ``tie_word_embeddings`` is then always true.
    """

    model_type = "t5"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "num_layers",
        "head_dim": "d_kv",
    }

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"
    is_encoder_decoder: bool = True
    use_cache: bool = True
    pad_token_id: int | None = 0
    eos_token_id: Any = 1
    classifier_dropout: float = 0.0
    is_decoder: bool = False
    tie_word_embeddings: bool = True

    #: UMT5: every self-attention layer has its own relative position bias.
    _bias_every_layer: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        tie = kwargs.pop("tie_word_embeddings", None)
        self._derive_scaling(kwargs, tie)
        super().__init__(**kwargs)
        self.tie_word_embeddings = True  # transformers forces it for the T5 family
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        parts = str(self.feed_forward_proj).split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ConfigError(
                f"{type(self).__name__}: feed_forward_proj={self.feed_forward_proj!r} is not 'ACT' or 'gated-ACT'",
                hint="T5 uses 'relu', T5 v1.1 / Flan-T5 / mT5 'gated-gelu'",
            )
        self.is_gated_act = parts[0] == "gated"
        self.dense_act_fn = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]

    def _derive_scaling(self, kwargs: dict[str, Any], tie: Any) -> None:
        kwargs.setdefault("scale_decoder_outputs", tie is not False)

    def _scales_lm_input(self) -> bool:
        """Whether the decoder output is scaled by ``d_model ** -0.5`` before ``lm_head``."""
        return bool(getattr(self, "scale_decoder_outputs", True))


class MT5Config(T5Config):
    """mT5: T5 v1.1 sizes; transformers 5.23 never scales its decoder output."""

    model_type = "mt5"
    vocab_size: int = 250112
    d_ff: int = 1024
    num_layers: int = 8
    num_heads: int = 6
    feed_forward_proj: str = "gated-gelu"
    bos_token_id: int | None = None
    decoder_start_token_id: int | None = 0

    def _derive_scaling(self, kwargs: dict[str, Any], tie: Any) -> None:
        return None

    def _scales_lm_input(self) -> bool:
        return False


class UMT5Config(MT5Config):
    """UMT5: a relative position bias in every layer; transformers 5.23 always scales its decoder output."""

    model_type = "umt5"
    _bias_every_layer: ClassVar[bool] = True

    def _scales_lm_input(self) -> bool:
        return True


def _check_config(config: T5Config) -> None:
    check_heads(config, config.num_heads * config.d_kv, ("num_heads", config.num_heads))
    activation(config, "dense_act_fn")
    if not config.relative_attention_num_buckets >= 4 or config.relative_attention_max_distance < 2:
        raise ConfigError(
            f"{type(config).__name__}: relative_attention_num_buckets={config.relative_attention_num_buckets} "
            f"and relative_attention_max_distance={config.relative_attention_max_distance} are too small",
            hint="T5 uses 32 buckets and a max distance of 128",
        )


# --- relative positions -------------------------------------------------------------------------
def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """Mesh TensorFlow's buckets: exact for small distances, logarithmic up to ``max_distance``, then one."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        relative_position = relative_position.abs()
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = (
        max_exact
        + (
            torch.log(relative_position.float() / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).long()
    )
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, relative_position, large)


class T5Attention(Attention):
    """T5 attention: projections ``q``/``k``/``v``/``o`` without bias, unscaled scores, optional bucket bias."""

    def __init__(self, config: T5Config, *, has_relative_bias: bool = False, cross: bool = False) -> None:
        super().__init__(
            config.d_model,
            config.num_heads,
            config.d_kv,
            cross=cross,
            names=("q", "k", "v", "o"),
            bias=False,
            scale=1.0,
            dropout=config.dropout_rate,
        )
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.has_relative_bias = has_relative_bias
        if has_relative_bias:
            self.relative_attention_bias = nn.Embedding(self.num_buckets, config.num_heads)

    def position_bias(self, query_length: int, key_length: int, bidirectional: bool) -> torch.Tensor:
        """``[1, heads, query, key]`` bias of the last ``query_length`` of ``key_length`` positions."""
        device = self.relative_attention_bias.weight.device
        context = torch.arange(key_length - query_length, key_length, dtype=torch.long, device=device)[:, None]
        memory = torch.arange(key_length, dtype=torch.long, device=device)[None, :]
        buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets, self.max_distance)
        bias: torch.Tensor = self.relative_attention_bias(buckets).permute(2, 0, 1)[None]
        return bias


# --- layers ---------------------------------------------------------------------------------------
class T5DenseActDense(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = activation(config, "dense_act_fn")

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.wo(self.dropout(self.act(self.wi(hidden))))
        return out


class T5DenseGatedActDense(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = activation(config, "dense_act_fn")

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.wo(self.dropout(self.act(self.wi_0(hidden)) * self.wi_1(hidden)))
        return out


class _Sublayer(nn.Module):
    """``hidden + dropout(block(layer_norm(hidden)))``: every sublayer of a T5 block."""

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)


class T5LayerSelfAttention(_Sublayer):
    def __init__(self, config: T5Config, has_relative_bias: bool) -> None:
        super().__init__(config)
        self.SelfAttention = T5Attention(config, has_relative_bias=has_relative_bias)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, kv = self.SelfAttention(self.layer_norm(hidden), mask, past=past)
        return hidden + self.dropout(out), kv


class T5LayerCrossAttention(_Sublayer):
    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.EncDecAttention = T5Attention(config, cross=True)

    def forward(
        self,
        hidden: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        mask: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, kv = self.EncDecAttention(self.layer_norm(hidden), mask, key_value_states=encoder_hidden_states, past=past)
        return hidden + self.dropout(out), kv


class T5LayerFF(_Sublayer):
    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.DenseReluDense = T5DenseGatedActDense(config) if config.is_gated_act else T5DenseActDense(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = hidden + self.dropout(self.DenseReluDense(self.layer_norm(hidden)))
        return out


class T5Block(nn.Module):
    """``layer``: self-attention, cross-attention (decoder only), feed-forward."""

    def __init__(self, config: T5Config, *, decoder: bool, has_relative_bias: bool) -> None:
        super().__init__()
        self.decoder = decoder
        self.layer = nn.ModuleList([T5LayerSelfAttention(config, has_relative_bias)])
        if decoder:
            self.layer.append(T5LayerCrossAttention(config))
        self.layer.append(T5LayerFF(config))

    @property
    def self_attention(self) -> T5Attention:
        return cast(T5Attention, self.layer[0].SelfAttention)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_mask: torch.Tensor | None = None,
        past: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        hidden, present = self.layer[0](hidden, mask, None if past is None else (past[0], past[1]))
        if self.decoder:
            cross_past = None if past is None else (past[2], past[3])
            hidden, cross = self.layer[1](hidden, encoder_hidden_states, encoder_mask, cross_past)
            present = (*present, *cross)
        return self.layer[-1](hidden), present


class T5Stack(nn.Module):
    """The encoder or the decoder: ``embed_tokens`` (the shared embeddings), ``block``, ``final_layer_norm``."""

    def __init__(self, config: T5Config, embed_tokens: nn.Embedding, *, decoder: bool) -> None:
        super().__init__()
        self.config, self.is_decoder = config, decoder
        self.embed_tokens = embed_tokens
        layers: int = config.num_decoder_layers if decoder and config.num_decoder_layers else config.num_layers
        self.block = nn.ModuleList(
            T5Block(config, decoder=decoder, has_relative_bias=i == 0 or config._bias_every_layer)
            for i in range(layers)
        )
        self.final_layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """The decoder's ``attention_mask`` is [batch, past + seq]; the encoder's [batch, seq]."""
        name = "T5 decoder" if self.is_decoder else "T5 encoder"
        hidden = embeddings_or_ids(name, input_ids, inputs_embeds, self.embed_tokens)
        batch, seq = hidden.shape[:2]
        if self.is_decoder:
            config = self.config
            past = past_length(past_key_values, len(self.block), batch, config.num_heads, config.d_kv)
            mask, is_causal = decoder_mask(attention_mask, batch, seq, past, hidden.device)
            mask = full_mask(mask, is_causal, seq, past + seq)
        else:
            past, mask = 0, padding_mask(attention_mask, (batch, seq))
        cross = None
        if encoder_hidden_states is not None:
            cross = padding_mask(encoder_attention_mask, encoder_hidden_states.shape[:2])
        biased: list[torch.Tensor | None] = [None]  # the additive mask of the last block with a position bias

        def call(block: nn.Module, h: torch.Tensor, layer_past: Any) -> tuple[torch.Tensor, Any]:
            attention = cast(T5Block, block).self_attention
            if attention.has_relative_bias:
                bias = attention.position_bias(seq, past + seq, bidirectional=not self.is_decoder).to(h.dtype)
                min_value = torch.finfo(h.dtype).min
                biased[0] = bias if mask is None else torch.where(mask.to(bias.device), bias, min_value)
            out: tuple[torch.Tensor, Any] = block(h, biased[0], encoder_hidden_states, cross, layer_past)
            return out

        return run_stack(
            self.block,
            self.dropout(hidden),
            call,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            final=lambda h: self.dropout(self.final_layer_norm(h)),
        )


# --- models ---------------------------------------------------------------------------------------
#: transformers' initialisation by layer name: the std of N(0, std) is ``factor`` times this of the config.
_INIT_STD: dict[str, Callable[[T5Config], float]] = {
    "q": lambda c: (c.d_model * c.d_kv) ** -0.5,
    "k": lambda c: c.d_model**-0.5,
    "v": lambda c: c.d_model**-0.5,
    "o": lambda c: (c.num_heads * c.d_kv) ** -0.5,
    "wi": lambda c: c.d_model**-0.5,
    "wi_0": lambda c: c.d_model**-0.5,
    "wi_1": lambda c: c.d_model**-0.5,
    "wo": lambda c: c.d_ff**-0.5,
    "relative_attention_bias": lambda c: c.d_model**-0.5,
    "qa_outputs": lambda c: c.d_model**-0.5,
    "dense": lambda c: c.d_model**-0.5,
    "out_proj": lambda c: c.d_model**-0.5,
}


def _unit_std(config: T5Config) -> float:
    """Embeddings, ``lm_head`` and ``classifier``: std ``initializer_factor`` itself."""
    return 1.0


class T5PreTrainedModel(nn.Module):
    """What every T5-family model class shares: config class, prefix, config checks and init."""

    config_class: ClassVar[type[T5Config]] = T5Config
    base_model_prefix: ClassVar[str] = "transformer"
    _keys_to_ignore_on_load_unexpected: tuple[str, ...] = (
        r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight",
    )

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        _check_config(config)
        self.config = config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' T5 initialisation, chosen by the layer's name (``initializer_factor`` times a std)."""
        factor = self.config.initializer_factor
        if isinstance(module, RMSNorm):
            module.weight.fill_(factor)
            return
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            return
        names = self.__dict__.setdefault("_module_names", {})
        if id(module) not in names:
            names.update({id(m): name.rpartition(".")[2] for name, m in self.named_modules()})
        std = _INIT_STD.get(names.get(id(module), ""), _unit_std)(self.config)
        module.weight.normal_(0.0, factor * std)
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            bias.zero_()


def _shared(config: T5Config) -> nn.Embedding:
    return nn.Embedding(config.vocab_size, config.d_model)


class T5Model(T5PreTrainedModel, EncoderDecoderModel):
    """The bare encoder-decoder (``shared``, ``encoder``, ``decoder``); the decoder needs its own inputs."""

    _keys_to_ignore_on_load_unexpected = (*T5PreTrainedModel._keys_to_ignore_on_load_unexpected, r"^lm_head\.")

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.shared = _shared(config)
        self.encoder = T5Stack(config, self.shared, decoder=False)
        self.decoder = T5Stack(config, self.shared, decoder=True)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared


class T5EncoderModel(T5PreTrainedModel):
    """The encoder alone (``shared``, ``encoder``): the ``text-encoding`` task."""

    _keys_to_ignore_on_load_unexpected = (r"^decoder\.", r"^lm_head\.")

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.shared = _shared(config)
        self.encoder = T5Stack(config, self.shared, decoder=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        out: BaseModelOutput = self.encoder(
            input_ids, attention_mask, inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states
        )
        return out


# --- task heads (factory.models.heads) -------------------------------------------------------------
def _lm_input(model: heads.TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """The decoder output, scaled by ``d_model ** -0.5`` where the family does (see the module docstring)."""
    hidden: torch.Tensor = out.last_hidden_state
    return hidden * model.config.d_model**-0.5 if model.config._scales_lm_input() else hidden


# The task model's forward shadows the inline trunk's on purpose (see heads.TaskModel.inline_trunk).
class T5ForConditionalGeneration(heads.Seq2SeqLM, T5Model):  # type: ignore[misc]
    """Vocabulary logits (``lm_head`` tied to ``shared``); ``labels`` shifted right feed the decoder; ``generate``."""

    inline_trunk = True
    trunk_class = T5Model
    pool = _lm_input
    tied = {"lm_head.weight": "shared.weight"}
    _keys_to_ignore_on_load_unexpected = T5PreTrainedModel._keys_to_ignore_on_load_unexpected


class T5ForQuestionAnswering(heads.Seq2SeqQuestionAnswering, T5Model):  # type: ignore[misc]
    """Span start/end logits per decoder position (``qa_outputs``; the decoder reads ``input_ids`` shifted)."""

    inline_trunk = True
    trunk_class = T5Model
    _keys_to_ignore_on_load_unexpected = T5PreTrainedModel._keys_to_ignore_on_load_unexpected


class T5ForSequenceClassification(heads.Seq2SeqSequenceClassification, T5PreTrainedModel):
    """``classification_head`` on the decoder state at each row's last EOS; trunk under ``transformer``."""

    trunk_class = T5Model


class T5ForTokenClassification(heads.TokenClassification, T5PreTrainedModel):
    """A label per token from the encoder alone (``transformer`` is a :class:`T5EncoderModel`)."""

    trunk_class = T5EncoderModel
    head_layers = {"dropout": heads.dropout(default=0.0), "classifier": heads.linear("num_labels")}


# --- mT5 and UMT5: the same classes with their configs ------------------------------------------------
class MT5Model(T5Model):
    config_class = MT5Config


class MT5EncoderModel(T5EncoderModel):
    config_class = MT5Config


class MT5ForConditionalGeneration(T5ForConditionalGeneration):
    config_class = MT5Config


class MT5ForQuestionAnswering(T5ForQuestionAnswering):
    config_class = MT5Config


class MT5ForSequenceClassification(T5ForSequenceClassification):
    config_class = MT5Config


class MT5ForTokenClassification(T5ForTokenClassification):
    config_class = MT5Config


class UMT5Model(T5Model):
    config_class = UMT5Config


class UMT5EncoderModel(T5EncoderModel):
    config_class = UMT5Config


class UMT5ForConditionalGeneration(T5ForConditionalGeneration):
    config_class = UMT5Config


class UMT5ForQuestionAnswering(T5ForQuestionAnswering):
    config_class = UMT5Config


class UMT5ForSequenceClassification(T5ForSequenceClassification):
    config_class = UMT5Config


class UMT5ForTokenClassification(T5ForTokenClassification):
    config_class = UMT5Config
