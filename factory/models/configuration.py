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

Values are untrusted (they come from a checkpoint) and are checked when a config is
built, before any model sees them: each declared field's type (from the class
annotations: ``int``, ``float``, ``bool``, ``str``, ``X | None``, ``list[int]``, ...),
floats finite, and the ranges of :data:`LIMITS` (sizes, counts, probabilities) plus
a family's own ``limits``. :func:`check_size` then bounds the model's estimated
parameter count (:data:`MAX_PARAMETERS`) before anything is constructed. A bad value
is a :class:`ConfigError` naming the key as written in ``config.json``.
A config made of others (CLIP's ``text_config`` and ``vision_config``) names them in
``sub_configs``: ``{key: Config subclass}``. The key's value (a dict from ``config.json``,
an instance, or nothing for the defaults) becomes an instance of that class, and
``to_dict`` writes it back as a dict.
"""

from __future__ import annotations

import copy
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Union

from factory.errors import ConfigError
from factory.untrusted import read_json

#: Keys that name code in transformers configs; never followed, never written back.
CODE_KEYS = ("auto_map", "custom_pipelines")
#: Attributes the factory attaches at build time; not part of the config.
RUNTIME_KEYS = ("factory_provenance",)
#: The classification losses a ``problem_type`` can name (transformers' names).
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

Limit = tuple[float, float]  # inclusive (low, high)
_SIZE = (1, 1 << 17)  # widths: the largest real models are ~25k wide
_LAYERS = (0, 1024)  # a count, not a size: 0 is a model without layers; the deepest real ones have ~130
_HEADS = (1, 4096)
_FFN = (1, 1 << 20)
_POSITIONS = (1, 1 << 24)
_PROBABILITY = (0.0, 1.0)
MAX_LABELS = 1 << 18

#: Ranges of the values transformers-style configs share, keyed by their names in config.json.
#: ``None`` is accepted for these keys here (it means "derive it"); the class annotations decide
#: whether a family accepts it. A family adds its own names with a ``limits`` class attribute.
LIMITS: Mapping[str, Limit] = {
    "vocab_size": (1, 1 << 24),
    "type_vocab_size": (1, 1 << 16),
    "num_labels": (1, MAX_LABELS),
    **dict.fromkeys(("hidden_size", "n_embd", "d_model", "embed_dim", "head_dim", "kv_channels"), _SIZE),
    **dict.fromkeys(("intermediate_size", "n_inner", "ffn_dim", "d_ff", "encoder_ffn_dim", "decoder_ffn_dim"), _FFN),
    **dict.fromkeys(
        ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers", "decoder_layers"), _LAYERS
    ),
    **dict.fromkeys(
        (
            "num_attention_heads",
            "n_head",
            "num_heads",
            "num_key_value_heads",
            "encoder_attention_heads",
            "decoder_attention_heads",
        ),
        _HEADS,
    ),
    **dict.fromkeys(("max_position_embeddings", "n_positions", "n_ctx"), _POSITIONS),
    "sliding_window": (0, _POSITIONS[1]),  # 0: no window (what transformers writes for Qwen2-MoE without one)
    **dict.fromkeys(("num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok"), (0, 1 << 16)),
    **dict.fromkeys(
        (
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "classifier_dropout",
            "resid_pdrop",
            "embd_pdrop",
            "attn_pdrop",
            "summary_first_dropout",
            "attention_dropout",
            "hidden_dropout",
            "activation_dropout",
            "dropout",
        ),
        _PROBABILITY,
    ),
    **dict.fromkeys(("layer_norm_eps", "layer_norm_epsilon", "rms_norm_eps"), _PROBABILITY),
    "initializer_range": (0.0, 1e3),
    "rope_theta": (1e-6, 1e12),
}
#: The budget on a model's estimated parameter count, checked before it is constructed:
#: ten times the largest published models (~1.6e12), far beyond what any machine holds.
MAX_PARAMETERS = 10**13


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
    #: The family's own ranges (names as in :data:`LIMITS`), merged over the class hierarchy.
    limits: ClassVar[Mapping[str, Limit]] = {}
    #: ``{key: Config subclass}``: values that are configs of their own (see the module docstring).
    sub_configs: ClassVar[Mapping[str, type[Config]]] = {}

    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        kwargs = type(self).check_values(kwargs)
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
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LABELS:
            raise ConfigError(
                f"{type(self).__name__}: num_labels must be an integer from 1 to {MAX_LABELS}, found {value!r}",
                key="num_labels",
                hint="give the number of classes the head should predict (1 for regression)",
            )
        if self.id2label is None or len(self.id2label) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}
            self.label2id = {label: i for i, label in self.id2label.items()}

    @classmethod
    def value_limits(cls) -> dict[str, Limit]:
        """:data:`LIMITS` plus every ``limits`` of the class hierarchy, most-derived last."""
        out = dict(LIMITS)
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("limits", {}))
        return out

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """The annotated fields (class variables left out) and their types."""
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # an annotation naming something not importable at run time: limits still apply
            return {}
        return {k: v for k, v in hints.items() if typing.get_origin(v) is not ClassVar and not k.startswith("_")}

    @classmethod
    def check_values(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` checked against the field types and limits; integral floats of int fields become ints.

        Raises :class:`ConfigError` naming the key as given (``n_embd``, not ``hidden_size``).
        """
        return check_values(values, cls.field_types(), cls.value_limits(), cls.attribute_map, owner=cls.__name__)

    def estimated_parameters(self) -> int:
        """A rough upper estimate of the model's parameter count, from the config alone."""
        return estimate_parameters(self.get)

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
        if not isinstance(id2label, Mapping) or len(id2label) > MAX_LABELS:
            found = f"{len(id2label)} labels" if isinstance(id2label, Mapping) else type(id2label).__name__
            raise ConfigError(
                f"{type(self).__name__}: id2label must map integer ids to label names (at most {MAX_LABELS}), "
                f"found {found}",
                key="id2label",
                hint='write it as in config.json: {"0": "NEGATIVE", "1": "POSITIVE"}',
            )
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
        class_vars = {  # ClassVar annotations (model_type, attribute_map, limits, sub_configs...): not fields
            key
            for klass in cls.__mro__
            for key, annotation in vars(klass).get("__annotations__", {}).items()
            if "ClassVar" in str(annotation)
        }
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if key.startswith("_") or key in class_vars:
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
        """Build from a ``config.json`` file (read as untrusted: kind, size and depth checked)."""
        data = read_json(path, error=ConfigError, what="config.json")
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise err.located(path) from None

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
        import json

        body = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
        return f"{type(self).__name__} {body}"


