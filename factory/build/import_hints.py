"""What to tell someone whose registered target does not import: which part of the path is wrong.

A missing top-level package is something to install; a missing submodule of an installed package is
a typo to fix (with the closest existing name); a module that exists but imports a missing package
needs that package. Nothing here runs unless an import already failed.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterable


def _closest(word: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return found[0] if found else None


def _submodules(package: str) -> list[str]:
    try:
        module = importlib.import_module(package)
    except Exception:  # a broken package: no suggestions
        return []
    path = getattr(module, "__path__", None)
    return [info.name for info in pkgutil.iter_modules(path)] if path is not None else []


def missing_module_hint(module_name: str, missing: str | None) -> str:
    """The hint for ``import module_name`` failing with ``ModuleNotFoundError`` for ``missing``."""
    if not missing:
        return f"check the module path {module_name!r}"
    if missing != module_name and not module_name.startswith(missing + "."):
        return f"{module_name!r} imports {missing!r}, which is not installed: install the package that provides it"
    parts = missing.split(".")
    top = parts[0]
    if len(parts) == 1:
        return f"no installed package provides {top!r}: install it, or fix the module path {module_name!r}"
    parent, leaf = ".".join(parts[:-1]), parts[-1]
    hint = f"package {top!r} has no module {missing!r}"
    close = _closest(leaf, _submodules(parent))
    if close is not None:
        rest = module_name[len(missing) :]
        hint += f"; did you mean {f'{parent}.{close}{rest}'!r}?"
    return hint


def missing_attribute_hint(owner: object, name: str) -> str:
    """The hint for ``owner`` (a module or class) lacking attribute ``name``."""
    names = [n for n in dir(owner) if not n.startswith("_")]
    same_case = next((n for n in names if n.lower() == name.lower()), None)
    close = same_case or _closest(name, names)
    return f"did you mean {close!r}?" if close else "check the class name"


__all__ = ["missing_attribute_hint", "missing_module_hint"]
