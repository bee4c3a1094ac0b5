"""The Auto classes, generated from the task table: one class per task's ``auto_class``.

Each class serves one task. Model classes (``AutoModel``, ``AutoModelForCausalLM``, ...) have
``from_pretrained(name, **options)`` (``factory.build(task, name, ...)``), ``from_config(config)``
(a fresh model) and ``register(config_class, model_class)``; ``AutoConfig`` has ``from_pretrained``,
``for_model(model_type, **values)`` and ``register(model_type, config_class)``; the components
(``AutoTokenizer``, ``AutoImageProcessor``, ...) have ``from_pretrained`` and
``register(config_class, component_class)``. Keyword arguments follow transformers' names
(:mod:`factory.auto.options`).
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar

from factory.auto import options, registering
from factory.build.builder import build, build_from_resolution
from factory.build.resolve import Resolution, Step
from factory.errors import UnsupportedOptionError
from factory.registry import loader
from factory.registry.table import Table

#: The transformers keyword names of a component's class in ``register()``, preferred first.
COMPONENT_KEYWORDS = (
    "tokenizer_class",
    "fast_tokenizer_class",
    "slow_tokenizer_class",
    "image_processor_class",
    "fast_image_processor_class",
    "slow_image_processor_class",
    "image_processor_classes",
    "feature_extractor_class",
    "processor_class",
    "video_processor_class",
)


def _no_positional(cls: type, args: tuple[Any, ...], method: str = "from_pretrained") -> None:
    if args:
        raise UnsupportedOptionError(
            f"{cls.__name__}.{method} takes the name and keyword arguments only, got {len(args)} positional "
            "argument(s) more",
            hint="factory constructs ModelClass(config): pass settings as keyword arguments (config overrides)",
        )


def _fresh(table: Table, task: str, architecture: str, how: str) -> Resolution:
    """The resolution of a fresh object of ``architecture`` for ``task`` (no files), whatever else has that name."""
    reg = table.resolve(task, architecture)
    return Resolution(
        task=table.canonical_task(task),
        name=architecture,
        kind="architecture",
        directory=None,
        config={},
        architecture=architecture,
        registration=reg,
        config_registration=table.registrations.get(("config", architecture)),
        digest=table.digest,
        steps=[Step("name", how), Step("registration", f"{reg.task} / {architecture} -> {reg.target}")],
    )


def _check_loose(config: Any, keys: list[str], built: Any) -> dict[str, Any]:
    """Warn about loose keyword arguments that became config values nothing declares (see ``warn_unread``)."""
    if config is None or not keys:
        return {}
    directory = (getattr(built, "factory_provenance", None) or {}).get("directory")
    in_checkpoint: list[str] = []
    if directory:
        try:
            in_checkpoint = list(json.loads((Path(directory) / "config.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):  # it was read to build the object moments ago
            in_checkpoint = []
    return options.warn_unread(config, keys, in_checkpoint)


def _loading_info(model: Any) -> dict[str, list[Any]]:
    """transformers' ``output_loading_info`` dict, from factory's load report (empty lists: nothing left out)."""
    report = getattr(model, "factory_load_report", None)
    return {
        "missing_keys": list(getattr(report, "missing", ())),
        "unexpected_keys": list(getattr(report, "unexpected", ())),
        "mismatched_keys": list(getattr(report, "mismatched", ())),
        "error_msgs": [],
    }


class AutoClass:
    """Base of the generated Auto classes; each serves the task named by ``task``."""

    task: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        raise UnsupportedOptionError(
            f"{name} is not instantiated",
            hint=f"use {name}.from_pretrained(name)"
            + (" or .from_config(config)" if isinstance(self, AutoModelClass) else ""),
        )

    @classmethod
    def _options(cls, kwargs: dict[str, Any], name: Any = None) -> options.Options:
        return options.translate(kwargs, build, name=str(name) if name is not None else None)


class AutoModelClass(AutoClass):
    """An ``AutoModel...`` class: ``from_pretrained``, ``from_config``, ``register``."""

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike[str], *model_args: Any, **kwargs: Any
    ) -> Any:
        """``factory.build(task, name, **options)``, with transformers' keyword names (see :mod:`factory.auto.options`).

        As in transformers, tensors missing from the checkpoint (a new task head) are initialised and
        unexpected ones skipped, with a warning; ``strict=True`` makes them an error, as ``factory.build``'s
        default is.
        """
        _no_positional(cls, model_args)
        opts = cls._options(kwargs, pretrained_model_name_or_path)
        opts.build.setdefault("strict", False)
        model = build(
            cls.task, os.fspath(pretrained_model_name_or_path), **opts.build, config_overrides=opts.overrides or None
        )
        _check_loose(getattr(model, "config", None), opts.loose, model)
        if opts.generation_config is not None:
            model.generation_config = opts.generation_config
        return (model, _loading_info(model)) if opts.output_loading_info else model

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> Any:
        """A freshly initialised model of ``config`` (a config object), for this class's task."""
        opts = cls._options(kwargs)
        table: Table = opts.build.pop("registry", None) or loader.registry()
        unused = set(opts.build) - {"dtype", "device", "strict"}
        if unused:
            raise UnsupportedOptionError(
                f"{cls.__name__}.from_config does not take {', '.join(sorted(unused))}",
                hint="from_config builds from the config alone: pass dtype, device or config values",
            )
        settings = options.config_settings(config)
        model_type = getattr(config, "model_type", None) or config.to_dict().get("model_type")
        dispatch = table.dispatch({**settings, "model_type": model_type}, origin=f"{type(config).__qualname__} object")
        how = f"config object {type(config).__qualname__} (model_type {model_type!r}): fresh model"
        res = _fresh(table, cls.task, dispatch.architecture, how)
        return build_from_resolution(
            table, res, weights=False, config_overrides={**settings, **opts.overrides}, **opts.build
        )

    @classmethod
    def register(cls, config_class: Any, model_class: Any, exist_ok: bool = False) -> None:
        """Register ``model_class`` for this task of the architecture ``config_class`` is registered under."""
        registering.register_class(
            cls.task, config_class, model_class, exist_ok=exist_ok, where=registering.caller(), check_config_class=True
        )


