"""Importing registered targets: only when building, or for `validate --import`."""

from __future__ import annotations

import importlib
from typing import Any

from factory.errors import TargetImportError
from factory.registry.table import Registration


def import_target(reg: Registration) -> Any:
    """Import ``package.module:Attr`` (or ``package.module.Attr``) of a registration."""
    module_name, attr = reg.module, reg.attribute
    where = {"file": reg.provenance.file, "line": reg.provenance.line}
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        hint = (
            f"install the package that provides {missing!r}"
            if missing and not module_name.startswith(missing + ".") and missing != module_name
            else f"check the module path {module_name!r}"
        )
        raise TargetImportError(
            f"cannot import module {module_name!r} for {reg.task} / {reg.architecture}: {exc}",
            hint=hint,
            target=reg.target,
            **where,
        ) from None
    except Exception as exc:  # a broken third-party module: report, do not crash
        raise TargetImportError(
            f"importing {module_name!r} for {reg.task} / {reg.architecture} raised {type(exc).__name__}: {exc}",
            hint="fix the module or the registration",
            target=reg.target,
            **where,
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            close = [n for n in dir(obj) if n.lower() == part.lower()]
            raise TargetImportError(
                f"module {module_name!r} has no attribute {attr!r} (target of {reg.task} / {reg.architecture})",
                hint=f"did you mean {close[0]!r}?" if close else "check the class name",
                target=reg.target,
                **where,
            ) from None
    return obj