# --- checking values ----------------------------------------------------------------
def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field annotation (unknown annotation types are not judged)."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is list or origin is list:
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and (not args or all(_conforms(v, args[0]) for v in value))
    if hint is dict or origin is dict:
        return isinstance(value, Mapping)
    return True


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    if hint is list or origin is list:
        args = typing.get_args(hint)
        return f"a list of {_type_name(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if hint is dict or origin is dict:
        return "an object"
    return getattr(hint, "__name__", str(hint))


def _allows(hint: Any, kind: type) -> bool:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_allows(arg, kind) for arg in typing.get_args(hint))
    return hint is kind or hint is Any


def check_values(
    values: Mapping[str, Any],
    field_types: Mapping[str, Any] | None = None,
    limits: Mapping[str, Limit] = LIMITS,
    attribute_map: Mapping[str, str] | None = None,
    *,
    owner: str = "config",
) -> dict[str, Any]:
    """Check untrusted config ``values``: declared types, finite floats, ranges; returns them normalised.

    ``field_types`` (canonical name -> annotation) and ``limits`` are looked up under the key as
    given and under its canonical name (``attribute_map``). Without ``field_types`` (a
    transformers config) only the limits apply. Raises :class:`ConfigError` naming the key.
    """
    field_types = field_types or {}
    attribute_map = attribute_map or {}
    out = dict(values)
    for key, value in values.items():
        canonical = attribute_map.get(key, key)
        hint = field_types.get(canonical, field_types.get(key))
        limit = limits.get(key, limits.get(canonical))
        wants_int = _allows(hint, int) if hint is not None else limit is not None and isinstance(limit[0], int)
        if wants_int and isinstance(value, float) and value.is_integer():
            value = out[key] = int(value)  # JSON does not tell 2048 from 2048.0
        if hint is not None and not _conforms(value, hint):
            raise _bad_value(owner, key, f"must be {_type_name(hint)}", value)
        if (hint is not None or limit is not None) and isinstance(value, float) and not math.isfinite(value):
            raise _bad_value(owner, key, "must be a finite number", value)  # keys nobody declares are not judged
        if limit is None or value is None:
            continue
        low, high = limit
        integral = isinstance(low, int) and isinstance(high, int)
        kind = "an integer" if integral else "a number"
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric:
            if hint is None or not (_allows(hint, int) or _allows(hint, float)):
                continue  # a type the family (or the transformers class) declares and judges itself
            raise _bad_value(owner, key, f"must be {kind} from {low} to {high}", value)
        if (integral and not isinstance(value, int)) or not low <= value <= high:
            raise _bad_value(owner, key, f"must be {kind} from {low} to {high}", value)
    return out