class AutoConfigClass(AutoClass):
    """``AutoConfig``: ``from_pretrained``, ``for_model``, ``register``."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """The config of a checkpoint (``factory.build("config", name)``); keyword arguments override its values."""
        opts = cls._options(kwargs, pretrained_model_name_or_path)
        config = build(
            cls.task, os.fspath(pretrained_model_name_or_path), **opts.build, config_overrides=opts.overrides or None
        )
        unread = _check_loose(config, opts.loose, config)
        return (config, unread) if opts.return_unused_kwargs else config

    @classmethod
    def for_model(cls, model_type: str, *args: Any, **kwargs: Any) -> Any:
        """The default config of architecture ``model_type``, with ``kwargs`` set."""
        _no_positional(cls, args, "for_model")
        table = loader.registry()
        table.architecture(model_type)  # unknown: an error with suggestions
        res = _fresh(table, cls.task, model_type, f"architecture {model_type!r}: its default config")
        return build_from_resolution(table, res, config_overrides=kwargs)

    @classmethod
    def register(cls, model_type: str, config: Any, exist_ok: bool = False) -> None:
        """Register the config class ``config`` under the architecture key ``model_type``."""
        registering.register_config(model_type, config, exist_ok=exist_ok, where=registering.caller())


class AutoComponentClass(AutoClass):
    """``AutoTokenizer``, ``AutoImageProcessor``, ...: ``from_pretrained``, ``register``."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], *inputs: Any, **kwargs: Any) -> Any:
        """The component of a checkpoint; other keyword arguments override its config file's values."""
        _no_positional(cls, inputs)
        opts = cls._options(kwargs, pretrained_model_name_or_path)
        return build(
            cls.task, os.fspath(pretrained_model_name_or_path), **opts.build, config_overrides=opts.overrides or None
        )

    @classmethod
    def register(cls, config_class: Any, *classes: Any, exist_ok: bool = False, **named: Any) -> None:
        """Register a component class for the architecture ``config_class`` is registered under.

        Takes transformers' spellings: ``register(Config, Tok)``, ``register(Config, slow, fast)``,
        ``register(Config, tokenizer_class=...)``, ``fast_image_processor_class=...``, ... A fast class is
        preferred over a slow one (factory builds one class per component).
        """
        where = registering.caller()
        unknown = sorted(set(named) - set(COMPONENT_KEYWORDS))
        if unknown:
            raise UnsupportedOptionError(
                f"{cls.__name__}.register got unexpected keyword argument(s) {', '.join(unknown)}",
                hint=f"name the class positionally or with one of {', '.join(COMPONENT_KEYWORDS)}",
            )
        chosen = [c for c in classes if c is not None]
        for key in COMPONENT_KEYWORDS:
            value = named.get(key)
            if isinstance(value, dict):
                value = next(iter(value.values()), None)
            if value is not None:
                chosen = [value]
                break
        if not chosen:
            raise UnsupportedOptionError(
                f"{cls.__name__}.register needs the class to register", hint="pass it after the config class"
            )
        registering.register_class(
            cls.task, config_class, chosen[-1], exist_ok=exist_ok, where=where, check_config_class=False
        )


_lock = threading.Lock()
_generated: dict[str, type[AutoClass]] = {}


def generate(table: Table) -> dict[str, type[AutoClass]]:
    """One class per task of ``table`` that names an ``auto_class`` (the first task wins a shared name)."""
    out: dict[str, type[AutoClass]] = {}
    for task in table.tasks.values():
        name = task.auto_class
        if not name:
            continue
        if name in out:
            warnings.warn(
                f"tasks {out[name].task!r} and {task.name!r} both name auto_class {name!r}; "
                f"{name} serves {out[name].task!r} ({task.provenance.file}:{task.provenance.line})",
                stacklevel=2,
            )
            continue
        base: type[AutoClass] = (
            AutoConfigClass
            if task.name == "config"
            else AutoComponentClass
            if task.group == "component"
            else AutoModelClass
        )
        doc = f"``{name}``: the {task.name!r} task ({task.group}). {task.summary}\n\n{base.__doc__}"
        out[name] = type(
            name, (base,), {"task": task.name, "__doc__": doc, "__module__": "factory.auto", "__qualname__": name}
        )
    return out


def auto_classes() -> dict[str, type[AutoClass]]:
    """The Auto classes of the default table's tasks, generated once."""
    if not _generated:
        with _lock:
            if not _generated:
                _generated.update(generate(loader.base_registry()))
    return _generated


__all__ = ["AutoClass", "AutoComponentClass", "AutoConfigClass", "AutoModelClass", "auto_classes", "generate"]
