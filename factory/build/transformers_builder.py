"""Building ``builder: transformers`` registrations through transformers' own classes.

The transformers pack (``registry.d/packs/transformers``) registers classes of
transformers itself. They are built with their own ``from_pretrained`` /
``_from_config``, under factory's rules: files come from the directory the
factory resolved (``local_files_only``: transformers never reaches the
network here), safetensors only unless the caller allows pickle (and then
``torch.load(weights_only=True)``, transformers' default), ``trust_remote_code``
is always ``False``, strict weight checks, factory errors.

transformers (and torch) are imported when such an entry is built, never at
``import factory``.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.build import targets
from factory.build.hub import CONFIG_FILE, PREPROCESSING_FILES, read_index
from factory.errors import (
    CheckpointError,
    ConfigError,
    FactoryError,
    MissingDependencyError,
    PickleRefusedError,
    TargetImportError,
    TokenizerFileError,
    WeightsMismatchError,
)
from factory.models.configuration import check_size, check_values
from factory.untrusted import MAX_TOKENIZER_BYTES, check_file, read_json

__all__ = ["build_component", "build_config", "build_model", "import_target", "pack_config", "require_transformers"]

INSTALL_HINT = "pip install 'factory-registry[transformers]'"
#: transformers backend names -> what to pip install.
BACKEND_PACKAGES = {
    "vision": "Pillow",
    "torchvision": "torchvision",
    "torchaudio": "torchaudio",
    "torch": "torch",
    "sentencepiece": "sentencepiece",
    "tokenizers": "tokenizers",
    "timm": "timm",
    "scipy": "scipy",
    "librosa": "librosa",
    "av": "av",
    "pytesseract": "pytesseract",
    "g2p_en": "g2p-en",
    "mistral-common": "mistral-common",
    "num2words": "num2words",
    "protobuf": "protobuf",
}
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def require_transformers(what: str = "this entry", *, file: str | None = None, line: int | None = None) -> Any:
    """The transformers module, or :class:`MissingDependencyError` saying how to install it."""
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise MissingDependencyError(
            f"{what} is built by transformers, which is not installed",
            file=file,
            line=line,
            hint=f"{INSTALL_HINT}, or register a native model for it",
            package="transformers",
        ) from None


def _lazy_parent(module_name: str) -> tuple[Any, str] | None:
    """The closest transformers lazy package above ``module_name`` and the submodule key in it."""
    from transformers.utils.import_utils import _LazyModule

    parts = module_name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            package = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        if isinstance(package, _LazyModule):
            return package, ".".join(parts[i:])
    return None


def missing_backends(module_name: str, attr: str) -> list[str]:
    """Optional packages transformers says ``module_name:attr`` needs and are not installed."""
    found = _lazy_parent(module_name)
    if found is None:
        return []
    package, key = found
    missing = getattr(package, "_object_missing_backend", {})
    return list(missing.get(attr) or missing.get(key) or [])


def _pil_fallback(module_name: str, attr: str) -> Any:
    """``XImageProcessorPil`` when ``XImageProcessor`` lacks torchvision, as AutoImageProcessor falls back."""
    found = _lazy_parent(module_name)
    if found is None or not attr.endswith("ImageProcessor"):
        return None
    package, _ = found
    sibling = f"{attr}Pil"
    c2m = getattr(package, "_class_to_module", {})
    if sibling not in c2m or sibling in getattr(package, "_object_missing_backend", {}):
        return None
    module = importlib.import_module(f"{package.__name__}.{c2m[sibling]}")
    return getattr(module, sibling, None)


def import_target(reg: Any) -> Any:
    """Import the target of a ``builder: transformers`` registration.

    Raises :class:`MissingDependencyError` when transformers, or an optional
    package the class needs (Pillow, torchvision, torchaudio, ...), is missing;
    an image processor whose torchvision backend is missing falls back to its
    Pillow twin, with a warning, as ``AutoImageProcessor`` does.
    """
    where = {"file": reg.provenance.file, "line": reg.provenance.line}
    transformers = require_transformers(f"{reg.task} / {reg.architecture} ({reg.target})", **where)
    module_name, attr = reg.module, reg.attribute
    if module_name.startswith("transformers."):
        missing = missing_backends(module_name, attr)
        if missing:
            if "torchvision" in missing:
                twin = _pil_fallback(module_name, attr)
                if twin is not None:
                    warnings.warn(
                        f"{reg.target} needs torchvision, which is not installed; using {twin.__qualname__} "
                        "(Pillow backend) instead, as AutoImageProcessor does",
                        stacklevel=2,
                    )
                    return twin
            packages = [BACKEND_PACKAGES.get(b, b) for b in missing]
            hint = f"pip install {' '.join(packages)}"
            if "torchvision" in missing and attr.endswith("ImageProcessor"):
                hint += f" (Pillow alone gives its Pillow twin {attr}Pil)"
            raise MissingDependencyError(
                f"{reg.target} ({reg.task} / {reg.architecture}) needs {', '.join(packages)}, not installed",
                hint=hint,
                package=packages[0],
                **where,
            )
    try:
        return targets.import_target(reg)
    except TargetImportError as err:
        generated = generated_from(reg.provenance.file)
        if generated is not None and transformers.__version__ != generated:
            err.hint = (
                f"the transformers pack was generated from transformers=={generated}, "
                f"installed is {transformers.__version__}: install that version or regenerate the pack "
                "(`factory pack transformers`)"
            )
            err.args = (str(err),)
        raise


_GENERATED_FROM = re.compile(r'^generated_from:\s*"?transformers==([^"\s]+)"?\s*$', re.M)


def generated_from(file: str) -> str | None:
    """The transformers version a pack file says it was generated from (its ``generated_from``)."""
    try:
        with open(file, encoding="utf-8") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    found = _GENERATED_FROM.search(head)
    return found.group(1) if found else None


def pack_config(table: Any, architecture: str) -> Any:
    """The transformers config class registered for ``architecture``, imported; ``None`` if none.

    A native config winning over the pack's is not for transformers classes: then the
    pack entry it shadows is used. Pass the result as ``build_model(config_cls=...)``
    so that, like the Auto classes, a model registered for another model type
    (``internlm3`` -> ``LlamaForCausalLM``) gets the architecture's own config class.
    """
    reg = table.registrations.get(("config", architecture))
    if reg is not None and reg.builder != "transformers":
        reg = next((s for s in reg.shadows if s.builder == "transformers"), None)
    return import_target(reg) if reg is not None else None


# --- configs ----------------------------------------------------------------------
def _is_hf_config(cls: Any) -> bool:
    from transformers import PreTrainedConfig

    return isinstance(cls, type) and issubclass(cls, PreTrainedConfig)


def build_config(config_cls: Any, directory: Path | None, overrides: Mapping[str, Any] | None = None) -> Any:
    """The config: the class defaults (``directory is None``) or the directory's config.json, plus overrides.

    Overrides that are not attributes of the class are kept on the object, like
    unknown keys of a checkpoint's config.json.
    """
    require_transformers(f"config {getattr(config_cls, '__qualname__', config_cls)}")
    overrides = dict(overrides or {})
    file = Path(directory) / CONFIG_FILE if directory is not None else None
    raw = read_json(file, error=ConfigError, what=CONFIG_FILE) if file is not None else {}
    try:
        _check_config_values({**raw, **overrides})
    except ConfigError as err:
        raise err.located(file) from None
    try:
        if directory is None:
            return config_cls(**overrides)
        config, unused = config_cls.from_pretrained(
            str(directory), local_files_only=True, return_unused_kwargs=True, **overrides
        )
        for key, value in unused.items():
            setattr(config, key, value)
        return config
    except FactoryError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"transformers could not build {config_cls.__qualname__}"
            + (f" from {directory}" if directory else " from its defaults")
            + f": {type(exc).__name__}: {exc}",
            file=Path(directory) / "config.json" if directory else None,
            hint="check config.json and config_overrides against the architecture",
        ) from None


def _check_config_values(values: Mapping[str, Any]) -> None:
    """The shared ranges (``LIMITS``) on a config dict and its sub-configs (``text_config``, ...),
    before transformers builds anything from them (some config classes loop over ``num_hidden_layers``)."""
    check_values(values, owner=CONFIG_FILE)
    for key, value in values.items():
        if key.endswith("_config") and isinstance(value, Mapping):
            _check_config_values(value)


def check_checkpoint_files(directory: Path) -> None:
    """The files transformers will parse, checked as factory's readers check them: a regular file of a
    bounded size (tokenizer files: 512 MiB), and JSON of bounded nesting."""
    for name in (CONFIG_FILE, "generation_config.json", *PREPROCESSING_FILES):
        path = directory / name
        if not os.path.lexists(path):
            continue
        if name.endswith(".json") and name not in ("tokenizer.json", "vocab.json"):  # those two can be large
            read_json(path, error=TokenizerFileError if name != CONFIG_FILE else ConfigError)
        else:
            check_file(path, max_bytes=MAX_TOKENIZER_BYTES, error=TokenizerFileError, what=name)
    weights = [name for name in SAFE_WEIGHTS[:1] if os.path.lexists(directory / name)]
    if os.path.lexists(directory / SAFE_WEIGHTS[1]):
        weights += read_index(directory / SAFE_WEIGHTS[1])
    for name in weights:  # safetensors memory-maps them: a FIFO or a device would block or fail
        check_file(directory / name, max_bytes=None, error=CheckpointError, what="a weights file")


# --- models -----------------------------------------------------------------------
def _torch_dtype(dtype: Any, config: Any, directory: Path | None = None) -> Any:
    """The argument, else the config's ``dtype``/``torch_dtype``, else float32 (float dtypes only)."""
    import torch

    from factory.build.placement import resolve_dtype

    chosen = resolve_dtype(dtype)
    if chosen is not None:
        return chosen
    value = getattr(config, "dtype", None)
    try:
        return resolve_dtype(value) or torch.float32
    except ConfigError as err:
        raise ConfigError(
            f"config.json: dtype {value!r} is not a dtype a model can be built in ({err.message})",
            file=Path(directory) / "config.json" if directory else None,
            key="dtype",
            hint="fix torch_dtype/dtype in config.json (float32, float16, bfloat16), or pass dtype=... to override it",
        ) from None


