"""``factory.build(task, name)``: a resolution turned into a ready object.

Native registrations are built here (config class from the checkpoint's dict,
model constructed with parameters on the meta device, safetensors loaded
in place, tied, cast, eval); ``builder: transformers`` registrations are
handed to :mod:`factory.build.transformers_builder`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.build.resolve import Resolution, explain, resolve, task_kind
from factory.build.targets import import_target
from factory.errors import CheckpointError, ConfigError, FactoryError
from factory.models.configuration import CODE_KEYS
from factory.registry.table import Registration, Table

__all__ = ["build", "build_from_resolution", "explain"]


class FactoryDeprecationWarning(FutureWarning):
    """A deprecated registration or checkpoint was used."""


def build(
    task: str,
    name: str | Path,
    *,
    revision: str | None = None,
    dtype: Any = None,
    device: Any = None,
    weights: bool = True,
    config_overrides: Mapping[str, Any] | None = None,
    strict: bool = True,
    local_files_only: bool | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    allow_pickle: bool = False,
    registry: Table | None = None,
) -> Any:
    """Build ``task`` (a model task or a component) from ``name``.

    ``name`` is a named checkpoint, a local directory (or config.json path), a
    registered architecture (fresh model from its default config) or a Hub
    repo id, tried in that order. ``dtype``: the argument, else the config's
    ``torch_dtype``/``dtype``, else float32; ``"auto"`` means the config's.
    ``weights=False`` gives a freshly initialised model of the checkpoint's config.
    """
    from factory.registry.loader import registry as default_registry

    table = registry if registry is not None else default_registry()
    res = resolve(
        table,
        task,
        name,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
        allow_pickle=allow_pickle,
    )
    return build_from_resolution(
        table,
        res,
        dtype=dtype,
        device=device,
        weights=weights,
        config_overrides=config_overrides,
        strict=strict,
        allow_pickle=allow_pickle,
    )


def build_from_resolution(
    table: Table,
    res: Resolution,
    *,
    dtype: Any = None,
    device: Any = None,
    weights: bool = True,
    config_overrides: Mapping[str, Any] | None = None,
    strict: bool = True,
    allow_pickle: bool = False,
) -> Any:
    """Build the object a :class:`Resolution` describes."""
    reg = res.registration
    _warn_deprecated(reg, res)
    if res.checkpoint is not None and res.checkpoint.deprecated:
        dep = res.checkpoint.deprecated
        warnings.warn(
            f"named checkpoint {res.checkpoint.name!r} is deprecated since {dep.since}"
            + (f"; use {dep.replacement!r}" if dep.replacement else ""),
            FactoryDeprecationWarning,
            stacklevel=3,
        )
    if config_overrides is not None and not isinstance(config_overrides, Mapping):
        raise ConfigError(
            f"config_overrides must be a mapping of config keys to values, found {type(config_overrides).__name__}",
            hint="e.g. config_overrides={'num_labels': 3}",
        )
    overrides = dict(config_overrides or {})
    kind = task_kind(table, res.task)
    if reg.builder == "transformers":
        from factory.build import transformers_builder as hf_builder

        target = hf_builder.import_target(reg)
        obj = _build_transformers(
            table,
            target,
            res,
            kind,
            dtype=dtype,
            device=device,
            weights=weights,
            overrides=overrides,
            strict=strict,
            allow_pickle=allow_pickle,
        )
    elif kind == "config":
        obj = make_config(import_target(reg), res.config, overrides, res)
    elif kind == "component":
        obj = _build_component(import_target(reg), res)
    else:
        obj = _build_native_model(
            table,
            import_target(reg),
            res,
            dtype=dtype,
            device=device,
            weights=weights,
            overrides=overrides,
            strict=strict,
            allow_pickle=allow_pickle,
        )
    _attach_provenance(obj, res)
    return obj


def _warn_deprecated(reg: Registration, res: Resolution) -> None:
    if reg.deprecated is None:
        return
    dep = reg.deprecated
    warnings.warn(
        f"{reg.task} / {reg.architecture} -> {reg.target} is deprecated since {dep.since}"
        + (f" and will be removed in {dep.remove_in}" if dep.remove_in else "")
        + (f"; use {dep.replacement}" if dep.replacement else "")
        + f" ({reg.provenance.file}:{reg.provenance.line})",
        FactoryDeprecationWarning,
        stacklevel=4,
    )


def make_config(config_cls: Any, data: Mapping[str, Any], overrides: Mapping[str, Any], res: Resolution) -> Any:
    """Build a registered config class from a ``config.json`` dict plus overrides."""
    from_dict = getattr(config_cls, "from_dict", None)
    try:
        if callable(from_dict):
            return from_dict(dict(data), **overrides)
        clean = {k: v for k, v in data.items() if k not in CODE_KEYS and k != "model_type"}
        return config_cls(**{**clean, **overrides})
    except FactoryError:
        raise
    except Exception as exc:  # a config class rejecting the values
        raise ConfigError(
            f"cannot build {config_cls.__qualname__} from config.json: {type(exc).__name__}: {exc}",
            file=res.config_file,
            hint="check the config values against the architecture",
        ) from None


def _config_for(table: Table, res: Resolution, overrides: Mapping[str, Any]) -> Any:
    if res.config_registration is None:
        raise ConfigError(
            f"architecture {res.architecture!r} registers no config class",
            file=res.registration.provenance.file,
            line=res.registration.provenance.line,
            hint=f"add `config: package.module:ConfigClass` to the architecture file of {res.architecture!r}",
        )
    config_cls = import_target(res.config_registration)
    return make_config(config_cls, res.config, overrides, res)


def resolve_dtype(dtype: Any, config: Any) -> Any:
    """The torch dtype to build in: the argument, else the config's torch_dtype/dtype, else float32."""
    import torch

    from factory.build.placement import resolve_dtype as to_dtype

    chosen = to_dtype(dtype)
    if chosen is None:
        for key in ("torch_dtype", "dtype"):
            value = config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)
            if value and to_dtype(value) is not None:
                return to_dtype(value)
        return torch.float32
    return chosen


