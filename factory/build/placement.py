"""Where tensors go: dtype names and the device a build targets."""
from __future__ import annotations

import torch

from factory.errors import ConfigError

_DTYPE_NAMES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}


def resolve_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.bfloat16``, ``"bfloat16"``, ``"torch.bfloat16"``, ``"bf16"`` -> torch dtype; None/"auto" -> None."""
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        name = value.strip().lower().removeprefix("torch.")
        if name == "auto":
            return None
        if name in _DTYPE_NAMES:
            return _DTYPE_NAMES[name]
    raise ConfigError(
        f"dtype {value!r} is not a floating-point torch dtype",
        hint="use one of float32, float16, bfloat16, float64 (or a torch.dtype)",
    )


def _safetensors_dtypes() -> dict[str, torch.dtype]:
    names = {
        "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
        "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
        "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
        "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
        "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu",
    }
    return {code: getattr(torch, name) for code, name in names.items() if hasattr(torch, name)}


ST_DTYPES = _safetensors_dtypes()  # safetensors dtype code -> torch dtype



def resolve_device(device: torch.device | str | None) -> torch.device:
    try:
        result = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device: {exc}",
                          hint="use 'cpu', 'cuda', 'cuda:1', 'mps', ...") from None
    backend = getattr(torch, result.type, None) if result.type not in ("cpu", "meta") else None
    available = getattr(backend, "is_available", None)
    if callable(available) and not available():
        raise ConfigError(f"device {str(result)!r} is not available in this process "
                          f"(torch {torch.__version__} sees no {result.type} device)",
                          hint="build on 'cpu', or install a torch build for this accelerator")
    count = getattr(backend, "device_count", None)
    if result.index is not None and callable(count) and result.index >= count():
        raise ConfigError(f"device {str(result)!r} does not exist: {count()} {result.type} device(s) visible",
                          hint=f"use an index below {count()}")
    return result
