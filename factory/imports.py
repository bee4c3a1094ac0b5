"""Importing registered targets: only when building, or for `validate --import`."""
from __future__ import annotations

import importlib
from typing import Any

from .errors import TargetImportError
from .table import Registration, Table


def import_target(reg: Registration) -> Any:
    """Import ``package.module:Attr`` (or ``package.module.Attr``) of a registration."""
    module_name, attr = reg.module, reg.attribute
    where = {"file": reg.provenance.file, "line": reg.provenance.line}
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        hint = (f"install the package that provides {missing!r}" if missing and not module_name.startswith(missing + ".") and missing != module_name
                else f"check the module path {module_name!r}")
        raise TargetImportError(
            f"cannot import module {module_name!r} for {reg.task} / {reg.architecture}: {exc}",
            hint=hint, target=reg.target, **where) from None
    except Exception as exc:  # a broken third-party module: report, do not crash
        raise TargetImportError(
            f"importing {module_name!r} for {reg.task} / {reg.architecture} raised {type(exc).__name__}: {exc}",
            hint="fix the module or the registration", target=reg.target, **where) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            close = [n for n in dir(obj) if n.lower() == part.lower()]
            raise TargetImportError(
                f"module {module_name!r} has no attribute {attr!r} (target of {reg.task} / {reg.architecture})",
                hint=f"did you mean {close[0]!r}?" if close else "check the class name",
                target=reg.target, **where) from None
    return obj


def check_imports(table: Table) -> list[dict[str, Any]]:
    """Import every target and check the seed page's consistency rules; findings as dicts."""
    from .cli import finding_dict

    findings: list[dict[str, Any]] = []
    imported: dict[tuple[str, str], Any] = {}
    for key, reg in table.registrations.items():
        try:
            imported[key] = import_target(reg)
        except TargetImportError as err:
            findings.append(finding_dict(err, code="F001"))
    for (task, arch), obj in imported.items():
        reg = table.registrations[(task, arch)]
        where = {"file": reg.provenance.file, "line": reg.provenance.line}
        if task == "config":
            model_type = getattr(obj, "model_type", None)
            if isinstance(model_type, str) and model_type and model_type != arch:
                findings.append(finding_dict(TargetImportError(
                    f"config class {reg.target} has model_type {model_type!r}, but is registered for architecture {arch!r}",
                    hint="the model_type attribute must equal the architecture key", **where), code="F002"))
            continue
        config_cls = imported.get(("config", arch))
        declared = getattr(obj, "config_class", None)
        if config_cls is not None and isinstance(declared, type) and declared is not config_cls \
                and not issubclass(config_cls, declared):
            findings.append(finding_dict(TargetImportError(
                f"{reg.target} declares config_class {declared.__module__}.{declared.__qualname__}, "
                f"but architecture {arch!r} registers config {table.registrations[('config', arch)].target}",
                hint="register the model's config_class as the architecture's config, or fix config_class",
                **where), code="F003"))
    return sorted(findings, key=lambda f: (f["file"] or "", f["line"] or 0))