def _check_weight_files(directory: Path, allow_pickle: bool) -> None:
    if any((directory / name).is_file() for name in SAFE_WEIGHTS) or any(directory.glob("*.safetensors")):
        return
    pickles = (
        sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        if directory.is_dir()
        else []
    )
    if pickles and not allow_pickle:
        raise PickleRefusedError(
            f"{directory} holds only pickle weights ({', '.join(pickles)}); factory loads safetensors",
            file=directory,
            hint="convert them to safetensors, or pass allow_pickle=True "
            "(then loaded with torch.load(weights_only=True))",
        )
    if not pickles:
        present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise CheckpointError(
            f"no weights in {directory}: expected {' or '.join(SAFE_WEIGHTS)}",
            file=directory,
            hint=f"found: {', '.join(present) or 'nothing'}; pass weights=False for a fresh model",
        )


def _fresh_model(model_cls: Any, config: Any, torch_dtype: Any) -> Any:
    try:
        return model_cls._from_config(config, dtype=torch_dtype)
    except AttributeError:
        return model_cls(config).to(torch_dtype)


def build_model(
    model_cls: Any,
    directory: Path | None,
    *,
    weights: bool = True,
    dtype: Any = None,
    device: Any = None,
    config_overrides: Mapping[str, Any] | None = None,
    allow_pickle: bool = False,
    strict: bool = True,
    config_cls: Any = None,
    tp_size: int | None = None,
    mesh: Any = None,
    plan: Any = None,
) -> Any:
    """A transformers model: from the checkpoint in ``directory``, or fresh.

    ``directory is None``: a fresh model from the default config of ``config_cls``
    (the architecture's registered transformers config; default: the model's
    ``config_class``). ``weights=False``: a fresh model from the directory's config.
    ``strict``: missing, unexpected or wrongly shaped tensors raise
    :class:`WeightsMismatchError` (otherwise a warning). ``tp_size`` / ``mesh``: through
    transformers' own tensor parallelism (FSDP2 too on a 2-D mesh) with ``plan``, the
    architecture's parallel plan from the registry (see :func:`distributed_config`).
    """
    require_transformers(f"model {getattr(model_cls, '__qualname__', model_cls)}")
    config = build_config(_config_class(model_cls, config_cls), directory, config_overrides)
    torch_dtype = _torch_dtype(dtype, config, directory)
    check_size(config, file=Path(directory) / CONFIG_FILE if directory else None)
    if tp_size is not None or mesh is not None:
        return _build_distributed(
            model_cls,
            directory,
            config,
            torch_dtype,
            weights=weights,
            device=device,
            allow_pickle=allow_pickle,
            strict=strict,
            tp_size=tp_size,
            mesh=mesh,
            plan=plan,
        )
    try:
        if directory is None or not weights:
            model = _fresh_model(model_cls, config, torch_dtype)
        else:
            directory = Path(directory)
            _check_weight_files(directory, allow_pickle)
            check_checkpoint_files(directory)
            model = _load(model_cls, directory, config, torch_dtype, allow_pickle, strict)
        if device is not None:
            from factory.build.placement import resolve_device

            model = model.to(resolve_device(device))
    except FactoryError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"transformers could not {'load' if directory is not None and weights else 'construct'} "
            f"{model_cls.__qualname__}: {type(exc).__name__}: {exc}",
            file=directory,
            hint="check the checkpoint files and config against the architecture",
        ) from None
    return model.eval()


