"""Whisper (Radford et al., 2022) in plain torch: speech recognition with language/task prompt tokens.

Parameter names equal transformers' checkpoint keys (``model.encoder.conv1.weight``,
``model.decoder.layers.0.encoder_attn.k_proj.weight``, ``proj_out.weight``...). The encoder turns a
log-mel spectrogram ``input_features [batch, num_mel_bins, 2 * max_source_positions]`` (3000 frames,
30 s, for the released models) into frames with two GELU convolutions (the second with stride 2),
adds sinusoidal positions (``embed_positions``, a table stored in the checkpoints; a fresh model
computes it) and runs pre-norm layers (:mod:`factory.models.seq2seq`, keys without bias); the
decoder adds learned positions to its token embeddings.

``generate`` is transformers' short-form path (one 30 s window), greedy or sampled: the decoder
prompt is ``<|startoftranscript|>``, the language (``language=`` by code or token, else detected
from the audio when the generation config knows languages), the task (``task="transcribe"`` /
``"translate"``) and ``<|notimestamps|>``, read from the checkpoint's generation config
(``lang_to_id``, ``task_to_id``, ``no_timestamps_token_id``, ``forced_decoder_ids``); it
suppresses ``suppress_tokens`` and, first, ``begin_suppress_tokens``, and returns, as transformers
does, the new tokens without the prompt and without the final EOS, right-padded with the pad id.
Not implemented: long-form audio (more than one window), timestamps, temperature fallback,
prompts (``prompt_ids``) and SpecAugment (``apply_spec_augment``, a training-time augmentation).

Classes (task -> class):
    model                   WhisperModel
    speech-seq2seq          WhisperForConditionalGeneration (``generate``)
    audio-classification    WhisperForAudioClassification (encoder, ``projector``, mean over frames,
                            ``classifier``; ``use_weighted_layer_sum``)
    causal-lm               WhisperForCausalLM (the decoder alone, keys ``model.decoder.*``)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models import heads
from factory.models.generation import GenerationError, generate_seq2seq, generation_defaults
from factory.models.initialisation import default_init
from factory.models.outputs import BaseModelOutput, SequenceClassifierOutput
from factory.models.seq2seq import (
    Cache,
    DecoderLayer,
    DecoderWrapper,
    EncoderDecoderModel,
    EncoderLayer,
    FairseqConfig,
    FairseqDecoder,
    LayerStyle,
    activation,
    check_heads,
    run_stack,
)


class WhisperConfig(FairseqConfig):
    """Whisper hyper-parameters; defaults are those of transformers' ``WhisperConfig`` (whisper-tiny sizes)."""

    model_type = "whisper"
    attribute_map = {
        "num_key_value_heads": "encoder_attention_heads",
        "num_attention_heads": "encoder_attention_heads",
        "hidden_size": "d_model",
        "num_hidden_layers": "encoder_layers",
    }

    vocab_size: int = 51865
    num_mel_bins: int = 80
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    decoder_layers: int = 4
    decoder_attention_heads: int = 6
    decoder_ffn_dim: int = 1536
    encoder_ffn_dim: int = 1536
    decoder_start_token_id: int = 50257
    d_model: int = 384
    dropout: float = 0.0
    max_source_positions: int = 1500
    max_target_positions: int = 448
    pad_token_id: int | None = 50256
    bos_token_id: int | None = 50256
    eos_token_id: Any = 50256
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: Any = (220, 50256)
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    apply_spec_augment: bool = False
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    median_filter_width: int = 7


def _check_config(config: WhisperConfig) -> None:
    check_heads(
        config,
        config.d_model,
        ("encoder_attention_heads", config.encoder_attention_heads),
        ("decoder_attention_heads", config.decoder_attention_heads),
    )
    activation(config, "activation_function")
    if config.d_model % 2:
        raise ConfigError(
            f"WhisperConfig: d_model={config.d_model} must be even for the sinusoidal positions",
            hint="fix d_model in config.json",
        )
    pad = config.pad_token_id
    if pad is not None and not (isinstance(pad, int) and 0 <= pad < config.vocab_size):
        raise ConfigError(
            f"WhisperConfig: pad_token_id={pad!r} is not a token id below vocab_size={config.vocab_size}",
            hint="set pad_token_id to a valid id or null",
        )