def _build_native_model(
    table: Table,
    model_cls: Any,
    res: Resolution,
    *,
    dtype: Any,
    device: Any,
    weights: bool,
    overrides: Mapping[str, Any],
    strict: bool,
    allow_pickle: bool,
) -> Any:
    from factory.build import meta
    from factory.build import weights as W

    config = _config_for(table, res, overrides)
    torch_dtype = resolve_dtype(dtype, config)
    if res.directory is None or not weights:
        return _with_generation_config(_fresh(model_cls, config, res, torch_dtype, device).eval(), res)
    files = W.find_weight_files(res.directory, allow_pickle=allow_pickle)
    model = meta.empty_model(model_cls, config, dtype=torch_dtype)
    report = W.load_weights(model, files, strict=strict, dtype=torch_dtype, device=device, allow_pickle=allow_pickle)
    model.eval()
    model.factory_load_report = report  # type: ignore[assignment]  # an attribute, not a submodule
    return _with_generation_config(model, res)


def _with_generation_config(model: Any, res: Resolution) -> Any:
    """Attach the checkpoint's ``generation_config.json`` (a dict) as ``model.generation_config``, where the
    native ``generate`` reads its defaults (``factory.models.generation.generation_defaults``)."""
    from factory.models.generation import read_generation_config

    path = res.directory / "generation_config.json" if res.directory is not None else None
    if path is not None and path.exists() and callable(getattr(model, "generate", None)):
        model.generation_config = read_generation_config(path)
    return model


def _fresh(model_cls: Any, config: Any, res: Resolution, dtype: Any, device: Any) -> Any:
    from factory.build import meta

    try:
        return meta.fresh_model(model_cls, config, dtype=dtype, device=device)
    except FactoryError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"constructing {model_cls.__qualname__} from its config failed: {type(exc).__name__}: {exc}",
            file=res.config_file or res.registration.provenance.file,
            hint="check config values / config_overrides",
        ) from None


def _build_component(component_cls: Any, res: Resolution) -> Any:
    if res.directory is None:
        raise CheckpointError(
            f"a {res.task} needs files: {res.name!r} is an architecture name, not a checkpoint",
            hint="pass a checkpoint directory, named checkpoint or Hub repo id",
        )
    for method in ("from_directory", "from_pretrained"):
        factory_method = getattr(component_cls, method, None)
        if callable(factory_method):
            return factory_method(res.directory)
    return component_cls(res.directory)


def _build_transformers(table: Table, target: Any, res: Resolution, kind: str, **options: Any) -> Any:
    from factory.build import transformers_builder as hf_builder

    if kind == "config":
        return hf_builder.build_config(target, res.directory, options["overrides"])
    if kind == "component":
        return hf_builder.build_component(target, res.directory)
    return hf_builder.build_model(
        target,
        res.directory,
        weights=options["weights"],
        dtype=options["dtype"],
        device=options["device"],
        config_overrides=options["overrides"],
        allow_pickle=options["allow_pickle"],
        strict=options["strict"],
        config_cls=hf_builder.pack_config(table, res.architecture),
    )


def _attach_provenance(obj: Any, res: Resolution) -> None:
    try:
        obj.factory_provenance = res.provenance()
    except (AttributeError, TypeError):  # slotted or frozen objects carry none
        pass
