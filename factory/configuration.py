"""The base class of native config objects: a typed attribute bag.

Subclasses declare ``model_type`` and their defaults as class attributes::

    class BertConfig(Config):
        model_type = "bert"
        vocab_size: int = 30522
        hidden_size: int = 768

Unknown keys from a checkpoint's ``config.json`` are kept as attributes (real
configs carry extra fields) and written back by ``to_dict``. ``attribute_map``
maps checkpoint names onto canonical ones (GPT-2's ``n_embd`` -> ``hidden_size``),
read and written under both names.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar, Mapping

#: Keys that name code in transformers configs; never followed, never written back.
CODE_KEYS = ("auto_map", "custom_pipelines")
#: Attributes the factory attaches at build time; not part of the config.
RUNTIME_KEYS = ("factory_provenance",)


class Config:
    """Base config: class attributes are defaults, instances hold overrides."""

    model_type: ClassVar[str] = ""
    attribute_map: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        super().__setattr__(self.attribute_map.get(key, key), value)

    def __getattr__(self, key: str) -> Any:
        # Only reached when normal lookup fails: try the attribute map.
        mapped = type(self).attribute_map.get(key)
        if mapped is not None:
            return getattr(self, mapped)
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Class-level defaults, most-derived last."""
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if key.startswith("_") or key in ("model_type", "attribute_map"):
                    continue
                if callable(value) or isinstance(value, (classmethod, staticmethod, property)):
                    continue
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides: Any) -> "Config":
        """Build from a ``config.json`` dict; code-naming keys are dropped."""
        values = {k: v for k, v in data.items() if k not in CODE_KEYS and k != "model_type"}
        values.update(overrides)
        return cls(**copy.deepcopy(values))

    @classmethod
    def from_json_file(cls, path: str | Path) -> "Config":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        """Defaults merged with instance values, plus ``model_type``; JSON-ready."""
        out = {k: copy.deepcopy(v) for k, v in self.defaults().items()}
        out.update(copy.deepcopy({k: v for k, v in vars(self).items() if k not in RUNTIME_KEYS}))
        if self.model_type:
            out["model_type"] = self.model_type
        return out

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __contains__(self, key: str) -> bool:
        return hasattr(self, key)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    def __repr__(self) -> str:
        body = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
        return f"{type(self).__name__} {body}"
