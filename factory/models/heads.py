"""Task heads: the one mechanism every native family uses for its ``XFor<Task>`` classes.

A task model is a family's trunk plus a few head layers. The trunk is stored under the
family's ``base_model_prefix`` (``bert``, ``transformer``, ``model``) and the head layers
next to it under their checkpoint names (``classifier``, ``score``, ``qa_outputs``,
``lm_head``, ``cls``...), so parameter names stay transformers' checkpoint keys.
:class:`TaskModel` runs every head the same way::

    model(input_ids, attention_mask=..., labels=...)     # the first input positionally: main_input_name
        labels = the label_names popped from the inputs (labels; start/end_positions...)
        inputs = prepare_inputs(inputs, labels)        # encoder-decoders derive decoder_input_ids here
        out    = trunk(**inputs)                       # inputs minus the head's own head_inputs
        fields = predict(out, inputs | labels)         # {"logits": head layers(pool(out, inputs))}
        loss   = loss(**fields, **labels, **loss_inputs)   # only when a label is given
        return output_class(loss=loss, **fields, **the trunk output's fields of the same names)

So the trunk's ``past_key_values``, ``hidden_states`` (only when ``output_hidden_states`` was
asked: a head that reads every layer asks the trunk itself) and ``attentions`` (and a seq2seq
trunk's ``encoder_last_hidden_state``...) pass on to every output class that has those
fields. ``loss`` may return a dict of output fields with ``loss`` among them (wav2vec2
pre-training's contrastive and diversity parts). The generic heads below fix, per task, the
loss, the output class and the label names, and some give transformers' usual layers:

=======================  ==================================  =========================================
class                    loss (labels)                       defaults
=======================  ==================================  =========================================
CausalLM                 next-token CE (labels)              lm_head, tied to model.embed_tokens,
                                                             logits_to_keep, ``generate``
MaskedLM                 CE, -100 ignored (labels)           --
SequenceClassification   by problem_type (labels)            --
TokenClassification      CE, -100 ignored (labels)           --
QuestionAnswering        span CE (start/end_positions)       qa_outputs = Linear(hidden, 2)
MultipleChoice           CE (labels)                         inputs [batch, choices, ...] flattened
-----------------------  ----------------------------------  -----------------------------------------
DecoderSequence-         as SequenceClassification           score (no bias) on the last non-pad token
Classification                                               (transformers' generic decoder heads)
DecoderToken-            as TokenClassification              dropout, score
Classification
-----------------------  ----------------------------------  -----------------------------------------
Seq2SeqLM                CE, -100 ignored (labels; shifted   lm_head (tie it in ``tied``), ``generate``
                         right they feed the decoder)        (encoder once, then the cached decoder)
Seq2SeqSequence-         as SequenceClassification           classification_head (ClassificationHead)
Classification                                               on the decoder state at the last EOS
Seq2SeqQuestion-         as QuestionAnswering                qa_outputs
Answering
-----------------------  ----------------------------------  -----------------------------------------
ImageClassification      as SequenceClassification           ``pixel_values`` in (:func:`mean_tokens`
                                                             pools SigLIP's way)
CTC                      CTC over each row's frames          dropout (final_dropout), lm_head
                         (labels padded with -100)
AudioClassification      CE (labels)                         projector, mean over valid frames,
                                                             classifier
AudioFrameClassification CE against argmax of one-hot        classifier on every frame
                         labels
=======================  ==================================  =========================================

The audio heads (:class:`AudioTaskModel`) pool with :func:`weighted_layers`: the last hidden
state, or with ``config.use_weighted_layer_sum`` a learned ``layer_weights`` mix of every
layer's; their trunk gives ``frame_lengths`` and ``frame_mask`` (:class:`AudioTrunk`).

The ``Seq2Seq*`` heads (:class:`Seq2SeqTaskModel`) take an encoder-decoder trunk
(:class:`factory.models.seq2seq.EncoderDecoderModel`): without ``decoder_input_ids`` the decoder
reads the labels (language model) or ``input_ids`` (classifiers) through
:func:`shift_tokens_right`, and ``get_encoder()`` is the trunk's encoder.

``pool`` defaults to :func:`every_token` (the last hidden state, every position).

A family declares the rest in class attributes (all :class:`TaskModel` ``ClassVar`` s):

- ``trunk_class`` (with ``trunk_options``, e.g. ``{"add_pooling_layer": False}``): the
  trunk is ``trunk_class(config, **trunk_options)``, stored under ``base_model_prefix``
  (``trunk_config``: built from that sub-config instead, CLIP's ``vision_config``);
- ``main_input_name``: the input ``forward`` takes positionally (``input_ids``,
  ``pixel_values``, ``input_values``...);
- ``head_layers``: ``{checkpoint name: builder(config) -> nn.Module}``, built in order after
  the trunk and applied in that order (:func:`dropout` and :func:`linear` build the usual
  ones; a module class taking the config is a builder too);
- ``pool(model, out, inputs)``: what the layers read: :func:`pooler_output`,
  :func:`first_token`, :func:`last_token` (decoders), :func:`every_token`, or your own;
- ``tied``: ``{dest: source}`` parameters that are one tensor when ``config.tie_word_embeddings``;
- ``inline_trunk = True``: the trunk's modules are the task model's own, without a prefix in the
  checkpoint keys (T5's ``shared``, ``encoder``, ``decoder`` next to ``lm_head``). The task class
  then derives from ``trunk_class`` itself, after the head classes
  (``class T5ForConditionalGeneration(heads.Seq2SeqLM, T5Model)``): the trunk's ``__init__`` builds
  the modules on the task model, and its ``forward`` (and ``get_input_embeddings`` /
  ``get_encoder``, through :meth:`TaskModel.trunk_method`) runs them. ``base_model_prefix`` still
  names the prefix of the family's other heads, so checkpoints of those load (prefix stripped).
- ``label_names`` (popped before the trunk), ``head_inputs`` (read by ``predict`` only) and
  ``loss_inputs`` (trunk inputs the loss reads too, CTC's ``attention_mask``; a label named
  there reaches the trunk as well, ViT's ``bool_masked_pos``).

A family file defines its trunk, one base for its heads and one line group per head::

    class BertTaskModel(heads.TaskModel, BertPreTrainedModel):
        trunk_class = BertModel

    class BertForSequenceClassification(heads.SequenceClassification, BertTaskModel):
        pool = heads.pooler_output
        head_layers = {"dropout": heads.dropout("hidden_dropout_prob"), "classifier": heads.linear("num_labels")}

The family's base class (``BertPreTrainedModel``) must take the config in ``__init__``
and come after the head classes in the bases, so that its ``base_model_prefix``,
``config_class`` and ``_init_weights`` are found. Everything else is a method to override
where a head differs: :meth:`TaskModel.predict` (several outputs, as BERT pre-training),
:meth:`TaskModel.loss`, :meth:`TaskModel.run_trunk` (inputs reshaped, as multiple choice),
:meth:`TaskModel.prepare_inputs` (inputs derived before the trunk runs).
A head layer added in an ``__init__`` of its own is not in ``head_layers``: apply it in
``predict``, and call ``tie_weights()`` again if ``tied`` names it.
Cross-entropy over labels ignores ``-100`` entries; losses are those transformers computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, ClassVar, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models.configuration import Config
from factory.models.generation import GenerationMixin, Seq2SeqGenerationMixin
from factory.models.outputs import (
    CausalLMOutput,
    ImageClassifierOutput,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceOutput,
    QuestionAnsweringOutput,
    Seq2SeqLMOutput,
    Seq2SeqQuestionAnsweringOutput,
    Seq2SeqSequenceClassifierOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

#: Builds one head layer from the config.
LayerBuilder = Callable[[Any], nn.Module]


class PadTokenError(ConfigError, ModelInputError):
    """A batch was to be classified by each row's last token, but the config names no pad token to find it."""


