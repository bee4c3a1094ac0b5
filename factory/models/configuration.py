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

Every config carries transformers' fine-tuning fields: ``id2label``,
``label2id``, ``problem_type`` and the derived ``num_labels`` (see :class:`Config`).

A config made of others (CLIP's ``text_config`` and ``vision_config``) names them in
``sub_configs``: ``{key: Config subclass}``. The key's value (a dict from ``config.json``,
an instance, or nothing for the defaults) becomes an instance of that class, and
``to_dict`` writes it back as a dict.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from factory.errors import ConfigError

#: Keys that name code in transformers configs; never followed, never written back.
CODE_KEYS = ("auto_map", "custom_pipelines")
#: Attributes the factory attaches at build time; not part of the config.
RUNTIME_KEYS = ("factory_provenance",)
#: The classification losses a ``problem_type`` can name (transformers' names).
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class Config:
    """Base config: class attributes are defaults, instances hold overrides.

    Labels follow transformers 5.23's ``PretrainedConfig``: ``num_labels`` is not
    stored but is the size of ``id2label``; without ``id2label`` a config gets
    ``LABEL_0`` ... ``LABEL_{n-1}`` for ``num_labels=n`` (default 2); a keyword
    ``num_labels`` that disagrees with ``id2label`` wins and renames the labels
    (what ``from_pretrained(..., num_labels=n)`` does for a new head); ``id2label``
    keys read from JSON are turned back into ints. Unlike transformers, a missing
    ``label2id`` is derived from ``id2label``, a ``config.json`` that contradicts
    itself (``num_labels`` and an ``id2label`` of another size) is refused, and so
    are a non-positive ``num_labels`` and an unknown ``problem_type``.
    """

    model_type: ClassVar[str] = ""
    attribute_map: ClassVar[Mapping[str, str]] = {}
    #: ``{key: Config subclass}``: values that are configs of their own (see the module docstring).
    sub_configs: ClassVar[Mapping[str, type[Config]]] = {}

    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        num_labels = kwargs.pop("num_labels", None)
        for key, sub_class in self.sub_configs.items():
            kwargs[key] = self._sub_config(key, sub_class, kwargs.get(key))
        for key, value in kwargs.items():
            setattr(self, key, value)
        if self.id2label is None:
            self.num_labels = 2 if num_labels is None else num_labels
        else:
            self.id2label = self._int_keys(self.id2label)
            if num_labels is not None and num_labels != len(self.id2label):
                self.num_labels = num_labels
            elif self.label2id is None:
                self.label2id = {label: i for i, label in self.id2label.items()}
        self.check_labels()

    @property
    def num_labels(self) -> int:
        """The number of labels a classification head outputs: ``len(id2label)``."""
        return len(self.id2label) if self.id2label is not None else 2

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{type(self).__name__}: num_labels must be a positive integer, found {value!r}",
                hint="give the number of classes the head should predict (1 for regression)",
            )
        if self.id2label is None or len(self.id2label) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}
            self.label2id = {label: i for i, label in self.id2label.items()}

    def check_labels(self) -> None:
        """Raise :class:`ConfigError` for a ``problem_type`` the classification losses cannot use."""
        name = type(self).__name__
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(
                f"{name}: problem_type {self.problem_type!r} is not one of {list(PROBLEM_TYPES)}",
                hint="set problem_type to one of those, or leave it null to infer it from the labels",
            )
        if self.problem_type == "single_label_classification" and self.num_labels == 1:
            raise ConfigError(
                f"{name}: problem_type 'single_label_classification' needs num_labels > 1, found 1",
                hint="use num_labels=2 for binary classification, or problem_type 'regression'",
            )

    def _sub_config(self, key: str, sub_class: type[Config], value: Any) -> Config:
        if isinstance(value, sub_class):
            return value
        if value is None:
            return sub_class()
        if isinstance(value, Mapping):
            return sub_class.from_dict(value)
        raise ConfigError(
            f"{type(self).__name__}: {key} must be an object of {sub_class.__name__} values, found {value!r}",
            hint=f"write {key} in config.json as a JSON object (or leave it out for the defaults)",
        )

    def _int_keys(self, id2label: Mapping[Any, str]) -> dict[int, str]:
        try:
            return {int(key): label for key, label in dict(id2label).items()}
        except (TypeError, ValueError):
            raise ConfigError(
                f"{type(self).__name__}: id2label must map integer ids to label names, found {id2label!r}",
                hint='write it as in config.json: {"0": "NEGATIVE", "1": "POSITIVE"}',
            ) from None

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
                if key.startswith("_") or key in ("model_type", "attribute_map", "sub_configs"):
                    continue
                if callable(value) or isinstance(value, (classmethod, staticmethod, property)):
                    continue
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides: Any) -> Config:
        """Build from a ``config.json`` dict; code-naming keys are dropped."""
        values = {k: v for k, v in data.items() if k not in CODE_KEYS and k != "model_type"}
        num_labels, id2label = values.get("num_labels"), values.get("id2label")
        if num_labels is not None and isinstance(id2label, Mapping) and num_labels != len(id2label):
            raise ConfigError(
                f"{cls.__name__}: num_labels={num_labels} disagrees with id2label, which names {len(id2label)} labels",
                hint="drop num_labels or make id2label list exactly num_labels labels",
            )
        values.update(overrides)
        return cls(**copy.deepcopy(values))

    @classmethod
    def from_json_file(cls, path: str | Path) -> Config:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        """Defaults merged with instance values, plus ``model_type``; JSON-ready."""
        out = {k: copy.deepcopy(v) for k, v in self.defaults().items()}
        out.update(copy.deepcopy({k: v for k, v in vars(self).items() if k not in RUNTIME_KEYS}))
        for key in self.sub_configs:
            out[key] = getattr(self, key).to_dict()
        if self.model_type:
            out["model_type"] = self.model_type
        return out

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __contains__(self, key: str) -> bool:
        return hasattr(self, key)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        body = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
        return f"{type(self).__name__} {body}"
