"""BART (Lewis et al., 2019) in plain torch: the denoising encoder-decoder and every head transformers offers.

Parameter names equal transformers' checkpoint keys (``model.shared.weight``,
``model.encoder.layers.0.self_attn.q_proj.weight``, ``final_logits_bias``...). The network is
the fairseq-style one of :mod:`factory.models.seq2seq` with the norm after each block: token
embeddings (times ``sqrt(d_model)`` when ``scale_embedding``) plus learned positions offset by 2,
``layernorm_embedding``, then the layers; one embedding matrix (``shared``) serves the encoder, the
decoder and (tied) ``lm_head``.

Classes (task -> class):
    model                      BartModel
    seq2seq-lm, masked-lm,     BartForConditionalGeneration (``generate``: decoder starts with
      pretraining                ``decoder_start_token_id``, ``forced_bos_token_id`` / ``forced_eos_token_id``)
    sequence-classification    BartForSequenceClassification (decoder state at the last EOS)
    question-answering         BartForQuestionAnswering
    causal-lm                  BartForCausalLM (the decoder alone, keys ``model.decoder.*``; as in
                               transformers its positions count from the cache length, and its
                               ``labels`` are not shifted)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.initialisation import default_init
from factory.models.outputs import BaseModelOutput
from factory.models.seq2seq import (
    DecoderLayer,
    DecoderWrapper,
    EncoderDecoderModel,
    EncoderLayer,
    FairseqConfig,
    FairseqDecoder,
    LayerStyle,
    activation,
    check_heads,
    embeddings_or_ids,
    padding_mask,
    run_stack,
)


class BartConfig(FairseqConfig):
    """BART hyper-parameters; defaults are those of transformers' ``BartConfig`` (3 labels by default)."""

    model_type = "bart"
    attribute_map = {
        "num_attention_heads": "encoder_attention_heads",
        "hidden_size": "d_model",
        "num_hidden_layers": "encoder_layers",
    }

    vocab_size: int = 50265
    max_position_embeddings: int = 1024
    encoder_layers: int = 12
    encoder_ffn_dim: int = 4096
    encoder_attention_heads: int = 16
    decoder_layers: int = 12
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    d_model: int = 1024
    dropout: float = 0.1
    classifier_dropout: float = 0.0
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: Any = 2
    decoder_start_token_id: int | None = 2
    forced_eos_token_id: Any = 2
    is_decoder: bool = False

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("id2label") is None and "num_labels" not in kwargs:
            kwargs["num_labels"] = 3  # transformers' BartConfig default
        super().__init__(**kwargs)


def _check_config(config: BartConfig) -> None:
    check_heads(
        config,
        config.d_model,
        ("encoder_attention_heads", config.encoder_attention_heads),
        ("decoder_attention_heads", config.decoder_attention_heads),
    )
    activation(config, "activation_function")
    pad = config.pad_token_id
    if pad is not None and not (isinstance(pad, int) and 0 <= pad < config.vocab_size):
        raise ConfigError(
            f"BartConfig: pad_token_id={pad!r} is not a token id below vocab_size={config.vocab_size}",
            hint="set pad_token_id to a valid id or null",
        )


#: BART's layers: the layer norm after each residual block.
STYLE = LayerStyle(pre_norm=False)