def _load(
    model_cls: Any, directory: Path, config: Any, torch_dtype: Any, allow_pickle: bool, strict: bool, **extra: Any
) -> Any:
    model, info = model_cls.from_pretrained(
        str(directory),
        config=config,
        dtype=torch_dtype,
        local_files_only=True,
        use_safetensors=True if not allow_pickle else None,
        trust_remote_code=False,
        output_loading_info=True,
        ignore_mismatched_sizes=True,
        **extra,
    )
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing: {', '.join(sorted(info['missing_keys']))}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected: {', '.join(sorted(info['unexpected_keys']))}")
    if info.get("mismatched_keys"):
        shapes = [f"{key} (checkpoint {tuple(a)}, model {tuple(b)})" for key, a, b in sorted(info["mismatched_keys"])]
        problems.append(f"wrong shape: {', '.join(shapes)}")
    if problems:
        message = f"{model_cls.__qualname__} from {directory}: " + "; ".join(problems)
        if strict:
            raise WeightsMismatchError(
                message, file=directory, hint="pass strict=False to initialise what is missing and ignore the rest"
            )
        warnings.warn(message, stacklevel=3)
    return model


def _config_class(model_cls: Any, config_cls: Any) -> Any:
    if not _is_hf_config(config_cls):  # a native config registered next to a pack model: not for this class
        config_cls = getattr(model_cls, "config_class", None)
    if config_cls is None:
        raise ConfigError(
            f"{model_cls.__qualname__} declares no config_class and the architecture registers no transformers config",
            hint="add a transformers `config:` to the architecture file",
        )
    return config_cls