class Trunk(Protocol):
    """What a head needs of a family's trunk: keyword inputs in, a ``BaseModelOutput`` out."""

    def __call__(self, **inputs: Any) -> Any: ...

    def get_input_embeddings(self) -> nn.Module: ...


# --- losses -----------------------------------------------------------------------
def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [..., classes]`` against ``labels [...]`` (per token, per sequence...).

    Logits are upcast to float32 first, as transformers' token and language-model losses do.
    """
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token loss: position ``t`` predicts ``labels[t + 1]`` (labels are the inputs, shifted here)."""
    return cross_entropy_loss(logits, F.pad(labels, (0, 1), value=-100)[..., 1:])


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: Config) -> torch.Tensor:
    """transformers' loss by ``config.problem_type``: regression (MSE), single-label (cross-entropy) or
    multi-label (BCE). Unset, it is inferred from the number of labels and the labels' dtype; unlike
    transformers, the inferred type is not written back into the config.
    """
    config.check_labels()  # problem_type may have been set after the model was built
    num_labels = logits.shape[-1]
    problem_type = config.problem_type
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        return F.mse_loss(logits, labels)
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels)


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor | None,
    end_positions: torch.Tensor | None,
) -> torch.Tensor | None:
    """Mean of the start and end cross-entropies, or None without both positions.

    Positions outside the input are clamped to one past the end and ignored, as in transformers.
    """
    if start_positions is None or end_positions is None:
        return None
    ignored = start_logits.shape[1]
    start = start_positions.reshape(-1).to(start_logits.device).clamp(0, ignored)
    end = end_positions.reshape(-1).to(end_logits.device).clamp(0, ignored)
    return (
        F.cross_entropy(start_logits, start, ignore_index=ignored)
        + F.cross_entropy(end_logits, end, ignore_index=ignored)
    ) / 2


