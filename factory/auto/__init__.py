"""``factory.auto``: the seed page's Auto classes, for code written against transformers.

Change the import line, keep the calls::

    from factory.auto import AutoConfig, AutoModel   # was: from transformers import AutoConfig, AutoModel

    model = AutoModel.from_pretrained("google-bert/bert-base-cased")   # = factory.build("model", ...)
    AutoConfig.register("new-model", NewModelConfig)
    AutoModel.register(NewModelConfig, NewModel)

The classes (``AutoConfig``, ``AutoTokenizer``, ``AutoModelForCausalLM``, ... one per task of the
task table that names an ``auto_class``) are generated from the task table on first use
(:mod:`factory.auto.classes`); ``from_pretrained`` takes transformers' keyword names
(:mod:`factory.auto.options`); ``register()`` adds to the ``runtime`` registry source
(:mod:`factory.auto.registering`), and :func:`export_yaml` writes those registrations as the
architecture files they should become (:mod:`factory.auto.export`).

Importing this module imports neither torch nor transformers; building does.
"""

from __future__ import annotations

import difflib
from typing import Any

_FUNCTIONS = {"export_yaml": "factory.auto.export"}
_SUBMODULES = ("classes", "export", "options", "registering")


def _classes() -> dict[str, Any]:
    from factory.auto.classes import auto_classes

    return dict(auto_classes())


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    if name.startswith("__"):
        if name == "__all__":
            return sorted([*_classes(), *_FUNCTIONS])
        raise AttributeError(name)
    classes = _classes()
    if name in classes:
        return classes[name]
    close = difflib.get_close_matches(name, list(classes), n=1)
    raise AttributeError(
        f"module 'factory.auto' has no attribute {name!r}"
        + (f"; did you mean {close[0]!r}?" if close else " (the Auto classes are the task table's auto_class names)")
    )


def __dir__() -> list[str]:
    return sorted([*globals(), *_classes(), *_FUNCTIONS])