#: Whisper's layers: the layer norm before each block, no key bias, queries scaled before the product.
STYLE = LayerStyle(pre_norm=True, key_bias=False, prescale=True)


def sinusoids(length: int, channels: int, max_timescale: float = 10000) -> torch.Tensor:
    """``[length, channels]``: sines then cosines of geometrically spaced timescales (Whisper's positions)."""
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length).view(-1, 1) * inv_timescales.view(1, -1)
    return torch.cat([scaled_time.sin(), scaled_time.cos()], dim=1)


class SinusoidalPositions(nn.Embedding):
    """The encoder's position table: frozen, saved in checkpoints, filled with :func:`sinusoids` when fresh."""

    def __init__(self, length: int, channels: int) -> None:
        super().__init__(length, channels)
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.weight.is_meta:
            return
        self.weight.copy_(sinusoids(*self.weight.shape))


class WhisperPreTrainedModel(nn.Module):
    """What every Whisper model class shares: config class, checkpoint prefix, config checks and init."""

    config_class: ClassVar[type[WhisperConfig]] = WhisperConfig
    base_model_prefix: ClassVar[str] = "model"
    main_input_name: ClassVar[str] = "input_features"

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, SinusoidalPositions):
            module.reset_parameters()
            return
        default_init(module, self.config.init_std)
        layer_weights = getattr(module, "layer_weights", None)
        if isinstance(module, WhisperForAudioClassification) and layer_weights is not None:
            layer_weights.fill_(1.0 / (self.config.encoder_layers + 1))


class WhisperEncoder(WhisperPreTrainedModel):
    """Convolutions, sinusoidal positions, pre-norm layers, ``layer_norm``."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.conv1 = nn.Conv1d(config.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = SinusoidalPositions(config.max_source_positions, d)
        self.layers = nn.ModuleList(EncoderLayer(config, STYLE) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)

    def get_input_embeddings(self) -> nn.Module:
        return self.conv1

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """``attention_mask`` is accepted and not used: Whisper attends to the whole (padded) window."""
        config = self.config
        frames = config.max_source_positions * self.conv1.stride[0] * self.conv2.stride[0]
        if not isinstance(input_features, torch.Tensor) or input_features.dim() != 3:
            found = tuple(input_features.shape) if isinstance(input_features, torch.Tensor) else input_features
            raise ModelInputError(
                f"WhisperEncoder wants input_features [batch, {config.num_mel_bins} mel bins, {frames} frames], "
                f"got {found!r}",
                hint="compute them with the Whisper feature extractor (it pads every clip to 30 s)",
            )
        if tuple(input_features.shape[1:]) != (config.num_mel_bins, frames):
            raise ModelInputError(
                f"WhisperEncoder wants input_features [batch, {config.num_mel_bins} mel bins, {frames} frames], "
                f"got {tuple(input_features.shape)}",
                hint=f"pad or truncate the log-mel features to {frames} frames (the feature extractor does)",
            )
        hidden = F.gelu(self.conv1(input_features))
        hidden = F.gelu(self.conv2(hidden)).permute(0, 2, 1)
        hidden = F.dropout(hidden + self.embed_positions.weight, config.dropout, self.training)
        return run_stack(
            self.layers,
            hidden,
            lambda layer, h, _: (layer(h, None), None),
            output_hidden_states=output_hidden_states,
            final=self.layer_norm,
        )


class LearnedPositions(nn.Embedding):
    """The decoder's positions: rows of the table, ``max_target_positions`` of them."""

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        if position_ids.numel() and int(position_ids.max()) >= self.num_embeddings:
            raise ModelInputError(
                f"Whisper's decoder holds {self.num_embeddings} positions (max_target_positions); "
                f"position {int(position_ids.max())} was asked for",
                hint="generate or label fewer tokens",
            )
        out: torch.Tensor = self.weight[position_ids]
        return out


