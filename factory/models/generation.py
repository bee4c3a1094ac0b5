"""Text generation for native language models: decoder-only and encoder-decoder.

Every native ``causal-lm`` class mixes in :class:`GenerationMixin`. The mixin
relies on one contract with the model's ``forward``::

    out = model(input_ids, attention_mask=None, position_ids=None,
                past_key_values=None, use_cache=False)
    out.logits            # [batch, seq, vocab]
    out.past_key_values   # tuple over layers of (key, value), each
                          # [batch, kv_heads, past + seq, head_dim] (keys after rotary),
                          # or None: a model without a cache gets the whole sequence each step

Every native ``seq2seq-lm`` / ``speech-seq2seq`` class mixes in :class:`Seq2SeqGenerationMixin`;
the encoder runs once, then the decoder step by step::

    encoder_outputs = model.get_encoder()(**encoder_inputs)   # input_ids + attention_mask, or input_features
    out = model(encoder_outputs=encoder_outputs, attention_mask=attention_mask,
                decoder_input_ids=step_ids, past_key_values=past, use_cache=True)
    out.logits            # [batch, decoder seq, vocab]
    out.past_key_values   # tuple over decoder layers of (self key, self value, cross key, cross value);
                          # the cross-attention keys/values are computed on the first step and passed back

Decoding follows transformers' ``generate``: left-padded decoder-only batches get position
ids from the attention mask's cumulative sum, and the cache is dropped and rebuilt where the
model's ``keeps_cache`` says so; an encoder-decoder's decoder starts from
``decoder_start_token_id`` (or the ``decoder_input_ids`` given); rows that emitted an EOS
token are filled with ``pad_token_id`` afterwards, and generation stops early once every
row has finished. ``forced_bos_token_id`` / ``forced_eos_token_id`` (the first / last new
token), ``suppress_tokens`` and ``begin_suppress_tokens`` (the first new token) act as
transformers' logits processors of those names, in its order. Sampling applies
temperature, top-k and top-p in that order, exactly like transformers' logits warpers.
Beam search and the other processors (``no_repeat_ngram_size``, ``repetition_penalty``,
``min_length``...) are not implemented: a generation config that sets them gets a warning
(:mod:`factory.models.generation_config`).

Every setting a call leaves ``None`` comes from the generation config (the call's
``generation_config``, else ``model.generation_config``: the checkpoint's
``generation_config.json``), then, for token ids, from ``model.config`` (its ``config.json``),
then from transformers' ``GenerationConfig`` defaults (:func:`generation_defaults` for the ids).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from factory.errors import ModelInputError
from factory.models.generation_config import DEFAULTS, GenerationConfig

#: New tokens when neither the call nor the generation config sets a length (transformers: max_length 20).
DEFAULT_MAX_NEW_TOKENS = 20


class GenerationError(ModelInputError):
    """Invalid arguments to ``generate``."""


#: The token ids :class:`GenerationDefaults` carries: one id each (the EOS ids may be a list).
_SINGLE_IDS = ("pad_token_id", "bos_token_id", "decoder_start_token_id", "forced_bos_token_id")
_ID_LISTS = ("eos_token_id", "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens")


def _token_ids(value: int | Sequence[int] | None, name: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise GenerationError(f"{name} must be an int or a list of ints, got {value!r}")
    if isinstance(value, int):
        return [value]
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    if isinstance(value, (str, bytes)):
        raise GenerationError(f"{name} must be an int or a list of ints, got {value!r}")
    try:
        ids = [int(v) for v in value]
    except (TypeError, ValueError):
        raise GenerationError(f"{name} must be an int or a list of ints, got {value!r}") from None
    if any(isinstance(v, bool) for v in value):
        raise GenerationError(f"{name} must be an int or a list of ints, got {value!r}")
    return ids or None


def _token_id(value: Any, name: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise GenerationError(f"{name} must be an int, got {value!r}")
    return value


# --- defaults: config.json + generation_config.json -------------------------------------
@dataclass(frozen=True)
class GenerationDefaults:
    """The token ids ``generate`` falls back to, and the rest of ``generation_config.json`` (``extra``)."""

    eos_token_id: list[int] | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: list[int] | None = None
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _configured(defaults: Any, name: str) -> Any:
    """The value a generation config sets for ``name`` (``None`` when it sets none)."""
    if isinstance(defaults, GenerationConfig):
        return getattr(defaults, name) if defaults.is_set(name) else None
    if isinstance(defaults, Mapping):
        return defaults.get(name)
    return getattr(defaults, name, None) if defaults is not None else None  # another library's config object


def _setting(name: str, given: Any, defaults: Any, config: Any = None) -> Any:
    """A call argument, else the generation config's value, else ``config``'s (token ids), else the default."""
    for value in (given, _configured(defaults, name), getattr(config, name, None) if config is not None else None):
        if value is not None:
            return value
    return DEFAULTS.get(name)


def _generation_config(model: Any, given: Any = None) -> Any:
    """The generation config a call uses: the one given, else the model's (``None``: none)."""
    return given if given is not None else getattr(model, "generation_config", None)


