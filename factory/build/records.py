"""What the native builder records on a model, and what ``factory.save`` reads back from it.

* ``model.factory_config``: the config object the model was built with, so that ``factory.save``
  can write ``config.json`` for a plain ``torch.nn.Module`` that does not keep its config;
* ``model.generation_config``: the checkpoint's ``generation_config.json``
  (:class:`~factory.models.generation_config.GenerationConfig`), which native ``generate`` reads
  and ``factory.save`` writes back. A model that brings its own (a transformers class) keeps it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.models.generation_config import GENERATION_CONFIG_FILE, GenerationConfig

CONFIG_ATTRIBUTE = "factory_config"
#: Keys a checkpoint's config.json carries about the checkpoint rather than the model (``factory.save``
#: and transformers write them); a config class whose constructor takes none of them gets none.
METADATA_KEYS = ("architectures", "dtype", "torch_dtype", "transformers_version", "_name_or_path")


def record(model: Any, config: Any, directory: Path | None) -> Any:
    """Record ``config`` and ``directory``'s generation defaults on ``model``; returns the model."""
    setattr(model, CONFIG_ATTRIBUTE, config)
    path = directory / GENERATION_CONFIG_FILE if directory is not None else None
    if path is not None and path.is_file() and getattr(model, "generation_config", None) is None:
        model.generation_config = GenerationConfig.from_file(path)
    return model


def without_metadata(config_cls: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the :data:`METADATA_KEYS` that ``config_cls(**data)`` does not take."""
    try:
        params = inspect.signature(config_cls).parameters
    except (TypeError, ValueError):  # no signature to read: pass everything
        return data
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return data
    return {k: v for k, v in data.items() if k not in METADATA_KEYS or k in params}


def _as_dict(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "__dict__") and not isinstance(config, type):
        return {k: v for k, v in vars(config).items() if not k.startswith("_")}
    return None


def config_dict(model: Any) -> dict[str, Any] | None:
    """The dict to write as ``config.json`` for ``model``: its ``config``, else the recorded one.

    A config without ``model_type`` gets the architecture the model was built for, so the saved
    checkpoint dispatches back to the same registration.
    """
    data = _as_dict(getattr(model, "config", None))
    if data is None:
        data = _as_dict(getattr(model, CONFIG_ATTRIBUTE, None))
    if data is None:
        return None
    architecture = (getattr(model, "factory_provenance", None) or {}).get("architecture")
    if not data.get("model_type") and architecture:
        data["model_type"] = architecture
    return data


def generation_dict(model: Any) -> dict[str, Any] | None:
    """What to write as ``generation_config.json`` (``None``: the model has no generation defaults)."""
    generation = getattr(model, "generation_config", None)
    if generation is None:
        return None
    to_diff = getattr(generation, "to_diff_dict", None)  # transformers' GenerationConfig: what differs
    data = to_diff() if callable(to_diff) else _as_dict(generation)
    return dict(data) if data else None


__all__ = ["CONFIG_ATTRIBUTE", "METADATA_KEYS", "config_dict", "generation_dict", "record", "without_metadata"]