def shift_tokens_right(ids: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None) -> torch.Tensor:
    """Decoder inputs from labels (or encoder inputs): one position right, ``decoder_start_token_id`` first,
    ``-100`` replaced by the pad id, as transformers' ``shift_tokens_right`` / T5's ``_shift_right``."""
    if decoder_start_token_id is None or pad_token_id is None:
        name = "decoder_start_token_id" if decoder_start_token_id is None else "pad_token_id"
        raise ConfigError(
            f"the decoder inputs are derived from the labels (shifted right), which needs config.{name}, "
            "but it is null",
            hint=f"set {name} in config.json (T5 starts the decoder with the pad id, BART with the EOS id), "
            "or pass decoder_input_ids",
        )
    shifted = ids.new_zeros(ids.shape)
    shifted[..., 1:] = ids[..., :-1]
    shifted[..., 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# --- layer builders ------------------------------------------------------------------
def classifier_dropout(config: Config, *fallbacks: str, default: float = 0.1) -> nn.Dropout:
    """Dropout before a classifier: ``classifier_dropout``, else the first of ``fallbacks`` set, else ``default``."""
    for name in ("classifier_dropout", *fallbacks):
        p = getattr(config, name, None)
        if p is not None:
            return nn.Dropout(p)
    return nn.Dropout(default)


def dropout(*fallbacks: str, default: float = 0.1) -> LayerBuilder:
    """A builder of :func:`classifier_dropout` (``dropout("hidden_dropout_prob")``)."""
    return lambda config: classifier_dropout(config, *fallbacks, default=default)


def linear(out_features: str | int, *, bias: bool = True) -> LayerBuilder:
    """A builder of ``nn.Linear(config.hidden_size, n)``; ``n`` is a number or a config key (``"num_labels"``)."""

    def build(config: Any) -> nn.Module:
        n = out_features if isinstance(out_features, int) else getattr(config, out_features)
        return nn.Linear(config.hidden_size, n, bias=bias)

    return build


def span_outputs(config: Any) -> nn.Linear:
    """``Linear(hidden_size, 2)``: start and end logits. The encoder families' question-answering heads size it
    by ``num_labels`` in transformers, so a config with another number of labels is refused."""
    if config.num_labels != 2:
        raise ConfigError(
            f"{type(config).__name__}: question answering needs num_labels == 2 (start and end logits), "
            f"found {config.num_labels}",
            hint="remove num_labels / id2label from the config, or set num_labels=2",
        )
    return nn.Linear(config.hidden_size, 2)


# --- pooling: what the head layers read ------------------------------------------------
def every_token(model: TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """The last hidden state, every position (token classification, question answering, language models)."""
    hidden: torch.Tensor = out.last_hidden_state
    return hidden


def pooler_output(model: TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """The trunk's own pooled output (BERT's ``tanh(dense(first token))``)."""
    pooled: torch.Tensor = out.pooler_output
    return pooled


def first_token(model: TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """Each row's first position (``<s>`` / ``[CLS]``), as RoBERTa-style classifiers read it."""
    hidden: torch.Tensor = out.last_hidden_state
    return hidden[:, 0]


def last_token(model: TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """Each row at its last non-padding token: how decoders classify sequences.

    The rightmost token that is not ``config.pad_token_id``, so left and right padding both
    work; the last position when padding cannot be seen (no pad id, or ``inputs_embeds``
    instead of ids). A batch of several rows needs the pad id.
    """
    hidden: torch.Tensor = out.last_hidden_state
    input_ids = inputs.get("input_ids")
    pad_token_id = model.config.pad_token_id
    batch = hidden.shape[0]
    if pad_token_id is None and batch != 1:
        raise PadTokenError(
            f"{type(model).__name__} needs config.pad_token_id to find the last token of each of the {batch} "
            "sequences in a batch, but pad_token_id is null",
            hint="set pad_token_id in config.json (e.g. to the tokenizer's pad or eos id), "
            "or classify one sequence at a time",
        )
    if pad_token_id is None or input_ids is None:
        last = torch.full((batch,), hidden.shape[1] - 1, device=hidden.device)
    else:
        not_pad = (input_ids != pad_token_id).to(hidden.device, torch.int32)
        last = (torch.arange(input_ids.shape[-1], device=hidden.device, dtype=torch.int32) * not_pad).argmax(-1)
    return hidden[torch.arange(batch, device=hidden.device), last]


def kept_tokens(model: TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """Every position, or the last ``logits_to_keep`` ones when that input is given (language models)."""
    hidden: torch.Tensor = out.last_hidden_state
    keep = inputs.get("logits_to_keep") or 0
    return hidden[:, -keep:] if keep else hidden


def last_eos_token(model: TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """The decoder's hidden state at each row's last ``config.eos_token_id`` of ``input_ids``: how BART and
    T5 classify sequences. Every row must hold the same number (at least one) of EOS tokens."""
    hidden: torch.Tensor = out.last_hidden_state
    input_ids = inputs.get("input_ids")
    eos = model.config.eos_token_id
    if input_ids is None or eos is None:
        raise ModelInputError(
            f"{type(model).__name__} classifies by the EOS tokens of input_ids, which needs input_ids "
            f"(got {'none' if input_ids is None else 'them'}) and config.eos_token_id (got {eos!r})",
            hint="pass input_ids (not only inputs_embeds) and set eos_token_id in config.json",
        )
    is_eos = torch.isin(input_ids, torch.tensor(eos, device=input_ids.device)).to(hidden.device)
    counts = is_eos.sum(1)
    if bool((counts != counts[0]).any()) or int(counts[0]) == 0:
        raise ModelInputError(
            f"{type(model).__name__}: every row of input_ids must hold the same number (>= 1) of EOS tokens "
            f"({eos}); found {counts.tolist()}",
            hint="end each sequence with the EOS token (the tokenizer adds it) and pad after it",
        )
    return hidden[is_eos].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1]


Pool = Callable[["TaskModel", Any, Mapping[str, Any]], torch.Tensor]


# --- the mechanism --------------------------------------------------------------------
class TaskModel(nn.Module):
    """A trunk under ``base_model_prefix`` plus ``head_layers``; see the module docstring.

    Subclasses declare the class attributes below; ``base_model_prefix``, ``config_class`` and
    ``_init_weights`` come from the family's base class, which must come later in the bases.
    """

    base_model_prefix: ClassVar[str]
    #: Builds the trunk: ``trunk_class(config, **trunk_options)``.
    trunk_class: ClassVar[Callable[..., Trunk]]
    trunk_options: ClassVar[Mapping[str, Any]] = {}
    #: The config key the trunk is built from when it is not the whole config (CLIP's ``vision_config``).
    trunk_config: ClassVar[str | None] = None
    #: ``{checkpoint name: builder(config)}``: the head layers, applied in this order.
    head_layers: ClassVar[Mapping[str, LayerBuilder]] = {}
    #: What the head layers read from the trunk's output.
    pool: ClassVar[Pool] = every_token
    #: The output dataclass; ``loss`` and the fields :meth:`predict` returns are set.
    output_class: ClassVar[type[ModelOutput]]
    #: Keyword arguments of ``forward`` that are labels (passed to :meth:`loss`, not to the trunk).
    label_names: ClassVar[tuple[str, ...]] = ("labels",)
    #: Keyword arguments of ``forward`` the head reads (in :meth:`predict`) and the trunk does not get.
    head_inputs: ClassVar[tuple[str, ...]] = ()
    #: Inputs the trunk gets that :meth:`loss` reads too (by keyword); a label named here reaches the trunk as well.
    loss_inputs: ClassVar[tuple[str, ...]] = ()
    #: The input ``forward`` takes positionally: ``input_ids``, ``pixel_values``, ``input_values``...
    main_input_name: ClassVar[str] = "input_ids"
    #: ``{dest: source}`` parameter names that are one tensor when ``config.tie_word_embeddings``.
    tied: ClassVar[Mapping[str, str]] = {}

    #: True when the trunk's modules are the task model's own, with no prefix in the checkpoint keys
    #: (T5's ``shared``, ``encoder``, ``decoder`` next to ``lm_head``): the task class then derives from
    #: ``trunk_class`` (after the head classes), whose ``__init__`` builds the trunk and whose ``forward``
    #: runs it.
    inline_trunk: ClassVar[bool] = False

    config: Any
    _output_fields: ClassVar[tuple[str, ...]] = ()  # output_class's field names (torch.compile traces a tuple)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        output = getattr(cls, "output_class", None)
        if output is not None:
            cls._output_fields = tuple(f.name for f in fields(output))

    def __init__(self, config: Config) -> None:
        super().__init__(config)  # the family's base class (or the inline trunk): stores and checks the config
        if not self.inline_trunk:
            trunk_config = config if self.trunk_config is None else getattr(config, self.trunk_config)
            setattr(self, self.base_model_prefix, self.trunk_class(trunk_config, **self.trunk_options))
        for name, build in self.head_layers.items():
            setattr(self, name, build(config))
        self.tie_weights()

    @property
    def trunk(self) -> Trunk:
        trunk: Trunk = self if self.inline_trunk else getattr(self, self.base_model_prefix)
        return trunk

    def trunk_method(self, name: str) -> Callable[..., Any]:
        """The trunk's method ``name``, bound to the trunk (to the task model itself when inline)."""
        if self.inline_trunk:
            method: Callable[..., Any] = getattr(self.trunk_class, name).__get__(self)
            return method
        return cast(Callable[..., Any], getattr(self.trunk, name))

    def get_input_embeddings(self) -> nn.Module:
        embeddings: nn.Module = self.trunk_method("get_input_embeddings")()
        return embeddings

    @property
    def tied_weights(self) -> dict[str, str]:
        """``{dest: source}`` parameter names that share one tensor (read by the builder and ``factory.save``)."""
        return dict(self.tied) if getattr(self.config, "tie_word_embeddings", False) else {}

    def tie_weights(self) -> None:
        """Make every ``tied_weights`` destination the same Parameter as its source."""
        for dest, source in self.tied_weights.items():
            module_name, _, attr = dest.rpartition(".")
            setattr(self.get_submodule(module_name), attr, self.get_parameter(source))

    def forward(self, main_input: Any = None, /, **inputs: Any) -> Any:
        """The main input (``main_input_name``) positionally or by keyword, the trunk's inputs, the labels
        and the head's own inputs by keyword."""
        if main_input is not None:
            if inputs.get(self.main_input_name) is not None:
                raise ModelInputError(
                    f"{type(self).__name__} got {self.main_input_name} twice (positionally and by keyword)"
                )
            inputs[self.main_input_name] = main_input
        labels = {
            name: inputs.get(name) if name in self.loss_inputs else inputs.pop(name, None) for name in self.label_names
        }
        inputs = self.prepare_inputs(inputs, labels)
        out = self.run_trunk({k: v for k, v in inputs.items() if k not in self.head_inputs})
        predictions = self.predict(out, {**inputs, **labels})
        losses: dict[str, Any] = {"loss": None}
        if any(v is not None for v in labels.values()):
            extra = {name: inputs.get(name) for name in self.loss_inputs if name not in labels}
            loss = self.loss(**predictions, **labels, **extra)
            losses = dict(loss) if isinstance(loss, Mapping) else {"loss": loss}
        carried = {name: getattr(out, name) for name in self._output_fields if hasattr(out, name)}
        if not inputs.get("output_hidden_states"):
            carried.pop("hidden_states", None)  # a head that reads every layer asked the trunk for them itself
        return self.output_class(**{**carried, **losses, **predictions})

    def prepare_inputs(self, inputs: dict[str, Any], labels: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs as the trunk and the head will see them (encoder-decoders derive decoder inputs here)."""
        return inputs

    def run_trunk(self, inputs: dict[str, Any]) -> Any:
        if self.inline_trunk:
            return self.trunk_method("forward")(**inputs)
        return self.trunk(**inputs)

    def run_head(self, features: torch.Tensor) -> torch.Tensor:
        """The ``head_layers`` applied in order."""
        for name in self.head_layers:
            features = cast(nn.Module, self._modules[name])(features)
        return features

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The output fields besides ``loss``: ``logits`` of the head layers on ``pool``.

        ``inputs`` are ``forward``'s, the labels included (None when not given): a head that
        predicts only where there are labels (ModernBERT's sparse prediction) reads them here.
        """
        return {"logits": self.run_head(self.pool(out, inputs))}

    def loss(self, *args: Any, **kwargs: Any) -> Any:
        """Called with :meth:`predict`'s fields, the ``label_names`` and the ``loss_inputs`` by keyword, when a
        label is given: the ``loss`` tensor, or a dict of output fields with ``loss`` among them (a loss made
        of parts that are outputs too).

        The default is :func:`cross_entropy_loss` of ``logits`` and ``labels``.
        """
        return cross_entropy_loss(*args, **kwargs)


class CausalLM(TaskModel, GenerationMixin):
    """Next-token logits; ``labels`` (shifted inside, -100 ignored) give the mean cross-entropy.

    ``logits_to_keep=n`` computes logits for the last ``n`` positions only (0: all). Supports
    ``generate`` (:mod:`factory.models.generation`).
    """

    output_class: ClassVar[type[ModelOutput]] = CausalLMOutput
    head_inputs = ("logits_to_keep",)
    head_layers = {"lm_head": linear("vocab_size", bias=False)}
    tied = {"lm_head.weight": "model.embed_tokens.weight"}

    pool = kept_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.get_submodule("lm_head")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        return causal_lm_loss(logits, labels)


class MaskedLM(TaskModel):
    """Vocabulary logits per token; ``labels`` of -100 are ignored in the loss."""

    output_class = MaskedLMOutput


class SequenceClassification(TaskModel):
    """One prediction per sequence; regression, single- or multi-label loss by ``config.problem_type``."""

    output_class: ClassVar[type[ModelOutput]] = SequenceClassifierOutput

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        return sequence_classification_loss(logits, labels, self.config)


class DecoderSequenceClassification(SequenceClassification):
    """transformers' generic decoder head: ``score`` (no bias) on each row's last non-padding token."""

    pool = last_token
    head_layers = {"score": linear("num_labels", bias=False)}


class TokenClassification(TaskModel):
    """A label per token (NER, POS); ``labels`` of -100 are ignored in the loss."""

    output_class = TokenClassifierOutput


def _token_score(config: Any) -> nn.Module:
    return nn.Linear(config.hidden_size, config.num_labels, bias=getattr(config, "token_classification_bias", True))


class DecoderTokenClassification(TokenClassification):
    """transformers' generic decoder head: dropout, then ``score`` (biased unless ``token_classification_bias``
    is false)."""

    head_layers = {"dropout": dropout("hidden_dropout"), "score": _token_score}


class QuestionAnswering(TaskModel):
    """Extractive QA: start/end logits per token; positions outside the input are ignored in the loss."""

    output_class: ClassVar[type[ModelOutput]] = QuestionAnsweringOutput
    label_names = ("start_positions", "end_positions")
    head_layers = {"qa_outputs": linear(2)}

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        start, end = self.run_head(self.pool(out, inputs)).unbind(dim=-1)
        return {"start_logits": start.contiguous(), "end_logits": end.contiguous()}

    def loss(
        self,
        start_logits: torch.Tensor,
        end_logits: torch.Tensor,
        start_positions: torch.Tensor | None,
        end_positions: torch.Tensor | None,
    ) -> torch.Tensor | None:
        return span_loss(start_logits, end_logits, start_positions, end_positions)


class MultipleChoice(TaskModel):
    """Scores each of ``num_choices`` candidates: inputs ``[batch, num_choices, seq_len]``, logits ``[batch, choices]``.

    The trunk sees every choice as a row of its own; the head layers give one score each.
    """

    output_class = MultipleChoiceOutput

    def run_trunk(self, inputs: dict[str, Any]) -> Any:
        self._num_choices(inputs)
        return super().run_trunk({k: v.flatten(0, 1) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"logits": self.run_head(self.pool(out, inputs)).view(-1, self._num_choices(inputs))}

    def _num_choices(self, inputs: Mapping[str, Any]) -> int:
        ids, embeds = inputs.get("input_ids"), inputs.get("inputs_embeds")
        reference, expected = (ids, 3) if ids is not None else (embeds, 4)
        if reference is None or reference.dim() != expected:
            found = None if reference is None else tuple(reference.shape)
            raise ModelInputError(
                f"{type(self).__name__}: input_ids must have shape (batch, num_choices, seq_len) "
                f"(inputs_embeds: plus hidden), found {found}"
            )
        return int(reference.shape[1])


# --- encoder-decoder heads ----------------------------------------------------------------
class ClassificationHead(nn.Module):
    """Dropout, ``dense``, tanh, dropout, ``out_proj``: the sentence classifier of BART and T5 (and RoBERTa's
    shape); the dropout is ``classifier_dropout`` (default 0)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = classifier_dropout(config, default=0.0)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = torch.tanh(self.dense(self.dropout(hidden_states)))
        out: torch.Tensor = self.out_proj(self.dropout(hidden_states))
        return out


class Seq2SeqTaskModel(TaskModel):
    """An encoder-decoder trunk plus head layers on the decoder's output.

    Without ``decoder_input_ids`` (or ``decoder_inputs_embeds``), the decoder reads
    ``decoder_inputs_from`` shifted right (:func:`shift_tokens_right`): the ``labels`` of a language
    model, the ``input_ids`` of a classifier, as transformers does.
    """

    decoder_inputs_from: ClassVar[str] = "input_ids"

    def prepare_inputs(self, inputs: dict[str, Any], labels: Mapping[str, Any]) -> dict[str, Any]:
        if inputs.get("decoder_input_ids") is None and inputs.get("decoder_inputs_embeds") is None:
            source = {**inputs, **labels}.get(self.decoder_inputs_from)
            if source is not None:
                config = self.config
                inputs["decoder_input_ids"] = shift_tokens_right(
                    source, config.pad_token_id, config.decoder_start_token_id
                )
        return inputs

    def get_encoder(self) -> nn.Module:
        encoder: nn.Module = self.trunk_method("get_encoder")()
        return encoder


class Seq2SeqLM(Seq2SeqTaskModel, Seq2SeqGenerationMixin):
    """Decoder vocabulary logits; ``labels`` give the mean cross-entropy (-100 ignored) and, shifted right,
    the decoder inputs when none are given. Supports ``generate`` (:mod:`factory.models.generation`).

    The last head layer is the output projection (``lm_head``); families name what it is tied to.
    """

    output_class = Seq2SeqLMOutput
    decoder_inputs_from = "labels"
    head_layers = {"lm_head": linear("vocab_size", bias=False)}

    def get_output_embeddings(self) -> nn.Module:
        return self.get_submodule(list(self.head_layers)[-1])


class Seq2SeqSequenceClassification(Seq2SeqTaskModel, SequenceClassification):
    """One prediction per sequence from the decoder state at the last EOS token (:func:`last_eos_token`)."""

    output_class = Seq2SeqSequenceClassifierOutput
    pool = last_eos_token
    head_layers = {"classification_head": ClassificationHead}


class Seq2SeqQuestionAnswering(Seq2SeqTaskModel, QuestionAnswering):
    """Span start/end logits per decoder position (the decoder reads the question shifted right)."""

    output_class = Seq2SeqQuestionAnsweringOutput


# --- vision heads ------------------------------------------------------------------------
def mean_tokens(model: TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """The mean of the last hidden state over every position (SigLIP's image classifier)."""
    hidden: torch.Tensor = out.last_hidden_state
    return hidden.mean(dim=1)


class ImageClassification(SequenceClassification):
    """One prediction per image (``pixel_values`` in); regression, single- or multi-label loss by ``problem_type``."""

    output_class = ImageClassifierOutput
    main_input_name = "pixel_values"


# --- audio heads ---------------------------------------------------------------------------
class AudioTrunk(Trunk, Protocol):
    """What the audio heads need of a trunk besides :class:`Trunk`: how many frames a padded input keeps."""

    def frame_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor: ...

    def frame_mask(self, frames: int, attention_mask: torch.Tensor) -> torch.Tensor: ...


def weighted_layers(model: TaskModel, out: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """The last hidden state, or with ``config.use_weighted_layer_sum`` the softmax(``layer_weights``)-weighted
    sum of every layer's hidden states (the embeddings' included)."""
    if not getattr(model.config, "use_weighted_layer_sum", False):
        hidden: torch.Tensor = out.last_hidden_state
        return hidden
    weights = cast(torch.Tensor, model.get_parameter("layer_weights")).softmax(dim=-1)
    return (torch.stack(out.hidden_states, dim=1) * weights.view(-1, 1, 1)).sum(dim=1)


def ctc_loss(logits: torch.Tensor, labels: torch.Tensor, frame_lengths: torch.Tensor, config: Any) -> torch.Tensor:
    """transformers' CTC loss: targets are the labels that are neither -100 nor the blank ``pad_token_id``;
    ``config.ctc_loss_reduction`` and ``ctc_zero_infinity`` as given."""
    if int(labels.max()) >= config.vocab_size:
        raise ModelInputError(
            f"CTC labels must be below vocab_size ({config.vocab_size}), found {int(labels.max())}",
            hint="encode the transcripts with this checkpoint's tokenizer; pad them with -100",
        )
    blank = config.pad_token_id
    labels = labels.to(logits.device)
    keep = (labels != -100) & (labels != blank)
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    with torch.backends.cudnn.flags(enabled=False):
        return F.ctc_loss(
            log_probs,
            labels.masked_select(keep),
            frame_lengths,
            keep.sum(-1),
            blank=blank,
            reduction=config.ctc_loss_reduction,
            zero_infinity=config.ctc_zero_infinity,
        )


class AudioTaskModel(TaskModel):
    """Base of the audio heads: :func:`weighted_layers` pooling, with ``layer_weights`` (``num_hidden_layers + 1``)
    when ``config.use_weighted_layer_sum`` (the trunk is then asked for every layer's hidden states)."""

    pool = weighted_layers

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        if getattr(config, "use_weighted_layer_sum", False):
            layers = config.num_hidden_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(layers) / layers)

    @property
    def audio_trunk(self) -> AudioTrunk:
        return cast(AudioTrunk, self.trunk)

    def run_trunk(self, inputs: dict[str, Any]) -> Any:
        if getattr(self.config, "use_weighted_layer_sum", False):
            inputs = {**inputs, "output_hidden_states": True}
        return super().run_trunk(inputs)


class CTC(TaskModel):
    """Per-frame vocabulary logits (``lm_head``); ``labels [batch, target]`` padded with -100 give the CTC loss
    (:func:`ctc_loss`) over each row's frames: ``trunk.frame_lengths`` of the ``attention_mask`` sums, or all."""

    output_class = CausalLMOutput
    loss_inputs = ("attention_mask",)
    head_layers = {"dropout": dropout("final_dropout"), "lm_head": linear("vocab_size")}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        batch, frames = logits.shape[:2]
        if attention_mask is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=logits.device)
        else:
            lengths = cast(AudioTrunk, self.trunk).frame_lengths(attention_mask.sum(-1)).to(torch.long)
        return ctc_loss(logits, labels, lengths, self.config)


def _projector(config: Any) -> nn.Module:
    return nn.Linear(config.hidden_size, config.classifier_proj_size)


def _projected_classifier(config: Any) -> nn.Module:
    return nn.Linear(config.classifier_proj_size, config.num_labels)


class AudioClassification(AudioTaskModel):
    """One label per utterance: ``projector``, the mean over each row's valid frames (``trunk.frame_mask`` of the
    ``attention_mask``), ``classifier``; cross-entropy loss."""

    output_class = SequenceClassifierOutput
    head_layers = {"projector": _projector, "classifier": _projected_classifier}
    projector: nn.Linear
    classifier: nn.Linear

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        hidden = self.projector(self.pool(out, inputs))
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            valid = self.audio_trunk.frame_mask(hidden.shape[1], attention_mask)
            pooled = hidden.masked_fill(~valid[..., None], 0.0).sum(dim=1) / valid.sum(dim=1, keepdim=True)
        return {"logits": self.classifier(pooled)}


class AudioFrameClassification(AudioTaskModel):
    """A label per frame (speaker diarization): ``classifier`` on every frame; ``labels [batch, frames, num_labels]``
    (one-hot) give the cross-entropy against their argmax, as transformers computes it."""

    output_class = TokenClassifierOutput
    head_layers = {"classifier": linear("num_labels")}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_labels = logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, num_labels), labels.reshape(-1, num_labels).argmax(dim=1))