def generation_defaults(model: Any, generation_config: Any = None) -> GenerationDefaults:
    """The token ids ``generate`` falls back to, read now (so later config changes count).

    Each id comes from the generation config (``generation_config``, else ``model.generation_config``)
    when it sets it, else from ``model.config``. ``extra`` holds everything else the generation
    config sets (Whisper's ``lang_to_id``...). Bad values raise :class:`GenerationError` naming the key.
    """
    config = getattr(model, "config", None)
    file = _generation_config(model, generation_config)
    values: dict[str, Any] = {key: _token_id(_setting(key, None, file, config), key) for key in _SINGLE_IDS}
    values.update({key: _token_ids(_setting(key, None, file, config), key) for key in _ID_LISTS})
    to_dict = getattr(file, "to_dict", None)  # GenerationConfig (what it sets) or another library's config
    given = dict(file) if isinstance(file, Mapping) else dict(to_dict()) if callable(to_dict) else {}
    known = {*_SINGLE_IDS, *_ID_LISTS}
    return GenerationDefaults(**values, extra={k: v for k, v in given.items() if k not in known})


def _new_tokens(max_new_tokens: Any, max_length: Any, defaults: Any, prompt: int) -> Any:
    """``max_new_tokens``, else ``max_length`` minus the prompt: the call's, else the generation config's; else 20."""
    if max_new_tokens is None and max_length is None:
        max_new_tokens, max_length = _configured(defaults, "max_new_tokens"), _configured(defaults, "max_length")
    if max_new_tokens is not None:
        return max_new_tokens
    if max_length is None:
        return DEFAULT_MAX_NEW_TOKENS
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise GenerationError(f"max_length must be an int, got {max_length!r}")
    return max(0, max_length - prompt)


def _sampler(
    do_sample: Any, temperature: Any, top_k: Any, top_p: Any, defaults: Any, generator: torch.Generator | None
) -> _Sampler:
    """The sampling settings: the call's, else the generation config's, else transformers' defaults."""
    return _Sampler(
        bool(_setting("do_sample", do_sample, defaults)),
        _setting("temperature", temperature, defaults),
        _setting("top_k", top_k, defaults),
        _setting("top_p", top_p, defaults),
        generator,
    )


