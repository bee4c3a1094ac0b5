"""``factory.build(task, name)``: a resolution turned into a ready object.

Native registrations are built here (config class from the checkpoint's dict,
model constructed with parameters on the meta device, safetensors loaded
in place, tied, cast, eval); ``builder: transformers`` registrations are
handed to :mod:`factory.build.transformers_builder`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.build import records
from factory.build.resolve import Resolution, explain, resolve, task_kind
from factory.build.targets import import_target
from factory.errors import CheckpointError, ConfigError, FactoryError, ParallelError
from factory.models.configuration import CODE_KEYS, check_size
from factory.registry.table import Registration, Table

if TYPE_CHECKING:  # pragma: no cover
    from factory.build.plan import ShardPlan

__all__ = ["build", "build_from_resolution", "explain", "plan"]


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
    tp_size: int | None = None,
    mesh: Any = None,
) -> Any:
    """Build ``task`` (a model task or a component) from ``name``.

    ``name`` is a named checkpoint, a local directory (or config.json path), a
    registered architecture (fresh model from its default config) or a Hub
    repo id, tried in that order. ``dtype``: the argument, else the config's
    ``torch_dtype``/``dtype``, else float32; ``"auto"`` means the config's.
    ``weights=False`` gives a freshly initialised model of the checkpoint's config.

    Under ``torchrun``: ``tp_size=N`` splits the model over a 1-D mesh of the initialised
    default process group with the architecture's parallel plan; ``mesh=DeviceMesh`` over that
    mesh (1-D: tensor parallel; 2-D named ``("dp_shard", "tp")``: FSDP2 over ``dp_shard`` with
    tensor parallel inside). Each rank reads only its own slices of the checkpoint.
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
        tp_size=tp_size,
        mesh=mesh,
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
    tp_size: int | None = None,
    mesh: Any = None,
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
    parallel = tp_size is not None or mesh is not None
    if parallel and kind != "model":
        raise ParallelError(
            f"tp_size/mesh split models; {res.task!r} is a {kind}",
            hint=f"build the {res.task} without tp_size and mesh (every rank builds its own)",
        )
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
            tp_size=tp_size,
            mesh=mesh,
            plan=table.parallel_plan(reg),
        )
    elif kind == "config":
        obj = make_config(import_target(reg), res.config, overrides, res)
    elif kind == "component":
        obj = _build_component(import_target(reg), res, overrides)
    elif parallel:
        from factory.build import parallel as PAR

        config = _config_for(table, res, overrides)
        obj = PAR.build_parallel(
            import_target(reg),
            config,
            PAR.require_checkpoint(res.directory, weights, repr(res.name)),
            plan=table.parallel_plan(reg),
            task=res.task,
            target=reg.target,
            dtype=resolve_dtype(dtype, config, res.config, res.config_file),
            tp_size=tp_size,
            mesh=mesh,
            device=device,
            strict=strict,
        )
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


