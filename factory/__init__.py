"""factory: a declarative, YAML-driven model factory for PyTorch.

``import factory`` is cheap and never imports torch; building does. The public names
below are imported on first use.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from factory.errors import *  # noqa: F403  (the error hierarchy is public API)
from factory.errors import FactoryError

__version__ = "0.1.0"

# Imported on first use: these pull in YAML, torch, huggingface_hub or transformers.
# `build` and `registry` are also wings (packages) that answer the call: see callable_wing;
# `factory.auto` (the Auto classes) is a wing reached as an attribute.
_WINGS = {"build": "factory.build", "registry": "factory.registry", "auto": "factory.auto"}
_LAZY = {
    "load_registry": ("factory.registry.loader", "load_registry"),
    "registry": ("factory.registry.loader", "registry"),
    "Table": ("factory.registry.table", "Table"),
    "build": ("factory.build.builder", "build"),
    "plan": ("factory.build.builder", "plan"),
    "explain": ("factory.build.resolve", "explain"),
    "save": ("factory.build.saving", "save"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .build.builder import build, plan
    from .build.resolve import explain
    from .build.saving import save
    from .registry.loader import load_registry, registry
    from .registry.table import Table


def _public(name: str) -> Any:
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)


class _CallableWing(types.ModuleType):
    """A wing package that is also the public function of the same name.

    ``factory/build/`` and ``factory/registry/`` are packages, and ``factory.build(task, name)`` and
    ``factory.registry()`` are the public functions: the package object answers the call (and its
    signature), so ``factory.build`` is one object whichever was imported first.
    """

    _target: tuple[str, str]

    def _function(self) -> Any:
        module, attr = self._target
        return getattr(importlib.import_module(module), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self) -> Any:
        import inspect

        return inspect.signature(self._function())


def callable_wing(module_name: str, public: str) -> None:
    """Make the wing ``module_name`` callable as the public name ``public`` (see :class:`_CallableWing`)."""
    module = sys.modules[module_name]
    module.__class__ = _CallableWing
    module._target = _LAZY[public]  # type: ignore[attr-defined]


def __getattr__(name: str) -> Any:
    if name in _WINGS:
        return importlib.import_module(_WINGS[name])
    if name in _LAZY:
        return _public(name)
    raise AttributeError(f"module 'factory' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["FactoryError", "Table", "__version__", "build", "explain", "load_registry", "plan", "registry", "save"]