# --- argument checks and logits ----------------------------------------------------------
def warp_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p filtering of ``[batch, vocab]`` scores.

    Filtered entries become ``-inf``; at least one token always survives.
    Same arithmetic as transformers' Temperature/TopK/TopP logits warpers.
    """
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k != 0:
        k = min(top_k, logits.size(-1))
        threshold = torch.topk(logits, k).values[..., -1, None]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False
        remove = remove.scatter(1, sorted_indices, remove)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def _check_ids(input_ids: Any, name: str, attention_mask: Any = None) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        found = (
            f"a {input_ids.dim()}-d {input_ids.dtype} tensor"
            if isinstance(input_ids, torch.Tensor)
            else type(input_ids).__name__
        )
        raise GenerationError(
            f"generate() wants {name} as an integer tensor of shape [batch, seq], got {found}",
            hint="wrap a single prompt as input_ids[None] (or tokenizer(..., return_tensors='pt'))",
        )
    if input_ids.shape[1] == 0:
        raise GenerationError(f"generate() got an empty prompt ({name} has 0 tokens)", hint="pass at least one token")
    if attention_mask is not None and (
        not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(input_ids.shape)
    ):
        mask_found = (
            tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        )
        raise GenerationError(
            f"attention_mask must be a tensor shaped like {name} {tuple(input_ids.shape)}, got {mask_found}",
            hint=f"pass the attention_mask the tokenizer returned with these {name}",
        )


def _check_sampling(max_new_tokens: Any, sampler: _Sampler) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not sampler.do_sample:
        return
    temperature, top_k, top_p = sampler.temperature, sampler.top_k, sampler.top_p
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise GenerationError(
            f"temperature must be a number > 0 when do_sample=True, got {temperature!r}",
            hint="for greedy decoding use do_sample=False",
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise GenerationError(f"top_k must be a positive int (or None/0 for no top-k filter), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise GenerationError(f"top_p must be a number in (0, 1], got {top_p!r}")


@dataclass(frozen=True)
class _Sampler:
    """How the next token is chosen: greedy, or sampled after the warpers."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    generator: torch.Generator | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.do_sample:
            return logits.argmax(dim=-1)
        probs = warp_logits(logits, float(self.temperature), self.top_k, self.top_p).softmax(dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=self.generator).squeeze(1)


def _pad_id(pad_token_id: int | None, eos: list[int] | None) -> int | None:
    """The id that fills finished rows: the pad id, else the first EOS id (transformers does the same)."""
    return eos[0] if pad_token_id is None and eos is not None else pad_token_id


#: ``step(sequences [batch, n]) -> logits [batch, vocab]`` of the next position; it keeps the cache itself
#: (and feeds the model the last token, or the whole sequence when there is no cache).
Step = Callable[[torch.Tensor], torch.Tensor]
#: ``process(logits, new_index) -> logits``: the logits processors, ``new_index`` counting new tokens from 0.
Process = Callable[[torch.Tensor, int], torch.Tensor]


def _cached_step(model: Any, state: dict[str, Any], **inputs: Any) -> torch.Tensor:
    """One forward with the cache in ``state["past"]`` (updated): the logits of the last position."""
    out = model(**inputs, past_key_values=state["past"], use_cache=True)
    state["past"] = out.past_key_values
    logits: torch.Tensor = out.logits[:, -1, :]
    return logits


def _step_input(sequences: torch.Tensor, past: Any) -> torch.Tensor:
    """What a step feeds the model: the last token with a cache, the whole sequence without one."""
    return sequences if past is None else sequences[:, -1:]


def _decode(
    step: Step,
    prompt: torch.Tensor,
    max_new_tokens: int,
    sampler: _Sampler,
    eos: list[int] | None,
    pad_token_id: int | None,
    process: Process | None = None,
) -> torch.Tensor:
    """The decoding loop both kinds of model share: next token, EOS bookkeeping, early stop.

    Returns ``prompt`` followed by the new tokens (int64).
    """
    device = prompt.device
    finish = (torch.tensor(eos, device=device), pad_token_id) if eos is not None and pad_token_id is not None else None
    sequences = prompt
    unfinished = torch.ones(prompt.shape[0], dtype=torch.bool, device=device)
    for index in range(max_new_tokens):
        logits = step(sequences).float()
        if process is not None:
            logits = process(logits, index)
        next_tokens = sampler(logits)
        if finish is not None:
            eos_tensor, pad = finish
            next_tokens = torch.where(unfinished, next_tokens, pad)
            unfinished = unfinished & ~torch.isin(next_tokens, eos_tensor)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=-1)
        if finish is not None and not bool(unfinished.any()):
            break
    return sequences


