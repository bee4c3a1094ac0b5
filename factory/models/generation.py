"""Text generation for native causal language models.

Every native ``causal-lm`` class mixes in :class:`GenerationMixin`. The mixin
relies on one contract with the model's ``forward``::

    out = model(input_ids, attention_mask=None, position_ids=None,
                past_key_values=None, use_cache=False)
    out.logits            # [batch, seq, vocab]
    out.past_key_values   # tuple over layers of (key, value), each
                          # [batch, kv_heads, past + seq, head_dim] (keys after rotary),
                          # or None: a model without a cache gets the whole sequence each step

Decoding follows transformers' ``generate``: left-padded batches get position
ids from the attention mask's cumulative sum, the cache is dropped and rebuilt
where the model's ``keeps_cache`` says so, rows that emitted an EOS token
are filled with ``pad_token_id`` afterwards, and generation stops early once
every row has finished. Sampling applies temperature, top-k and top-p in that
order, exactly like transformers' logits warpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from factory.errors import ModelInputError
from factory.models.generation_config import DEFAULTS, GenerationConfig

#: New tokens when neither the call nor the generation config sets a length (transformers: max_length 20).
DEFAULT_MAX_NEW_TOKENS = 20


class GenerationError(ModelInputError):
    """Invalid arguments to ``generate``."""


def _token_ids(value: int | Sequence[int] | None, name: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise GenerationError(f"{name} must be an int or a list of ints, got {value!r}")
    if isinstance(value, int):
        return [value]
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    try:
        ids = [int(v) for v in value]
    except (TypeError, ValueError):
        raise GenerationError(f"{name} must be an int or a list of ints, got {value!r}") from None
    return ids or None


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


def _check_arguments(
    input_ids: Any,
    attention_mask: Any,
    max_new_tokens: Any,
    do_sample: bool,
    temperature: Any,
    top_k: Any,
    top_p: Any,
) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        found = (
            f"a {input_ids.dim()}-d {input_ids.dtype} tensor"
            if isinstance(input_ids, torch.Tensor)
            else type(input_ids).__name__
        )
        raise GenerationError(
            f"generate() wants input_ids as an integer tensor of shape [batch, seq], got {found}",
            hint="wrap a single prompt as input_ids[None] (or tokenizer(..., return_tensors='pt'))",
        )
    if input_ids.shape[1] == 0:
        raise GenerationError("generate() got an empty prompt (input_ids has 0 tokens)", hint="pass at least one token")
    if attention_mask is not None and (
        not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(input_ids.shape)
    ):
        mask_found = (
            tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        )
        raise GenerationError(
            f"attention_mask must be a tensor shaped like input_ids {tuple(input_ids.shape)}, got {mask_found}",
            hint="pass the attention_mask the tokenizer returned with these input_ids",
        )
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not do_sample:
        return
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise GenerationError(
            f"temperature must be a number > 0 when do_sample=True, got {temperature!r}",
            hint="for greedy decoding use do_sample=False",
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise GenerationError(f"top_k must be a positive int (or None/0 for no top-k filter), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise GenerationError(f"top_p must be a number in (0, 1], got {top_p!r}")


def _configured(defaults: Any, name: str) -> Any:
    """The value a generation config sets for ``name`` (``None`` when it sets none)."""
    if isinstance(defaults, GenerationConfig):
        return getattr(defaults, name) if defaults.is_set(name) else None
    return getattr(defaults, name, None) if defaults is not None else None  # another library's config object


def _setting(name: str, given: Any, defaults: Any, config: Any = None) -> Any:
    """A call argument, else the generation config's value, else ``config``'s (token ids), else the default."""
    for value in (given, _configured(defaults, name), getattr(config, name, None) if config is not None else None):
        if value is not None:
            return value
    return DEFAULTS.get(name)


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
) -> torch.Tensor:
    """Generate up to ``max_new_tokens`` tokens after each (left-padded) prompt of ``model``.

    Every setting left ``None`` comes from ``generation_config`` (default: ``model.generation_config``,
    the checkpoint's ``generation_config.json``), then, for token ids, from ``model.config``, then
    from transformers' ``GenerationConfig`` defaults (greedy; when sampling temperature 1.0,
    ``top_k=50``, ``top_p=1.0``), as transformers does. The length is ``max_new_tokens``, else
    ``max_length`` minus the prompt (the call's before the generation config's), else 20 new tokens.
    ``do_sample=True`` samples after temperature/top-k/top-p warping (``top_k=0``: no top-k),
    drawing from ``generator`` when given. ``eos_token_id`` may be a list (any of them stops a row);
    without a pad id the first EOS id pads. Rows that emitted EOS are padded and the loop stops
    once all rows have. Returns ``[batch, prompt + new]`` token ids.
    """
    config = getattr(model, "config", None)
    defaults = generation_config if generation_config is not None else getattr(model, "generation_config", None)
    prompt = input_ids.shape[-1] if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 else 0
    max_new_tokens = _new_tokens(max_new_tokens, max_length, defaults, prompt)
    do_sample = bool(_setting("do_sample", do_sample, defaults))
    temperature = _setting("temperature", temperature, defaults)
    top_k = _setting("top_k", top_k, defaults)
    top_p = _setting("top_p", top_p, defaults)
    _check_arguments(input_ids, attention_mask, max_new_tokens, do_sample, temperature, top_k, top_p)
    eos = _token_ids(_setting("eos_token_id", eos_token_id, defaults, config), "eos_token_id")
    pad_token_id = _setting("pad_token_id", pad_token_id, defaults, config)
    if pad_token_id is None and eos is not None:
        pad_token_id = eos[0]  # transformers does the same
    if pad_token_id is not None and (isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int)):
        raise GenerationError(f"pad_token_id must be an int, got {pad_token_id!r}")

    input_ids = input_ids.long()
    device = input_ids.device
    # With EOS ids there is always a pad id (the first EOS id when nothing else gives one).
    finish = (torch.tensor(eos, device=device), pad_token_id) if eos is not None and pad_token_id is not None else None
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
        # Infer padding like transformers: only when pad is used and cannot be confused with EOS.
        if pad_token_id is not None and (eos is None or pad_token_id not in eos):
            attention_mask = input_ids.ne(pad_token_id).long()
    attention_mask = attention_mask.to(device=device, dtype=torch.long)
    position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)

    sequences = input_ids
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.bool, device=device)
    step_ids, step_positions, past = input_ids, position_ids, None
    keeps_cache = getattr(model, "keeps_cache", None)
    # Logits of the last position only, where the head can (as transformers' generate asks).
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in getattr(model, "head_inputs", ()) else {}
    for _ in range(max_new_tokens):
        if past is not None and keeps_cache is not None and not keeps_cache(sequences.shape[1] - 1, sequences.shape[1]):
            step_ids, step_positions, past = sequences, position_ids, None  # recompute the cache from scratch
        out = model(
            step_ids,
            attention_mask=attention_mask,
            position_ids=step_positions,
            past_key_values=past,
            use_cache=True,
            **last_only,
        )
        past = out.past_key_values
        logits = out.logits[:, -1, :].float()
        if do_sample:
            probs = warp_logits(logits, float(temperature), top_k, top_p).softmax(dim=-1)
            next_tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        else:
            next_tokens = logits.argmax(dim=-1)
        if finish is not None:
            eos_tensor, pad = finish
            next_tokens = torch.where(unfinished, next_tokens, pad)
            unfinished = unfinished & ~torch.isin(next_tokens, eos_tensor)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=-1)
        if finish is not None and not bool(unfinished.any()):
            break
        position_ids = torch.cat([position_ids, position_ids[:, -1:] + 1], dim=-1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=-1)
        if past is None:  # a model that keeps no cache (RoBERTa without is_decoder): the whole sequence again
            step_ids, step_positions = sequences, position_ids
        else:
            step_ids, step_positions = next_tokens[:, None], position_ids[:, -1:]
    return sequences


class GenerationMixin:
    """Adds ``generate`` to a native causal-lm ``nn.Module`` (see the module docstring for the contract)."""

    #: :func:`generate` as a method: the model is its first argument.
    generate = generate

    def keeps_cache(self, cached: int, length: int) -> bool:
        """Whether a key/value cache of ``cached`` tokens still serves the next step of a ``length``-token
        sequence; when not, ``generate`` runs the whole sequence again (Phi-3 does so once, when the
        sequence outgrows ``original_max_position_embeddings`` and its rotary frequencies change)."""
        return True
