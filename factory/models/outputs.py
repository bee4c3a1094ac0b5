"""Model outputs: small dataclasses readable as attributes and as keys.

``out.logits`` and ``out["logits"]`` are the same tensor; fields left ``None``
are skipped by ``keys()``/``to_tuple()`` as transformers users expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

Tensor = Any  # torch.Tensor; kept untyped so this module never imports torch


@dataclass
class ModelOutput:
    """Base of the output dataclasses: mapping-style access to non-None fields."""

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return self.to_tuple()[key]
        if key not in self.keys():
            raise KeyError(f"{type(self).__name__} has no field {key!r}; fields set: {self.keys()}")
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None)
        return default if value is None else value

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.keys())


#: ``hidden_states`` / ``attentions``: one tensor per layer (hidden states: the embeddings first).
PerLayer = tuple[Tensor, ...] | None


@dataclass
class BaseModelOutput(ModelOutput):
    """Encoder/decoder trunk output."""

    last_hidden_state: Tensor = None
    pooler_output: Tensor | None = None
    past_key_values: Any | None = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None


@dataclass
class LogitsOutput(ModelOutput):
    """What most task heads return: ``loss``, ``logits`` and what the trunk passes on."""

    loss: Tensor | None = None
    logits: Tensor = None
    past_key_values: Any | None = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None


class CausalLMOutput(LogitsOutput):
    """Next-token logits ``[batch, seq, vocab]``."""


class MaskedLMOutput(LogitsOutput):
    """Vocabulary logits ``[batch, seq, vocab]`` of a masked language model."""


class SequenceClassifierOutput(LogitsOutput):
    """Also used by next-sentence prediction, multiple choice and token classification."""


class ImageClassifierOutput(LogitsOutput):
    """Class logits ``[batch, num_labels]`` of an image classifier."""


@dataclass
class MaskedImageModelingOutput(ModelOutput):
    """Reconstructed pixel values ``[batch, channels, height, width]`` (SimMIM); ``loss`` over the masked patches."""

    loss: Tensor | None = None
    reconstruction: Tensor = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None


@dataclass
class ImageTextOutput(ModelOutput):
    """A two-tower image-text model (CLIP, SigLIP): every image scored against every text.

    ``logits_per_image`` is ``[images, texts]`` (its transpose is ``logits_per_text``); the embeddings are
    normalised; the towers' own outputs come along.
    """

    loss: Tensor | None = None
    logits_per_image: Tensor = None
    logits_per_text: Tensor = None
    text_embeds: Tensor = None
    image_embeds: Tensor = None
    text_model_output: BaseModelOutput | None = None
    vision_model_output: BaseModelOutput | None = None


@dataclass
class MoeModelOutput(BaseModelOutput):
    """A mixture-of-experts trunk's output; ``router_logits``: per sparse layer ``[batch * seq, experts]``."""

    router_logits: PerLayer = None


@dataclass
class MoeCausalLMOutput(ModelOutput):
    """Next-token logits of a mixture-of-experts model and its auxiliary load-balancing loss
    (transformers' field order)."""

    loss: Tensor | None = None
    aux_loss: Tensor | None = None
    logits: Tensor = None
    past_key_values: Any | None = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None
    router_logits: PerLayer = None


@dataclass
class PreTrainingOutput(ModelOutput):
    loss: Tensor | None = None
    prediction_logits: Tensor = None
    seq_relationship_logits: Tensor | None = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None


@dataclass
class QuestionAnsweringOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor = None
    end_logits: Tensor = None
    hidden_states: PerLayer = None
    attentions: PerLayer = None


# Task-specific names transformers users know, sharing one shape.
TokenClassifierOutput = SequenceClassifierOutput
MultipleChoiceOutput = SequenceClassifierOutput
NextSentencePredictorOutput = SequenceClassifierOutput


@dataclass
class Seq2SeqModelOutput(ModelOutput):
    """Encoder-decoder trunk output: the decoder's last hidden state plus what the encoder and the cache hold.

    ``past_key_values`` is a tuple over decoder layers of ``(self_key, self_value, cross_key, cross_value)``.
    """

    last_hidden_state: Tensor = None
    past_key_values: Any | None = None
    decoder_hidden_states: PerLayer = None
    decoder_attentions: PerLayer = None
    cross_attentions: PerLayer = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: PerLayer = None
    encoder_attentions: PerLayer = None


@dataclass
class Seq2SeqLogitsOutput(ModelOutput):
    """What encoder-decoder task heads return: ``loss``, ``logits`` and the trunk's fields."""

    loss: Tensor | None = None
    logits: Tensor = None
    past_key_values: Any | None = None
    decoder_hidden_states: PerLayer = None
    decoder_attentions: PerLayer = None
    cross_attentions: PerLayer = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: PerLayer = None
    encoder_attentions: PerLayer = None


class Seq2SeqLMOutput(Seq2SeqLogitsOutput):
    """Decoder vocabulary logits ``[batch, target_seq, vocab]``."""


class Seq2SeqSequenceClassifierOutput(Seq2SeqLogitsOutput):
    """One prediction per sequence from an encoder-decoder."""


@dataclass
class Seq2SeqQuestionAnsweringOutput(Seq2SeqLogitsOutput):
    """Span start/end logits ``[batch, target_seq]`` of an encoder-decoder (``logits`` stays unset)."""

    start_logits: Tensor = None
    end_logits: Tensor = None