# --- decoder-only -----------------------------------------------------------------------
@torch.no_grad()
def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    *,
    max_length: int | None = None,
    generation_config: Any = None,
    **processors: Any,
) -> torch.Tensor:
    """Generate up to ``max_new_tokens`` tokens after each (left-padded) prompt of ``model``.

    Settings left ``None`` come from the generation config, then (token ids) ``model.config``, then
    transformers' defaults (greedy; when sampling temperature 1.0, ``top_k=50``, ``top_p=1.0``).
    The length is ``max_new_tokens``, else ``max_length`` minus the prompt (the call's before the
    generation config's), else 20 new tokens. ``do_sample=True`` samples after temperature/top-k/top-p
    warping (``top_k=0``: no top-k), drawing from ``generator`` when given. ``eos_token_id`` may be
    a list (any of them stops a row); without a pad id the first EOS id pads. Rows that emitted
    EOS are padded and the loop stops once all rows have. ``processors``: ``forced_bos_token_id``,
    ``forced_eos_token_id``, ``suppress_tokens``, ``begin_suppress_tokens`` (see :class:`Processors`).
    Returns ``[batch, prompt + new]`` token ids (int64).
    """
    file = _generation_config(model, generation_config)
    prompt = input_ids.shape[-1] if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 else 0
    max_new_tokens = _new_tokens(max_new_tokens, max_length, file, prompt)
    sampler = _sampler(do_sample, temperature, top_k, top_p, file, generator)
    _check_ids(input_ids, "input_ids", attention_mask)
    _check_sampling(max_new_tokens, sampler)
    defaults = generation_defaults(model, file)
    eos = _token_ids(eos_token_id, "eos_token_id") if eos_token_id is not None else defaults.eos_token_id
    pad = _token_id(pad_token_id, "pad_token_id") if pad_token_id is not None else defaults.pad_token_id
    pad = _pad_id(pad, eos)

    input_ids = input_ids.long()
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
        # Infer padding like transformers: only when pad is used and cannot be confused with EOS.
        if pad is not None and (eos is None or pad not in eos):
            attention_mask = input_ids.ne(pad).long()
    mask = attention_mask.to(device=input_ids.device, dtype=torch.long)
    state: dict[str, Any] = {"past": None, "mask": mask, "positions": (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)}
    keeps_cache = getattr(model, "keeps_cache", None)
    # Logits of the last position only, where the head can (as transformers' generate asks).
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in getattr(model, "head_inputs", ()) else {}

    def step(sequences: torch.Tensor) -> torch.Tensor:
        length = sequences.shape[1]
        grown = length - state["mask"].shape[1]
        if grown:  # new tokens: extend the mask and the positions
            state["mask"] = torch.cat([state["mask"], state["mask"].new_ones((sequences.shape[0], grown))], dim=-1)
            more = state["positions"][:, -1:] + torch.arange(1, grown + 1, device=sequences.device)
            state["positions"] = torch.cat([state["positions"], more], dim=-1)
        if state["past"] is not None and keeps_cache is not None and not keeps_cache(length - 1, length):
            state["past"] = None  # recompute the cache from scratch
        ids = _step_input(sequences, state["past"])
        positions = state["positions"][:, -ids.shape[1] :]
        return _cached_step(
            model, state, input_ids=ids, attention_mask=state["mask"], position_ids=positions, **last_only
        )

    process = Processors.chosen(defaults, input_ids.shape[1], max_new_tokens, **processors)
    return _decode(step, input_ids, max_new_tokens, sampler, eos, pad, process)


class GenerationMixin:
    """Adds ``generate`` to a native causal-lm ``nn.Module`` (see the module docstring for the contract)."""

    #: :func:`generate` as a method: the model is its first argument.
    generate = generate

    def keeps_cache(self, cached: int, length: int) -> bool:
        """Whether a key/value cache of ``cached`` tokens still serves the next step of a ``length``-token
        sequence; when not, ``generate`` runs the whole sequence again (Phi-3 does so once, when the
        sequence outgrows ``original_max_position_embeddings`` and its rotary frequencies change)."""
        return True


