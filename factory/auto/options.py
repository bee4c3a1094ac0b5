"""transformers' ``from_pretrained`` / ``from_config`` keyword arguments, translated to ``factory.build``'s.

Every keyword falls in one of these groups (the README's "Coming from transformers" lists them):

* **mapped**: ``torch_dtype``/``dtype`` -> ``dtype``; ``device_map`` naming one device -> ``device``;
  ``use_auth_token`` -> ``token``; ``ignore_mismatched_sizes=True`` -> ``strict=False``;
  ``config=<config object>`` -> its values as config overrides;
* **passed** as they are: ``revision``, ``local_files_only``, ``token``, ``cache_dir`` and every other
  parameter of :func:`factory.build` (``device``, ``weights``, ``strict``, ``allow_pickle``, ...);
* **no effect**, accepted because factory always does what they ask: ``low_cpu_mem_usage``,
  ``use_safetensors=True``, ``weights_only=True``, ``trust_remote_code=False``, ``resume_download``,
  ``use_fast`` (factory tokenizers are fast), ``attn_implementation="sdpa"`` (native attention);
* **refused** with a :class:`~factory.errors.UnsupportedOptionError` saying what to do instead
  (:data:`REFUSED`; ``trust_remote_code=True`` says how to register the code in YAML);
* anything else is a **config override**, as transformers updates the config with keyword arguments
  (``num_labels=3``, ``output_hidden_states=True``); for components, an override of their config file
  (``padding_side="left"``).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from factory.errors import UnsupportedOptionError
from factory.models.configuration import CODE_KEYS

RENAMED = {"torch_dtype": "dtype", "use_auth_token": "token"}
#: keyword -> the values accepted without effect (``None``: any value), and why.
NO_EFFECT: dict[str, tuple[tuple[Any, ...] | None, str]] = {
    "low_cpu_mem_usage": (None, "factory always constructs on the meta device and loads the weights in place"),
    "use_safetensors": ((None, True), "factory loads safetensors"),
    "weights_only": ((None, True), "pickle weights, when allowed, are always read with weights_only=True"),
    "trust_remote_code": ((None, False), "factory never runs code named by a checkpoint"),
    "resume_download": (None, "huggingface_hub resumes downloads by itself"),
    "use_fast": (None, "factory tokenizers are fast tokenizers (the tokenizers library)"),
    "attn_implementation": ((None, "sdpa"), "native models use torch's scaled_dot_product_attention"),
    "_fast_init": (None, "factory never initialises weights that the checkpoint overwrites"),
    "_commit_hash": (None, "factory resolves the commit itself"),
}
_NO_QUANTIZATION = "factory builds float models: build, then quantize the model yourself (torchao, bitsandbytes)"
_ONE_DEVICE = "factory puts the whole model on one device: device_map='cuda:0' or device='cuda:0'"
REFUSED: dict[str, str] = {
    "force_download": "delete the files from the HF cache (`hf cache delete`) and build again",
    "proxies": "set HTTPS_PROXY / HTTP_PROXY in the environment; huggingface_hub reads them",
    "mirror": "set HF_ENDPOINT to the mirror's URL",
    "subfolder": "build from the local path of the subfolder, or register a named checkpoint with hub.subfolder",
    "from_tf": "factory loads safetensors: convert the TensorFlow checkpoint first",
    "from_flax": "factory loads safetensors: convert the Flax checkpoint first",
    "gguf_file": "factory loads safetensors: convert the GGUF file first",
    "variant": "factory loads model.safetensors or its shards: point at a directory that holds them",
    "state_dict": "build with weights=False, then model.load_state_dict(state_dict)",
    "quantization_config": _NO_QUANTIZATION,
    "load_in_8bit": _NO_QUANTIZATION,
    "load_in_4bit": _NO_QUANTIZATION,
    "max_memory": _ONE_DEVICE,
    "offload_folder": _ONE_DEVICE,
    "offload_state_dict": _ONE_DEVICE,
    "offload_buffers": _ONE_DEVICE,
    "tp_plan": "tensor parallelism is part of the registration (YAML `parallel:`), not an argument",
    "key_mapping": "register a model class whose parameter names match the checkpoint's",
    "adapter_name": "load adapters with peft: peft.PeftModel.from_pretrained(model, adapter_path)",
    "adapter_kwargs": "load adapters with peft: peft.PeftModel.from_pretrained(model, adapter_path)",
    "code_revision": "factory never runs code named by a checkpoint (see trust_remote_code)",
}
#: Keys of a config object's to_dict() that are not settings (internal or code-naming).
_NOT_SETTINGS = ("model_type", "transformers_version", "architectures", *CODE_KEYS)


def trust_remote_code_error(name: str | None = None) -> UnsupportedOptionError:
    """What ``trust_remote_code=True`` gets: how to use the model's code through a registration instead."""
    return UnsupportedOptionError(
        "trust_remote_code=True is refused: factory never imports code named by a checkpoint (its config's "
        "auto_map)" + (f" of {name!r}" if name else ""),
        hint="install the model's code as a package and register it: an architecture file in a registry source "
        "(FACTORY_REGISTRY_PATH or a plugin) with `architecture: <model_type>`, `config: your_pkg.config:YourConfig`, "
        "`tasks: {causal-lm: your_pkg.model:YourForCausalLM}`; or in code, AutoConfig.register('<model_type>', "
        "YourConfig) and AutoModelForCausalLM.register(YourConfig, YourForCausalLM), then "
        "factory.auto.export_yaml('registry.d/models/') for review (README: 'Coming from transformers')",
    )