class ScaledEmbedding(nn.Embedding):
    """Token embeddings times ``embed_scale`` (``sqrt(d_model)`` when ``scale_embedding``)."""

    def __init__(self, config: BartConfig) -> None:
        super().__init__(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.embed_scale


class LearnedPositions(nn.Embedding):
    """Learned positions; fairseq's table starts 2 rows in (``max_position_embeddings + 2`` rows)."""

    offset = 2

    def __init__(self, config: BartConfig) -> None:
        super().__init__(config.max_position_embeddings + self.offset, config.d_model)
        self.max_positions = config.max_position_embeddings

    def forward(self, start: int, length: int) -> torch.Tensor:  # type: ignore[override]
        if start + length > self.max_positions:
            raise ModelInputError(
                f"BART: positions up to {start + length} exceed max_position_embeddings ({self.max_positions})",
                hint="truncate the inputs (tokenizer truncation=True) or generate fewer tokens",
            )
        return self.weight[start + self.offset : start + length + self.offset]


class BartPreTrainedModel(nn.Module):
    """What every BART model class shares: config class, checkpoint prefix, config checks and init."""

    config_class: ClassVar[type[BartConfig]] = BartConfig
    base_model_prefix: ClassVar[str] = "model"
    _keys_to_ignore_on_load_unexpected = (r"encoder\.version", r"decoder\.version")

    def __init__(self, config: BartConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config

    def _init_weights(self, module: nn.Module) -> None:
        default_init(module, self.config.init_std)
        if isinstance(module, BartForConditionalGeneration):
            module.final_logits_bias.zero_()


class BartEncoder(BartPreTrainedModel):
    def __init__(self, config: BartConfig, embed_tokens: nn.Embedding | None = None) -> None:
        super().__init__(config)
        self.embed_tokens = ScaledEmbedding(config) if embed_tokens is None else embed_tokens
        self.embed_positions = LearnedPositions(config)
        self.layers = nn.ModuleList(EncoderLayer(config, STYLE) for _ in range(config.encoder_layers))
        self.layernorm_embedding = nn.LayerNorm(config.d_model)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        hidden = embeddings_or_ids("BartEncoder", input_ids, inputs_embeds, self.embed_tokens)
        mask = padding_mask(attention_mask, hidden.shape[:2])
        hidden = self.layernorm_embedding(hidden + self.embed_positions(0, hidden.shape[1]))
        hidden = F.dropout(hidden, self.config.dropout, self.training)
        return run_stack(
            self.layers, hidden, lambda layer, h, _: (layer(h, mask), None), output_hidden_states=output_hidden_states
        )


class BartDecoder(BartPreTrainedModel, FairseqDecoder):
    """Learned positions counted from the cache length (``position_ids`` are not used, as in transformers),
    ``layernorm_embedding``, post-norm layers."""

    def __init__(self, config: BartConfig, embed_tokens: nn.Embedding | None = None) -> None:
        super().__init__(config)
        self.embed_tokens = ScaledEmbedding(config) if embed_tokens is None else embed_tokens
        self.embed_positions = LearnedPositions(config)
        self.layers = nn.ModuleList(DecoderLayer(config, STYLE) for _ in range(config.decoder_layers))
        self.layernorm_embedding = nn.LayerNorm(config.d_model)

    def positions(self, past: int, seq: int, position_ids: torch.Tensor | None, batch: int) -> torch.Tensor:
        out: torch.Tensor = self.embed_positions(past, seq)
        return out

    def embedded(self, hidden: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layernorm_embedding(hidden)
        return out


class BartModel(BartPreTrainedModel, EncoderDecoderModel):
    """The bare encoder-decoder; without decoder inputs the decoder reads ``input_ids`` shifted right.

    The encoder and the decoder share ``shared`` unless ``tie_word_embeddings`` is false (then each has its
    own ``embed_tokens``, as transformers saves them).
    """

    shift_inputs_for_decoder = True

    def __init__(self, config: BartConfig) -> None:
        super().__init__(config)
        self.shared = ScaledEmbedding(config)
        embed = self.shared if config.tie_word_embeddings else None
        self.encoder = BartEncoder(config, embed)
        self.decoder = BartDecoder(config, embed)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared


# --- task heads (factory.models.heads): BartModel under ``model`` plus the head layers -----------------
class BartTaskModel(heads.Seq2SeqTaskModel, BartPreTrainedModel):
    """The base of the BART encoder-decoder heads: a :class:`BartModel` under ``model``."""

    trunk_class = BartModel


class BartForConditionalGeneration(heads.Seq2SeqLM, BartTaskModel):
    """Vocabulary logits (``lm_head`` tied to ``model.shared``, plus ``final_logits_bias``); ``generate``."""

    tied = {"lm_head.weight": "model.shared.weight"}
    _keys_to_ignore_on_load_missing = (r"^final_logits_bias$",)
    final_logits_bias: torch.Tensor

    def __init__(self, config: BartConfig) -> None:
        super().__init__(config)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"logits": self.run_head(self.pool(out, inputs)) + self.final_logits_bias}


class BartForSequenceClassification(heads.Seq2SeqSequenceClassification, BartTaskModel):
    """``classification_head`` on the decoder state at each row's last EOS token."""


class BartForQuestionAnswering(heads.Seq2SeqQuestionAnswering, BartTaskModel):
    """Span start/end logits per decoder position (``qa_outputs``)."""


class BartDecoderWrapper(BartPreTrainedModel, DecoderWrapper):
    """The decoder alone under ``decoder`` (checkpoint keys ``model.decoder.*``)."""

    def __init__(self, config: BartConfig) -> None:
        super().__init__(config)
        self.decoder = BartDecoder(config)


class BartForCausalLM(heads.CausalLM, BartPreTrainedModel):
    """The decoder as a language model (``lm_head`` tied to its embeddings); ``generate``.

    As in transformers 5, ``labels`` are compared with the logits position by position (not shifted).
    """

    trunk_class = BartDecoderWrapper
    tied = {"lm_head.weight": "model.decoder.embed_tokens.weight"}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        return heads.cross_entropy_loss(logits, labels)


__all__ = [
    "BartConfig",
    "BartForCausalLM",
    "BartForConditionalGeneration",
    "BartForQuestionAnswering",
    "BartForSequenceClassification",
    "BartModel",
]
