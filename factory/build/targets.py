"""Importing registered targets: only when building, or for `validate --import`."""

from __future__ import annotations

import importlib
from typing import Any

from factory.build.import_hints import missing_attribute_hint, missing_module_hint
from factory.errors import TargetImportError
from factory.registry import runtime
from factory.registry.table import Registration


def import_target(reg: Registration) -> Any:
    """Import ``package.module:Attr`` (or ``package.module.Attr``) of a registration.

    A ``runtime`` registration (a ``register()`` call of this process) gives the object it registered.
    """
    if reg.provenance.source == runtime.SOURCE:
        registered = runtime.current().lookup(reg.target)
        if registered is not None:
            return registered
    module_name, attr = reg.module, reg.attribute
    where: dict[str, Any] = {"file": reg.provenance.file, "line": reg.provenance.line}
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        hint = missing_module_hint(module_name, getattr(exc, "name", None))
        raise TargetImportError(
            f"cannot import module {module_name!r} for {reg.task} / {reg.architecture}: {exc}",
            hint=hint,
            target=reg.target,
            **where,
        ) from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a broken module, or one that calls sys.exit() at import: report, do not exit
        what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"raised {type(exc).__name__}"
        raise TargetImportError(
            f"importing {module_name!r} for {reg.task} / {reg.architecture} {what}: {exc}",
            hint="fix the module or the registration: importing a target must not exit or fail",
            target=reg.target,
            **where,
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetImportError(
                f"module {module_name!r} has no attribute {attr!r} (target of {reg.task} / {reg.architecture})",
                hint=missing_attribute_hint(obj, part),
                target=reg.target,
                **where,
            ) from None
    return obj