# --- encoder-decoder ----------------------------------------------------------------------
@dataclass(frozen=True)
class Processors:
    """transformers' logits processors an encoder-decoder ``generate`` applies, in its order.

    ``prompt_length`` is the decoder prompt's length; ``max_new_tokens`` places the forced EOS.
    """

    prompt_length: int
    max_new_tokens: int
    forced_bos_token_id: int | None = None
    forced_eos_token_id: list[int] | None = None
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None

    @classmethod
    def chosen(
        cls,
        defaults: GenerationDefaults,
        prompt_length: int,
        max_new_tokens: int,
        forced_bos_token_id: int | None = None,
        forced_eos_token_id: int | Sequence[int] | None = None,
        suppress_tokens: Sequence[int] | None = None,
        begin_suppress_tokens: Sequence[int] | None = None,
    ) -> Processors:
        """The arguments given, else the ``defaults``."""
        return cls(
            prompt_length=prompt_length,
            max_new_tokens=max_new_tokens,
            forced_bos_token_id=defaults.forced_bos_token_id
            if forced_bos_token_id is None
            else _token_id(forced_bos_token_id, "forced_bos_token_id"),
            forced_eos_token_id=defaults.forced_eos_token_id
            if forced_eos_token_id is None
            else _token_ids(forced_eos_token_id, "forced_eos_token_id"),
            suppress_tokens=defaults.suppress_tokens
            if suppress_tokens is None
            else _token_ids(suppress_tokens, "suppress_tokens"),
            begin_suppress_tokens=defaults.begin_suppress_tokens
            if begin_suppress_tokens is None
            else _token_ids(begin_suppress_tokens, "begin_suppress_tokens"),
        )

    def __call__(self, logits: torch.Tensor, index: int) -> torch.Tensor:
        length = self.prompt_length + index  # the decoder length before this token
        if self.forced_bos_token_id is not None and length == 1:
            logits = _force(logits, [self.forced_bos_token_id])
        if self.forced_eos_token_id is not None and length == self.prompt_length + self.max_new_tokens - 1:
            logits = _force(logits, self.forced_eos_token_id)
        if self.suppress_tokens is not None:
            logits = _suppress(logits, self.suppress_tokens)
        # The first new token; after a forced BOS on a one-token prompt, the token after it.
        begin = self.prompt_length + (1 if self.prompt_length == 1 and self.forced_bos_token_id is not None else 0)
        if self.begin_suppress_tokens is not None and length == begin:
            logits = _suppress(logits, self.begin_suppress_tokens)
        return logits


