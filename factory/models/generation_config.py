"""A checkpoint's generation defaults: ``generation_config.json``, read as transformers reads it.

``factory.build`` attaches the file of a checkpoint to the native model it builds as
``model.generation_config``; native ``generate`` takes its defaults from there (a call's arguments
win), and ``factory.save`` writes it back. Only the fields native ``generate`` implements are used:
token ids (``eos_token_id`` may be a list, as Llama 3 Instruct's is), lengths, sampling and the
forced/suppressed-token processors (``forced_bos_token_id``, ``suppress_tokens``...). A field
that would change transformers' output and that native ``generate`` does not implement
(``repetition_penalty``, ``num_beams``, ...) gives a warning when it is set to something other than
transformers' default; fields without effect on the tokens (``transformers_version``, ...) are kept
and written back unchanged.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.errors import ConfigError

GENERATION_CONFIG_FILE = "generation_config.json"
MAX_FILE_BYTES = 1 << 20  # a generation config is a few hundred bytes

#: transformers' ``GenerationConfig`` defaults of the fields native ``generate`` implements.
DEFAULTS: dict[str, Any] = {
    "max_new_tokens": None,
    "max_length": 20,
    "do_sample": False,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "eos_token_id": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "decoder_start_token_id": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
}
#: Fields native ``generate`` does not implement, with transformers' default (set otherwise: a warning).
UNIMPLEMENTED: dict[str, Any] = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_beams": 1,
    "num_beam_groups": 1,
    "num_return_sequences": 1,
    "min_length": 0,
    "min_new_tokens": None,
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "diversity_penalty": 0.0,
    "penalty_alpha": None,
    "bad_words_ids": None,
    "sequence_bias": None,
    "guidance_scale": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "stop_strings": None,
    "max_time": None,
}


class GenerationConfigWarning(UserWarning):
    """A checkpoint's generation_config.json sets a field native ``generate`` does not implement."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``key`` (``None``: fine)."""
    if value is None:
        return None
    if key in ("eos_token_id", "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens"):
        ok = _is_int(value) or (isinstance(value, list) and all(_is_int(v) for v in value))
        return None if ok else "an int or a list of ints"
    if key in ("pad_token_id", "bos_token_id", "decoder_start_token_id", "forced_bos_token_id"):
        return None if _is_int(value) else "an int"
    if key in ("max_new_tokens", "max_length", "top_k"):
        return None if _is_int(value) and value >= 0 else "an int >= 0"
    if key == "do_sample":
        return None if isinstance(value, bool) else "true or false"
    if key == "temperature":
        return None if _is_number(value) and value >= 0 else "a number >= 0"
    if key == "top_p":
        return None if _is_number(value) and 0 < value <= 1 else "a number in (0, 1]"
    return None


class GenerationConfig:
    """Generation defaults: the fields set (in a file or by assignment); unset ones read transformers' defaults.

    ``config.eos_token_id``, ``config.max_new_tokens``, ... read a value (``None`` or transformers'
    default when unset); assignment sets one (checked); :meth:`to_dict` gives what was set.
    """

    _values: dict[str, Any]
    _origin: str | None

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_origin", None)
        for key, value in values.items():
            setattr(self, key, value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str | Path | None = None) -> GenerationConfig:
        """From a ``generation_config.json`` dict; ``origin`` (the file) is named in errors and warnings."""
        config = cls()
        object.__setattr__(config, "_origin", str(origin) if origin is not None else None)
        for key, value in data.items():
            setattr(config, key, value)
        ignored = {k: v for k, v in data.items() if k in UNIMPLEMENTED and v != UNIMPLEMENTED[k]}
        if ignored:
            listed = ", ".join(f"{k}={v!r}" for k, v in sorted(ignored.items()))
            warnings.warn(
                f"{origin or 'generation config'}: native generate does not implement {listed}; ignored "
                "(transformers would apply it)",
                GenerationConfigWarning,
                stacklevel=2,
            )
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> GenerationConfig:
        """Read an untrusted ``generation_config.json``."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError("generation config is not a regular file", file=path)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(
                f"generation config is {path.stat().st_size} bytes, more than {MAX_FILE_BYTES}",
                file=path,
                hint="a generation_config.json holds a few settings; check the file",
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"generation_config.json is not valid JSON: {exc}",
                file=path,
                line=getattr(exc, "lineno", None),
                hint="fix or delete the file (generation then uses config.json's token ids)",
            ) from None
        except RecursionError:
            raise ConfigError("generation_config.json is nested too deeply", file=path) from None
        if not isinstance(data, dict):
            raise ConfigError(f"generation_config.json must hold an object, found {type(data).__name__}", file=path)
        return cls.from_dict(data, origin=path)

    def __getattr__(self, key: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if key in values:
            return values[key]
        if key in DEFAULTS:
            return DEFAULTS[key]
        if key in UNIMPLEMENTED:
            return UNIMPLEMENTED[key]
        raise AttributeError(f"GenerationConfig has no field {key!r}")

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            object.__setattr__(self, key, value)
            return
        problem = _check(key, value)
        if problem is not None:
            raise ConfigError(
                f"generation config: {key} must be {problem}, found {value!r}",
                file=self._origin,
                hint="fix generation_config.json or the value assigned",
            )
        self._values[key] = value

    def is_set(self, key: str) -> bool:
        """Whether ``key`` was given (in the file or by assignment), not only a default."""
        return key in self._values and self._values[key] is not None

    def to_dict(self) -> dict[str, Any]:
        """What was set, as ``generation_config.json`` holds it."""
        return dict(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return f"GenerationConfig {json.dumps(self._values, indent=2, sort_keys=True, default=str)}"


__all__ = ["DEFAULTS", "GENERATION_CONFIG_FILE", "UNIMPLEMENTED", "GenerationConfig", "GenerationConfigWarning"]