def make_config(config_cls: Any, data: Mapping[str, Any], overrides: Mapping[str, Any], res: Resolution | None) -> Any:
    """Build a registered config class from a ``config.json`` dict plus overrides."""
    from_dict = getattr(config_cls, "from_dict", None)
    try:
        if callable(from_dict):
            return from_dict(dict(data), **overrides)
        clean = {k: v for k, v in data.items() if k not in CODE_KEYS and k != "model_type"}
        return config_cls(**{**records.without_metadata(config_cls, clean), **overrides})
    except FactoryError as err:
        raise err.located(res.config_file or res.registration.provenance.file) if res is not None else err from None
    except Exception as exc:  # a config class rejecting the values
        raise ConfigError(
            f"cannot build {config_cls.__qualname__} from config.json: {type(exc).__name__}: {exc}",
            file=res.config_file if res is not None else None,
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


def resolve_dtype(
    dtype: Any, config: Any, data: Mapping[str, Any] | None = None, file: str | Path | None = None
) -> Any:
    """The torch dtype to build in: the argument, else the config's torch_dtype/dtype (or ``data``'s, the
    config.json dict, for a config class that keeps neither), else float32.

    A dtype named by the config that cannot be built in is a :class:`ConfigError` naming ``file`` and the key.
    """
    import torch

    from factory.build.placement import resolve_dtype as to_dtype

    chosen = to_dtype(dtype)
    if chosen is None:
        for source, key in [(s, k) for s in (config, data or {}) for k in ("torch_dtype", "dtype")]:
            value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
            if not value:
                continue
            try:
                found = to_dtype(value)
            except ConfigError as err:
                raise ConfigError(
                    f"config.json: {key} {value!r} is not a dtype a model can be built in ({err.message})",
                    file=file,
                    key=key,
                    hint=f"fix {key} in config.json (float32, float16, bfloat16), or pass dtype=... to override it",
                ) from None
            if found is not None:
                return found
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
    from factory.build.placement import resolve_device

    config = _config_for(table, res, overrides)
    torch_dtype = resolve_dtype(dtype, config, res.config, res.config_file)
    check_size(config, file=res.config_file or res.registration.provenance.file)
    if res.directory is None or not weights:
        fresh = _constructed(
            lambda: meta.fresh_model(model_cls, config, dtype=torch_dtype, device=device), model_cls, res
        )
        return records.record(fresh, config, res.directory)
    files = W.find_weight_files(res.directory, allow_pickle=allow_pickle)
    model = _constructed(lambda: meta.empty_model(model_cls, config, dtype=torch_dtype), model_cls, res)
    meta.check_fits(
        meta.model_bytes(model, torch_dtype),
        resolve_device(device),
        what=f"{model_cls.__qualname__} from {res.directory} in {str(torch_dtype).removeprefix('torch.')}",
    )
    try:
        report = W.load_weights(
            model, files, strict=strict, dtype=torch_dtype, device=device, allow_pickle=allow_pickle
        )
    except FactoryError:
        raise
    except Exception as exc:  # torch refusing a tensor: report it against the checkpoint
        raise CheckpointError(
            f"loading the weights into {model_cls.__qualname__} failed: {type(exc).__name__}: {exc}",
            file=files[0] if len(files) == 1 else res.directory,
            hint="check that the checkpoint's config.json and weights belong together; download it again",
        ) from None
    model.eval()
    model.factory_load_report = report  # an attribute, not a submodule
    return records.record(model, config, res.directory)


def _constructed(construct: Callable[[], Any], model_cls: Any, res: Resolution) -> Any:
    """``construct()``, with anything but a FactoryError reported against the config it came from."""
    try:
        return construct().eval()
    except FactoryError as err:
        raise err.located(res.config_file or res.registration.provenance.file) from None
    except Exception as exc:
        raise ConfigError(
            f"constructing {model_cls.__qualname__} from its config failed: {type(exc).__name__}: {exc}",
            file=res.config_file or res.registration.provenance.file,
            hint="check config values / config_overrides",
        ) from None


def _build_component(component_cls: Any, res: Resolution, overrides: Mapping[str, Any]) -> Any:
    """``Class.from_directory(path, **overrides)`` (or ``from_pretrained``); overrides replace its config keys."""
    if res.directory is None:
        raise CheckpointError(
            f"a {res.task} needs files: {res.name!r} is an architecture name, not a checkpoint",
            hint="pass a checkpoint directory, named checkpoint or Hub repo id",
        )
    construct = component_cls
    for method in ("from_directory", "from_pretrained"):
        factory_method = getattr(component_cls, method, None)
        if callable(factory_method):
            construct = factory_method
            break
    try:
        return construct(res.directory, **overrides)
    except FactoryError as err:
        raise err.located(res.directory) from None
    except Exception as exc:  # a component class failing on the checkpoint's files
        raise CheckpointError(
            f"building the {res.task} {getattr(component_cls, '__qualname__', component_cls)} from the checkpoint "
            f"failed: {type(exc).__name__}: {exc}",
            file=res.directory,
            hint="check the checkpoint's preprocessing files (tokenizer.json, tokenizer_config.json, ...)",
        ) from None


def _build_transformers(table: Table, target: Any, res: Resolution, kind: str, **options: Any) -> Any:
    from factory.build import transformers_builder as hf_builder

    if kind == "config":
        return hf_builder.build_config(target, res.directory, options["overrides"])
    if kind == "component":
        return hf_builder.build_component(target, res.directory, options["overrides"])
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
        tp_size=options["tp_size"],
        mesh=options["mesh"],
        plan=options["plan"],
    )


def plan(
    task: str,
    name: str | Path,
    *,
    tp_size: int,
    dtype: Any = None,
    revision: str | None = None,
    weights: bool = True,
    config_overrides: Mapping[str, Any] | None = None,
    local_files_only: bool | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    registry: Table | None = None,
) -> ShardPlan:
    """What ``build(task, name, tp_size=tp_size)`` will do on each rank, without building it.

    Without ``torch.distributed`` and without reading a tensor (safetensors headers only): every
    tensor's placement, the bytes each rank reads and holds, what is replicated, and the problems
    (divisibility, styles the builder cannot apply) that would make the build refuse, each citing
    the parallel plan's ``file:line``. A Hub repo id is downloaded as ``build`` would download it.
    """
    from factory.build import meta
    from factory.build import plan as P
    from factory.build import weights as W
    from factory.paths import display_path
    from factory.registry.loader import registry as default_registry

    table = registry if registry is not None else default_registry()
    res = resolve(
        table, task, name, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only
    )
    kind = task_kind(table, res.task)
    if kind != "model":
        raise ParallelError(f"tensor parallelism splits models; {res.task!r} is a {kind}")
    reg = res.registration
    overrides = dict(config_overrides or {})
    if reg.builder == "transformers":
        from factory.build import transformers_builder as hf_builder

        model, config, torch_dtype = hf_builder.meta_model(
            hf_builder.import_target(reg),
            res.directory,
            dtype=dtype,
            config_overrides=overrides,
            config_cls=hf_builder.pack_config(table, res.architecture),
        )
    else:
        config = _config_for(table, res, overrides)
        torch_dtype = resolve_dtype(dtype, config)
        model = meta.empty_model(import_target(reg), config, dtype=torch_dtype)
        meta.apply_ties(model, meta.tie_map(model))
    checkpoint = None
    if res.directory is not None and weights:
        files = W.find_weight_files(res.directory)
        checkpoint = W.match_checkpoint(model, files, strict=True)
    sp = P.compute(
        model,
        table.parallel_plan(reg),
        config,
        tp_size,
        task=res.task,
        target=reg.target,
        builder=reg.builder,
        dtype=torch_dtype,
        checkpoint=checkpoint,
    )
    if checkpoint is not None and res.directory is not None:
        sp.checkpoint = display_path(res.directory)
    return sp


def _attach_provenance(obj: Any, res: Resolution) -> None:
    try:
        obj.factory_provenance = res.provenance()
    except (AttributeError, TypeError):  # slotted or frozen objects carry none
        pass
