"""factory: a declarative, YAML-driven model factory for PyTorch.

``import factory`` is cheap and never imports torch; building does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import *  # noqa: F401,F403  (the error hierarchy is public API)
from .errors import FactoryError

__version__ = "0.1.0"

# Imported on first use: these pull in torch, huggingface_hub or transformers.
_LAZY = {
    "load_registry": ("factory.loader", "load_registry"),
    "registry": ("factory.loader", "registry"),
    "Table": ("factory.table", "Table"),
    "build": ("factory.builder", "build"),
    "explain": ("factory.resolve", "explain"),
    "save": ("factory.saving", "save"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .loader import load_registry, registry
    from .table import Table
    from .builder import build
    from .resolve import explain
    from .saving import save


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'factory' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["FactoryError", "Table", "build", "explain", "load_registry", "registry", "save", "__version__"]
