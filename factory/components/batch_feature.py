"""``BatchFeature``: what image processors, feature extractors and processors return.

A dict of model inputs (``pixel_values``, ``input_features``, ``input_values``, ``attention_mask``, ...),
also reachable as attributes, as transformers' ``BatchFeature`` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.errors import PreprocessingError

__all__ = ["RETURN_TENSORS", "BatchFeature", "check_return_tensors"]

#: What ``return_tensors`` may be: torch tensors, numpy arrays, or plain lists of per-item tensors.
RETURN_TENSORS = ("pt", "np", None)


def check_return_tensors(value: Any) -> str | None:
    if value not in RETURN_TENSORS:
        raise PreprocessingError(
            f"return_tensors={value!r} is not supported",
            hint='use return_tensors="pt" (torch tensors), "np" (numpy arrays) or None (lists)',
        )
    return value  # type: ignore[no-any-return]


class BatchFeature(dict):  # type: ignore[type-arg]
    """Model inputs by name; ``batch.pixel_values`` is ``batch["pixel_values"]``."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(data or {})

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"BatchFeature has no field {key!r}; it has {sorted(self)}") from None

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """``.to(device)`` moves every tensor; ``.to(dtype)`` casts the floating ones (as transformers does).

        Works in place and returns self.
        """
        import torch

        casts_dtype = any(isinstance(a, torch.dtype) for a in args) or "dtype" in kwargs
        for key, value in self.items():
            if not isinstance(value, torch.Tensor):
                continue
            if casts_dtype and not torch.is_floating_point(value):
                device = kwargs.get("device", next((a for a in args if not isinstance(a, torch.dtype)), None))
                self[key] = value.to(device) if device is not None else value
            else:
                self[key] = value.to(*args, **kwargs)
        return self