class WhisperDecoder(WhisperPreTrainedModel, FairseqDecoder):
    """Token embeddings plus learned positions (``position_ids``, else counted from the cache length), pre-norm
    layers with cross-attention over every frame (``encoder_attention_mask`` is not used), ``layer_norm``."""

    main_input_name = "input_ids"
    masks_encoder = False

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.embed_positions = LearnedPositions(config.max_target_positions, config.d_model)
        self.layers = nn.ModuleList(DecoderLayer(config, STYLE) for _ in range(config.decoder_layers))
        self.layer_norm = nn.LayerNorm(config.d_model)

    def positions(self, past: int, seq: int, position_ids: torch.Tensor | None, batch: int) -> torch.Tensor:
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=self.embed_positions.weight.device)[None]
        elif tuple(position_ids.shape) not in ((batch, seq), (1, seq)):
            raise ModelInputError(
                f"decoder position_ids must have shape ({batch} or 1, {seq}), got {tuple(position_ids.shape)}"
            )
        out: torch.Tensor = self.embed_positions(position_ids)
        return out


class WhisperModel(WhisperPreTrainedModel, EncoderDecoderModel):
    """The bare encoder-decoder: ``input_features`` in, the decoder's last hidden state out."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.decoder = WhisperDecoder(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return cast(nn.Embedding, self.decoder.embed_tokens)

    def forward(  # type: ignore[override]  # audio in, not input_ids
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        past_key_values: Cache | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        decoder_position_ids: torch.Tensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> Any:
        """``attention_mask`` (of the features) is accepted and not used, as in transformers."""
        decoder_inputs = {
            "input_ids": decoder_input_ids,
            "attention_mask": decoder_attention_mask,
            "inputs_embeds": decoder_inputs_embeds,
            "position_ids": decoder_position_ids,
        }
        return self.encode_decode(
            {"input_features": input_features},
            encoder_outputs,
            None,
            decoder_inputs,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )


# --- generation: the prompt tokens -----------------------------------------------------------------
def _language_id(language: str, lang_to_id: Mapping[str, int]) -> int:
    for key in (language, f"<|{language.lower()}|>", language.lower()):
        if key in lang_to_id:
            return int(lang_to_id[key])
    known = ", ".join(k.strip("<|>") for k in list(lang_to_id)[:20])
    raise GenerationError(
        f"language {language!r} is not in this checkpoint's generation config (lang_to_id)",
        hint=f"give a language code or token it knows, e.g. {known}{' ...' if len(lang_to_id) > 20 else ''}",
    )


def prompt_tokens(
    model: WhisperForConditionalGeneration,
    input_features: torch.Tensor,
    language: str | Sequence[str] | None,
    task: str | None,
) -> torch.Tensor:
    """The decoder prompt ``[batch, n]`` transformers builds (``_retrieve_init_tokens``), one row per clip."""
    defaults = generation_defaults(model)
    extra = defaults.extra
    batch = input_features.shape[0]
    start = defaults.decoder_start_token_id
    if start is None:
        raise GenerationError("Whisper's generate needs decoder_start_token_id (<|startoftranscript|>)")
    tokens: list[int | None] = [start]
    lang_to_id = extra.get("lang_to_id")
    task_to_id = extra.get("task_to_id")
    if extra.get("is_multilingual") is False and (task is not None or language is not None):
        raise GenerationError("this Whisper checkpoint is English-only: language and task cannot be chosen")
    if task is None and language is None:
        forced = extra.get("forced_decoder_ids", getattr(model.config, "forced_decoder_ids", None))
        pending = [tuple(pair) for pair in forced or ()]
        if pending and pending[0][0] == 1:  # consecutive positions from 1 make the prompt, as transformers reads them
            while pending and pending[0][0] == len(tokens):
                tokens.append(pending.pop(0)[1])
            if pending:
                raise GenerationError(
                    f"forced_decoder_ids {forced} do not follow Whisper's prompt positions 1, 2, ...",
                    hint="give an entry for every position from 1 up, or pass language= / task= instead",
                )
    languages: list[str | None]
    if isinstance(language, (list, tuple)):
        if len(language) != batch:
            raise GenerationError(f"{len(language)} languages given for a batch of {batch} clips")
        languages = list(language)
    else:
        languages = [language] * batch  # type: ignore[list-item]
    rows = [list(tokens) for _ in range(batch)]
    lang_ids: list[int] | None = None
    if language is not None:
        if not isinstance(lang_to_id, Mapping):
            raise GenerationError(
                "language= needs the checkpoint's generation config to map languages to tokens (lang_to_id)",
                hint="use a checkpoint with generation_config.json, or pass decoder_input_ids yourself",
            )
        lang_ids = [_language_id(str(lang), lang_to_id) for lang in languages]
    elif isinstance(lang_to_id, Mapping) and (len(tokens) <= 1 or tokens[1] is None):
        lang_ids = detect_language(model, input_features, [int(v) for v in lang_to_id.values()], start)
    if lang_ids is not None:
        for row, lang in zip(rows, lang_ids):
            if len(row) > 1:
                row[1] = lang
            else:
                row.append(lang)
    for row in rows:
        if task is not None:
            if not isinstance(task_to_id, Mapping) or task not in task_to_id:
                raise GenerationError(
                    f"task {task!r} is not in this checkpoint's generation config (task_to_id: "
                    f"{sorted(task_to_id) if isinstance(task_to_id, Mapping) else None})",
                    hint="use task='transcribe' or task='translate' with a multilingual checkpoint",
                )
            task_ids = set(task_to_id.values())
            if any(t in task_ids for t in row):
                row[:] = [task_to_id[task] if t in task_ids else t for t in row]
            else:
                row.append(task_to_id[task])
        elif (
            language is not None and isinstance(task_to_id, Mapping) and not any(t in task_to_id.values() for t in row)
        ):
            row.append(task_to_id["transcribe"])  # a language alone means transcribe
        no_timestamps = extra.get("no_timestamps_token_id")
        if no_timestamps is not None and row[-1] != no_timestamps:
            row.append(no_timestamps)
    clean = [[t for t in row if t is not None] for row in rows]
    return torch.tensor(clean, dtype=torch.long, device=input_features.device)


@torch.no_grad()
def detect_language(
    model: WhisperForConditionalGeneration, input_features: torch.Tensor, language_ids: list[int], start: int
) -> list[int]:
    """Each clip's most likely language token after ``<|startoftranscript|>`` (transformers' ``detect_language``)."""
    decoder_input_ids = torch.full((input_features.shape[0], 1), start, dtype=torch.long, device=input_features.device)
    logits = model(input_features, decoder_input_ids=decoder_input_ids).logits[:, -1]
    allowed = torch.full_like(logits[0], float("-inf"))
    allowed[language_ids] = 0
    detected: list[int] = (logits + allowed).argmax(-1).tolist()
    return detected


def _strip_like_transformers(
    sequences: torch.Tensor, prompt: int, pad: int | None, eos: list[int] | None
) -> torch.Tensor:
    """The new tokens of each row, padding and a final EOS removed, right-padded again with the pad id."""
    rows = []
    for row in sequences[:, prompt:]:
        if pad is not None and row.numel() and int(row[-1]) == pad:
            paddings = int((row == pad).sum()) - (1 if eos is not None and pad == eos[0] else 0)
            if paddings:
                row = row[:-paddings]
        if eos is not None and row.numel() and int(row[-1]) == eos[0]:
            row = row[:-1]
        rows.append(row)
    width = max((len(r) for r in rows), default=0)
    fill = 0 if pad is None else pad
    return torch.stack([F.pad(r, (0, width - len(r)), value=fill) for r in rows]) if rows else sequences[:, :0]


# --- task heads (factory.models.heads) -----------------------------------------------------------------
class WhisperTaskModel(heads.Seq2SeqTaskModel, WhisperPreTrainedModel):
    """The base of the Whisper encoder-decoder heads: a :class:`WhisperModel` under ``model``."""

    trunk_class = WhisperModel
    main_input_name = "input_features"


class WhisperForConditionalGeneration(heads.Seq2SeqLM, WhisperTaskModel):
    """Transcription logits (``proj_out``, tied to the decoder's embeddings); ``labels`` shifted right feed
    the decoder; ``generate`` (see the module docstring)."""

    head_layers = {"proj_out": heads.linear("vocab_size", bias=False)}
    tied = {"proj_out.weight": "model.decoder.embed_tokens.weight"}

    def generate(  # type: ignore[override]  # audio in, Whisper's prompt options
        self,
        input_features: torch.Tensor | None = None,
        *,
        language: str | Sequence[str] | None = None,
        task: str | None = None,
        max_new_tokens: int | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        return_timestamps: bool | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Transcribe (or translate) ``input_features`` of one 30 s window each; ``options`` are those of
        :func:`~factory.models.generation.generate_seq2seq` (``do_sample``, ``eos_token_id``...).

        Returns the new tokens (no prompt, no final EOS), right-padded with the pad id, as transformers.
        """
        if return_timestamps or generation_defaults(self).extra.get("return_timestamps"):
            raise GenerationError(
                "Whisper timestamps are not implemented natively",
                hint="generate without return_timestamps, or build with the transformers pack for timestamps",
            )
        if not isinstance(input_features, torch.Tensor) or input_features.dim() != 3:
            raise GenerationError(
                "Whisper's generate wants input_features [batch, mel bins, frames] from the feature extractor"
            )
        frames = 2 * self.config.max_source_positions
        if input_features.shape[-1] > frames:
            raise GenerationError(
                f"input_features hold {input_features.shape[-1]} frames, more than one {frames}-frame window: "
                "long-form transcription is not implemented natively",
                hint="split the audio into 30 s clips and transcribe them as a batch",
            )
        if decoder_input_ids is None:
            decoder_input_ids = prompt_tokens(self, input_features, language, task)
        prompt = decoder_input_ids.shape[1]
        limit = self.config.max_target_positions
        if max_new_tokens is None:
            max_length = generation_defaults(self).extra.get("max_length", 20)
            max_new_tokens = max(min(int(max_length) + prompt, limit) - prompt, 0)
        elif prompt + max_new_tokens > limit:
            raise GenerationError(
                f"the prompt ({prompt} tokens) and max_new_tokens={max_new_tokens} exceed Whisper's "
                f"max_target_positions={limit}",
                hint=f"ask for at most {limit - prompt} new tokens",
            )
        sequences = generate_seq2seq(
            self,
            {"input_features": input_features},
            decoder_input_ids=decoder_input_ids,
            max_new_tokens=max_new_tokens,
            **options,
        )
        defaults = generation_defaults(self)
        eos = defaults.eos_token_id if options.get("eos_token_id") is None else [int(options["eos_token_id"])]
        pad = defaults.pad_token_id if options.get("pad_token_id") is None else int(options["pad_token_id"])
        return _strip_like_transformers(sequences, prompt, pad, eos)


class WhisperForAudioClassification(heads.TaskModel, WhisperPreTrainedModel):
    """The encoder under ``encoder``, ``projector`` per frame, the mean over frames, ``classifier``;
    with ``use_weighted_layer_sum``, a softmax-weighted sum of every layer's states (``layer_weights``)."""

    base_model_prefix = "encoder"
    main_input_name = "input_features"
    trunk_class = WhisperEncoder
    output_class = SequenceClassifierOutput

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.projector = nn.Linear(config.d_model, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        if config.use_weighted_layer_sum:
            layers = config.encoder_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(layers) / layers)

    def prepare_inputs(self, inputs: dict[str, Any], labels: Mapping[str, Any]) -> dict[str, Any]:
        if self.config.use_weighted_layer_sum:
            inputs["output_hidden_states"] = True
        return inputs

    def predict(self, out: Any, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.config.use_weighted_layer_sum:
            weights = self.layer_weights.softmax(dim=-1)
            hidden = (torch.stack(out.hidden_states, dim=1) * weights.view(-1, 1, 1)).sum(dim=1)
        else:
            hidden = out.last_hidden_state
        return {"logits": self.classifier(self.projector(hidden).mean(dim=1))}


class WhisperDecoderWrapper(WhisperPreTrainedModel, DecoderWrapper):
    """The decoder alone under ``decoder`` (checkpoint keys ``model.decoder.*``)."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.decoder = WhisperDecoder(config)


class WhisperForCausalLM(heads.CausalLM, WhisperPreTrainedModel):
    """The decoder as a language model (``proj_out`` tied to its embeddings); ``labels`` are not shifted."""

    main_input_name = "input_ids"
    trunk_class = WhisperDecoderWrapper
    head_layers = {"proj_out": heads.linear("vocab_size", bias=False)}
    tied = {"proj_out.weight": "model.decoder.embed_tokens.weight"}

    def get_output_embeddings(self) -> nn.Module:
        return self.get_submodule("proj_out")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        return heads.cross_entropy_loss(logits, labels)


__all__ = [
    "WhisperConfig",
    "WhisperForAudioClassification",
    "WhisperForCausalLM",
    "WhisperForConditionalGeneration",
    "WhisperModel",
]