def meta_model(
    model_cls: Any,
    directory: Path | None,
    *,
    dtype: Any = None,
    config_overrides: Mapping[str, Any] | None = None,
    config_cls: Any = None,
) -> tuple[Any, Any, Any]:
    """``(model, config, dtype)``: the transformers model of the directory's (or the default) config,
    constructed on the meta device (nothing allocated, nothing read)."""
    require_transformers(f"model {getattr(model_cls, '__qualname__', model_cls)}")
    config = build_config(_config_class(model_cls, config_cls), directory, config_overrides)
    torch_dtype = _torch_dtype(dtype, config)
    return _meta_skeleton(model_cls, config, torch_dtype, directory), config, torch_dtype


def _meta_skeleton(model_cls: Any, config: Any, torch_dtype: Any, directory: Path | None) -> Any:
    import torch

    try:
        with torch.device("meta"):
            return _fresh_model(model_cls, config, torch_dtype)
    except FactoryError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"transformers could not construct {model_cls.__qualname__} on the meta device: "
            f"{type(exc).__name__}: {exc}",
            file=Path(directory) / "config.json" if directory else None,
            hint="check the config values against the architecture",
        ) from None


DISTRIBUTED_HINT = "pip install 'factory-registry[distributed]'"


def distributed_config(model: Any, plan: Any, tp_size: int, fsdp_size: int | None = None) -> Any:
    """transformers' ``DistributedConfig`` for ``model`` (meta-built) with the registry's ``plan``.

    The plan's paths are written as transformers keeps them (relative to the base model, or to
    the task class); they are resolved against the model's own names (``base_model_prefix``
    added in a head model) and entries naming nothing here (another task's head) are left out.
    transformers itself adds the task class's own ``_tp_plan`` (``lm_head``) underneath.
    """
    import importlib.util

    from transformers.distributed.configuration_utils import DistributedConfig

    from factory.build import plan as P

    if importlib.util.find_spec("accelerate") is None:
        raise MissingDependencyError(
            "transformers' tensor-parallel loading needs accelerate, which is not installed",
            hint=DISTRIBUTED_HINT,
            package="accelerate",
        )
    names = [n for n, _ in model.named_modules()] + [n for n, _ in model.named_parameters()]
    prefix = getattr(model, "base_model_prefix", "") or ""
    tp_plan: dict[str, str] = {}
    for entry in plan.tp if plan is not None else ():
        for candidate in P.candidate_paths(entry.path, prefix):
            if P.resolve_path(candidate, names, ""):
                tp_plan[candidate] = entry.style
                break
    return DistributedConfig(tp_size=tp_size, tp_plan=tp_plan, fsdp_size=fsdp_size)