@dataclass
class Options:
    """``factory.build`` keyword arguments, plus what the Auto class does itself with the rest."""

    build: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # config (or component file) overrides
    loose: list[str] = field(default_factory=list)  # overrides given as loose keyword arguments
    output_loading_info: bool = False
    return_unused_kwargs: bool = False
    generation_config: Any = None


def _single_device(device_map: Any) -> Any:
    """The one device a ``device_map`` names; refuses maps over several devices."""
    import torch

    if isinstance(device_map, Mapping):
        devices = {str(v) for v in device_map.values()}
        if len(devices) != 1:
            raise UnsupportedOptionError(f"device_map spreads the model over {sorted(devices)}", hint=_ONE_DEVICE)
        device_map = next(iter(device_map.values()))
    if isinstance(device_map, int) and not isinstance(device_map, bool):
        return f"cuda:{device_map}"
    if isinstance(device_map, str) and device_map in ("auto", "sequential", "balanced", "balanced_low_0"):
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible > 1:
            raise UnsupportedOptionError(
                f"device_map={device_map!r} with {visible} GPUs visible would split the model", hint=_ONE_DEVICE
            )
        return "cuda:0" if visible == 1 else "cpu"
    if isinstance(device_map, str) and device_map == "disk":
        raise UnsupportedOptionError("device_map='disk' (offloading) is not supported", hint=_ONE_DEVICE)
    return device_map


def _build_parameters(build: Callable[..., Any]) -> set[str]:
    return {
        name
        for name, p in inspect.signature(build).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name not in ("task", "name")
    }


def config_settings(config: Any) -> dict[str, Any]:
    """A config object's settings as overrides: its ``to_dict()`` without internal and code-naming keys."""
    to_dict = getattr(config, "to_dict", None)
    if not callable(to_dict):
        raise UnsupportedOptionError(
            f"config must be a config object with to_dict(), found {type(config).__name__}",
            hint="pass a config built by AutoConfig.from_pretrained / factory.build('config', name), or keyword "
            "overrides",
        )
    return {k: v for k, v in dict(to_dict()).items() if k not in _NOT_SETTINGS and not k.startswith("_")}


def translate(kwargs: Mapping[str, Any], build: Callable[..., Any], *, name: str | None = None) -> Options:
    """Sort transformers-style keyword arguments into :class:`Options` (see the module docstring)."""
    opts = Options()
    params = _build_parameters(build)
    for key, value in kwargs.items():
        target = RENAMED.get(key, key)
        if key == "trust_remote_code" and value:
            raise trust_remote_code_error(name)
        if key in NO_EFFECT:
            accepted, why = NO_EFFECT[key]
            if accepted is None or value in accepted:
                continue
            raise UnsupportedOptionError(
                f"{key}={value!r} is not supported ({why})",
                hint="use allow_pickle=True for pickle weights" if key in ("use_safetensors", "weights_only") else None,
            )
        if key in REFUSED:
            raise UnsupportedOptionError(f"{key} is not supported by factory.build", hint=REFUSED[key])
        if key == "device_map":
            if value is not None:
                _set(opts.build, "device", _single_device(value), key)
        elif key == "ignore_mismatched_sizes":
            if value:
                _set(opts.build, "strict", False, key)
        elif key == "config":
            if value is not None:
                opts.overrides.update(config_settings(value))
        elif key == "output_loading_info":
            opts.output_loading_info = bool(value)
        elif key == "return_unused_kwargs":
            opts.return_unused_kwargs = bool(value)
        elif key == "generation_config":
            opts.generation_config = value
        elif key == "config_overrides":
            opts.overrides.update(dict(value or {}))
        elif target in params:
            _set(opts.build, target, value, key)
        else:
            opts.overrides[key] = value
            opts.loose.append(key)
    return opts


class UnreadSettingWarning(UserWarning):
    """A keyword argument became a config value that the config class does not declare (a typo?)."""


def declared_settings(config: Any) -> set[str] | None:
    """The settings ``config``'s class declares (``None``: it cannot say)."""
    cls = type(config)
    names: set[str] = {*getattr(cls, "attribute_map", {}), "num_labels"}
    defaults = getattr(cls, "defaults", None)
    if callable(defaults):  # factory's Config: the class attributes
        return names | set(defaults())
    try:  # another library's config: what a default instance holds
        return names | set(cls().to_dict())
    except Exception:
        return None


def warn_unread(config: Any, keys: Iterable[str], checkpoint_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Warn about ``keys`` (set on ``config`` from keyword arguments) that its class does not declare and the
    checkpoint's config.json does not hold either; returns them with their values."""
    declared = declared_settings(config)
    if declared is None:
        return {}
    unread = sorted(set(keys) - declared - set(checkpoint_keys))
    if unread:
        warnings.warn(
            f"{', '.join(unread)}: not settings of {type(config).__qualname__}; kept on the config, but nothing in "
            "the model reads them unless it asks for them (a typo? native models take output_hidden_states and "
            "output_attentions as forward() arguments)",
            UnreadSettingWarning,
            stacklevel=4,
        )
    return {k: getattr(config, k, None) for k in unread}


def _set(build: dict[str, Any], key: str, value: Any, given_as: str) -> None:
    if key in build and build[key] != value:
        raise UnsupportedOptionError(
            f"{given_as}={value!r} contradicts {key}={build[key]!r} given too", hint="pass one of them"
        )
    build[key] = value


__all__ = [
    "NO_EFFECT",
    "REFUSED",
    "RENAMED",
    "Options",
    "UnreadSettingWarning",
    "config_settings",
    "declared_settings",
    "translate",
    "trust_remote_code_error",
    "warn_unread",
]