def _bad_value(owner: str, key: str, rule: str, value: Any) -> ConfigError:
    return ConfigError(
        f"{owner}: {key} {rule}, found {_describe(value)}",
        key=key,
        hint=f"fix {key} in config.json (or in config_overrides)",
    )


# --- the size budget -------------------------------------------------------------------
def _first_number(get: Callable[[str], Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return int(value)
    return 0


def estimate_parameters(get: Callable[[str], Any]) -> int:
    """A rough upper estimate of a transformer's parameter count from its config values.

    ``get(name)`` returns a config value or ``None`` (``config.get``, ``dict.get``, or
    ``lambda k: getattr(cfg, k, None)``). Embeddings and an untied head, per layer four
    attention and three MLP projections (times the experts, for mixtures of experts), and
    learned position embeddings. Cheap: it reads a few numbers and constructs nothing.
    """
    vocab = _first_number(get, ("vocab_size",))
    width = _first_number(get, ("hidden_size", "n_embd", "d_model", "embed_dim"))
    layers = _first_number(get, ("num_hidden_layers", "n_layer", "n_layers", "num_layers")) or (
        _first_number(get, ("encoder_layers",)) + _first_number(get, ("decoder_layers",))
    )
    ffn = _first_number(get, ("intermediate_size", "n_inner", "ffn_dim", "d_ff", "encoder_ffn_dim")) or 4 * width
    experts = max(1, _first_number(get, ("num_local_experts", "num_experts", "n_routed_experts")))
    positions = _first_number(get, ("max_position_embeddings", "n_positions"))
    return 2 * vocab * width + positions * width + layers * (4 * width * width + 3 * width * ffn * experts)


def check_size(config: Any, *, file: str | Path | None = None, max_parameters: int = MAX_PARAMETERS) -> int:
    """Refuse a config whose estimated model exceeds ``max_parameters``, before anything is built.

    ``config`` is a :class:`Config`, a transformers config or a mapping. Returns the estimate.
    """
    if isinstance(config, Mapping):
        get: Callable[[str], Any] = config.get
    elif isinstance(config, Config):
        return _check_estimate(config.estimated_parameters(), config, file, max_parameters)
    else:

        def get(name: str) -> Any:
            return getattr(config, name, None)

    return _check_estimate(estimate_parameters(get), config, file, max_parameters)


def _check_estimate(estimate: int, config: Any, file: str | Path | None, max_parameters: int) -> int:
    if estimate > max_parameters:
        name = type(config).__name__
        raise ConfigError(
            f"{name}: the model this config describes has about {estimate:.3g} parameters, more than the "
            f"budget of {max_parameters:,}: refused before constructing anything",
            file=file,
            hint="check vocab_size, hidden_size, intermediate_size and num_hidden_layers in config.json",
            estimate=estimate,
        )
    return estimate