def _force(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    forced = torch.full_like(logits, float("-inf"))
    forced[:, _in_vocab(ids, logits)] = 0
    return forced


def _suppress(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    logits = logits.clone()
    logits[:, _in_vocab(ids, logits)] = float("-inf")
    return logits


def _in_vocab(ids: list[int], logits: torch.Tensor) -> list[int]:
    vocab = logits.shape[-1]
    bad = [i for i in ids if not -vocab <= i < vocab]
    if bad:
        raise GenerationError(f"token ids {bad} are outside the vocabulary of {vocab} logits")
    return ids


@torch.no_grad()
def generate_seq2seq(
    model: torch.nn.Module,
    encoder_inputs: Mapping[str, Any],
    attention_mask: torch.Tensor | None = None,
    decoder_input_ids: torch.Tensor | None = None,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    decoder_start_token_id: int | None = None,
    forced_bos_token_id: int | None = None,
    forced_eos_token_id: int | Sequence[int] | None = None,
    suppress_tokens: Sequence[int] | None = None,
    begin_suppress_tokens: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    *,
    max_length: int | None = None,
    generation_config: Any = None,
) -> torch.Tensor:
    """Run the encoder once on ``encoder_inputs``, then decode up to ``max_new_tokens`` tokens.

    The decoder starts from ``decoder_input_ids`` (``[batch, n]``), else from
    ``decoder_start_token_id``. Settings left ``None`` come from the generation config as in
    :func:`generate`; ``max_length`` counts the decoder's tokens, the start token included.
    With ``input_ids`` among the encoder inputs and no ``attention_mask``, padding is inferred
    from the pad id as transformers does. Returns the decoder sequences
    ``[batch, prompt + new]`` (int64), the prompt (the start token) first.
    """
    inputs = {k: v for k, v in encoder_inputs.items() if v is not None}
    main = next(iter(inputs.values()), None)
    if not isinstance(main, torch.Tensor):
        raise GenerationError(
            f"generate() of {type(model).__name__} needs the encoder's inputs "
            f"({', '.join(encoder_inputs) or 'input_ids'}), got none",
            hint="pass input_ids (text) or input_features (audio) as returned by the tokenizer / feature extractor",
        )
    input_ids = inputs.get("input_ids")
    if input_ids is not None:
        _check_ids(input_ids, "input_ids", attention_mask)
    file = _generation_config(model, generation_config)
    sampler = _sampler(do_sample, temperature, top_k, top_p, file, generator)
    defaults = generation_defaults(model, file)

    def chosen(value: Any, name: str, default: Any, check: Callable[[Any, str], Any]) -> Any:
        return check(value, name) if value is not None else default

    eos = chosen(eos_token_id, "eos_token_id", defaults.eos_token_id, _token_ids)
    pad = _pad_id(chosen(pad_token_id, "pad_token_id", defaults.pad_token_id, _token_id), eos)
    batch, device = main.shape[0], main.device
    if decoder_input_ids is None:
        start = chosen(decoder_start_token_id, "decoder_start_token_id", defaults.decoder_start_token_id, _token_id)
        start = defaults.bos_token_id if start is None else start
        if start is None:
            raise GenerationError(
                f"{type(model).__name__}.generate() needs decoder_start_token_id to begin the decoder, "
                "but neither the arguments nor the config give one",
                hint="pass decoder_start_token_id=... (T5 uses the pad id, BART the EOS id), "
                "or set it in config.json / generation_config.json",
            )
        decoder_input_ids = torch.full((batch, 1), start, dtype=torch.long, device=device)
    _check_ids(decoder_input_ids, "decoder_input_ids")
    max_new_tokens = _new_tokens(max_new_tokens, max_length, file, decoder_input_ids.shape[1])
    _check_sampling(max_new_tokens, sampler)
    if decoder_input_ids.shape[0] != batch:
        raise GenerationError(
            f"decoder_input_ids has {decoder_input_ids.shape[0]} rows for a batch of {batch} encoder inputs"
        )
    if input_ids is not None and attention_mask is None and pad is not None and (eos is None or pad not in eos):
        attention_mask = input_ids.ne(pad).long()
    process = Processors.chosen(
        defaults,
        decoder_input_ids.shape[1],
        max_new_tokens,
        forced_bos_token_id=forced_bos_token_id,
        forced_eos_token_id=forced_eos_token_id,
        suppress_tokens=suppress_tokens,
        begin_suppress_tokens=begin_suppress_tokens,
    )
    encoder = model.get_encoder()  # type: ignore[operator]  # the Seq2SeqGenerationMixin contract
    encoder_kwargs = dict(inputs)
    if attention_mask is not None:
        encoder_kwargs["attention_mask"] = attention_mask
    encoder_outputs = encoder(**encoder_kwargs)
    state: dict[str, Any] = {"past": None}

    def step(sequences: torch.Tensor) -> torch.Tensor:
        return _cached_step(
            model,
            state,
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            decoder_input_ids=_step_input(sequences, state["past"]),
        )

    return _decode(step, decoder_input_ids.long(), max_new_tokens, sampler, eos, pad, process)


class Seq2SeqGenerationMixin:
    """Adds ``generate`` to a native encoder-decoder ``nn.Module`` with ``get_encoder()`` (see the module docstring)."""

    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """:func:`generate_seq2seq` on ``input_ids`` (or ``inputs_embeds``) and their ``attention_mask``."""
        return generate_seq2seq(
            self,  # type: ignore[arg-type]  # mixed into an nn.Module
            {"input_ids": input_ids, "inputs_embeds": inputs_embeds},
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            max_new_tokens=max_new_tokens,
            **options,
        )