def _build_distributed(
    model_cls: Any,
    directory: Path | None,
    config: Any,
    torch_dtype: Any,
    *,
    weights: bool,
    device: Any,
    allow_pickle: bool,
    strict: bool,
    tp_size: int | None,
    mesh: Any,
    plan: Any,
) -> Any:
    """A pack model split by transformers' own ``from_pretrained(..., distributed_config=...)``.

    Before transformers reads anything: the process group and mesh, the plan's styles and
    divisibility rules against the config (a :class:`~factory.errors.ParallelError` naming them).
    """
    from factory.build import plan as P
    from factory.build.parallel import require_checkpoint, resolve_mesh

    where = resolve_mesh(tp_size, mesh, device)
    directory = require_checkpoint(directory, weights, model_cls.__qualname__)
    _check_weight_files(directory, allow_pickle)
    skeleton = _meta_skeleton(model_cls, config, torch_dtype, directory)
    sp = P.compute(
        skeleton,
        plan,
        config,
        where.tp_size,
        task="model",
        target=model_cls.__qualname__,
        builder="transformers",
        dtype=torch_dtype,
    )
    sp.raise_problems()
    dist_config = distributed_config(skeleton, plan, where.tp_size, where.dp_size if where.dp is not None else None)
    config.base_model_tp_plan = {}  # the registry's plan (in dist_config) is the one that applies
    try:
        model = _load(model_cls, directory, config, torch_dtype, allow_pickle, strict, distributed_config=dist_config)
    except FactoryError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"transformers could not load {model_cls.__qualname__} split over tp_size={where.tp_size}: "
            f"{type(exc).__name__}: {exc}",
            file=directory,
            hint="check the checkpoint files and the parallel plan against the architecture",
        ) from None
    model.factory_shard_plan = sp
    return model.eval()


# --- components -------------------------------------------------------------------
#: Files one of which a component needs: transformers builds an empty tokenizer or a
#: default processor from a directory without them, silently.
COMPONENT_FILES = {
    "processor": ("processor_config.json", "preprocessor_config.json", "tokenizer*.json", "chat_template*"),
    "tokenizer": ("tokenizer*.json", "vocab*", "merges*.txt", "*.model", "*.tiktoken", "spm*"),
    "video processor": ("video_preprocessor_config.json", "preprocessor_config.json", "processor_config.json"),
    "image processor": ("preprocessor_config.json", "processor_config.json", "image_processor*.json"),
    "feature extractor": ("preprocessor_config.json", "processor_config.json", "feature_extractor*.json"),
}


def _component_files(component_cls: Any) -> tuple[str, tuple[str, ...]]:
    from transformers.feature_extraction_utils import FeatureExtractionMixin
    from transformers.image_processing_base import ImageProcessingMixin
    from transformers.processing_utils import ProcessorMixin
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase
    from transformers.video_processing_utils import BaseVideoProcessor

    for kind, base in (
        ("processor", ProcessorMixin),
        ("tokenizer", PreTrainedTokenizerBase),
        ("video processor", BaseVideoProcessor),
        ("image processor", ImageProcessingMixin),
        ("feature extractor", FeatureExtractionMixin),
    ):
        if isinstance(component_cls, type) and issubclass(component_cls, base):
            return kind, COMPONENT_FILES[kind]
    return "preprocessing", tuple(sorted({p for patterns in COMPONENT_FILES.values() for p in patterns}))


def build_component(component_cls: Any, directory: Path | None, overrides: Mapping[str, Any] | None = None) -> Any:
    """A tokenizer / image processor / feature extractor / processor from ``directory`` (``overrides``: its
    ``from_pretrained`` keyword arguments, e.g. ``padding_side="left"``)."""
    name = getattr(component_cls, "__qualname__", str(component_cls))
    require_transformers(f"component {name}")
    if directory is None:
        raise CheckpointError(
            f"{name} needs files (vocabulary, preprocessor_config.json, ...), and no checkpoint directory was given",
            hint="pass a checkpoint directory, named checkpoint or Hub repo id, not an architecture name",
        )
    kind, patterns = _component_files(component_cls)
    check_checkpoint_files(Path(directory))
    if not any(any(Path(directory).glob(pattern)) for pattern in patterns):
        raise CheckpointError(
            f"no {kind} files in {directory} for {name}: expected one of {', '.join(patterns)}",
            file=directory,
            hint=f"save the {kind} into the checkpoint directory (save_pretrained)",
        )
    try:
        return component_cls.from_pretrained(
            str(directory), **{**(overrides or {}), "local_files_only": True, "trust_remote_code": False}
        )
    except FactoryError:
        raise
    except ImportError as exc:
        raise MissingDependencyError(
            f"{name} needs a package that is not installed: {exc}",
            file=directory,
            hint="install the package named above",
        ) from None
    except Exception as exc:
        raise CheckpointError(
            f"transformers could not load {name} from {directory}: {type(exc).__name__}: {exc}",
            file=directory,
            hint="check the preprocessing files in the directory",
        ) from None
