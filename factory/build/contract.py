"""The seed page's two consistency rules between registered classes, shared by ``register()``
(:mod:`factory.auto`) and ``factory lint --import`` / ``validate --import`` (F002, F003):

1. a config class's ``model_type`` equals the key (architecture) it is registered under;
2. a model class's ``config_class`` is the config class registered for its architecture.
"""

from __future__ import annotations

from typing import Any


def model_type_of(config_cls: Any) -> str | None:
    """The ``model_type`` a config class declares (``""`` when it leaves it empty), ``None`` when it has none."""
    value = getattr(config_cls, "model_type", None)
    return value if isinstance(value, str) else None


def conflicting_config_class(model_cls: Any, config_cls: Any) -> type | None:
    """The ``config_class`` that ``model_cls`` declares when it breaks rule 2 for ``config_cls``, else ``None``.

    A declared class that ``config_cls`` subclasses is consistent; a model declaring none is too.
    """
    declared = getattr(model_cls, "config_class", None)
    if not isinstance(config_cls, type) or not isinstance(declared, type):
        return None
    if declared is config_cls or issubclass(config_cls, declared):
        return None
    return declared


__all__ = ["conflicting_config_class", "model_type_of"]
