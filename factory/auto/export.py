"""``factory.auto.export_yaml(path)``: this process's ``register()`` calls as architecture files.

A runtime registration is meant to end as a reviewed YAML file: export it, read it, commit it to a
registry source (a plugin's ``registry.d``, a ``FACTORY_REGISTRY_PATH`` directory), and delete the
``register()`` calls. The files follow the architecture schema (checked before anything is
written); an entry that replaced another one (``exist_ok=True``) is written as an override with a
reason naming what it replaces. Only importable classes can be exported: a class defined in
``__main__`` or inside a function has no name a YAML file could use.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from factory.errors import RegistrationError
from factory.registry import runtime
from factory.registry.table import Registration

HEADER = (
    "# Exported by factory.auto.export_yaml() from register() calls. Review it, put it in a registry\n"
    "# source (a plugin's registry.d/, a FACTORY_REGISTRY_PATH directory), then drop the register() calls.\n"
    "# Schema: `factory schema architecture`. Registered at:\n"
)


def _importable(reg: Registration, obj: Any) -> None:
    """Raise unless ``reg.target`` imports as ``obj`` in a fresh process."""
    module_name, _, qualname = reg.target.partition(":")
    file, line = reg.provenance.file, reg.provenance.line
    if module_name == "__main__" or "<" in qualname:
        place = "in __main__ (a script or notebook)" if module_name == "__main__" else "inside a function"
        raise RegistrationError(
            f"cannot export {reg.task} / {reg.architecture}: {qualname.rpartition('.')[2]} is defined {place}, "
            "which no import path names",
            hint="move the class into a module of an installed package (or one on sys.path) and register it from there",
            file=file,
            line=line,
        )
    try:
        found: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise RegistrationError(
            f"cannot export {reg.task} / {reg.architecture}: {reg.target} does not import ({exc})",
            file=file,
            line=line,
        ) from None
    if found is not obj:
        raise RegistrationError(
            f"cannot export {reg.task} / {reg.architecture}: {reg.target} names another object than the class "
            "registered (it was redefined after register())",
            hint="register the class again, or export before redefining it",
            file=file,
            line=line,
        )


def _entry(reg: Registration) -> str | dict[str, str]:
    return {"target": reg.target, "override": reg.override} if reg.override else reg.target


def documents(architectures: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Architecture -> the architecture document of its runtime registrations."""
    source = runtime.current()
    wanted = None if architectures is None else set(architectures)
    by_arch: dict[str, list[Registration]] = {}
    for reg in source.registrations.values():
        if wanted is None or reg.architecture in wanted:
            by_arch.setdefault(reg.architecture, []).append(reg)
    if wanted is not None and wanted - set(by_arch):
        missing = ", ".join(sorted(wanted - set(by_arch)))
        raise RegistrationError(
            f"no register() call registered architecture(s) {missing}",
            hint=f"registered at runtime: {', '.join(sorted(by_arch)) or 'nothing'}",
        )
    if not by_arch:
        raise RegistrationError(
            "nothing to export: no register() call in this process",
            hint="register classes first, e.g. AutoConfig.register('new-model', NewModelConfig)",
        )
    docs: dict[str, dict[str, Any]] = {}
    for arch, regs in sorted(by_arch.items()):
        doc: dict[str, Any] = {"schema_version": 1, "kind": "architecture", "architecture": arch}
        doc["summary"] = f"{arch} (exported from register() calls)"
        tasks: dict[str, Any] = {}
        components: dict[str, Any] = {}
        for reg in sorted(regs, key=lambda r: r.task):
            _importable(reg, source.lookup(reg.target))
            if reg.task == "config":
                doc["config"] = _entry(reg)
            elif reg.task in _component_tasks():
                components[reg.task] = _entry(reg)
            else:
                tasks[reg.task] = _entry(reg)
        doc["tasks"] = tasks
        if components:
            doc["components"] = components
        docs[arch] = doc
    return docs


def _component_tasks() -> set[str]:
    from factory.registry.loader import base_registry

    return {t.name for t in base_registry().tasks.values() if t.group == "component" and t.name != "config"}


def _text(arch: str, doc: dict[str, Any]) -> str:
    import yaml

    source = runtime.current()
    calls = sorted(
        f"#   {reg.task}: {reg.provenance.file}:{reg.provenance.line}"
        for reg in source.registrations.values()
        if reg.architecture == arch
    )
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=False)
    return HEADER + "\n".join(calls) + "\n" + body


def _check(path: Path, text: str) -> None:
    """The text must load as a schema-valid architecture document (what ``factory validate`` checks)."""
    from factory.registry import schemas
    from factory.registry.yamlio import load_document

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / path.name
        probe.write_text(text, encoding="utf-8")
        problems = schemas.validate(load_document(probe))
    if problems:
        raise RegistrationError(f"the exported document for {path.name} does not follow the schema: {problems[0]}")


def export_yaml(
    path: str | os.PathLike[str], *, architectures: Iterable[str] | None = None, overwrite: bool = False
) -> list[Path]:
    """Write the runtime registrations as architecture files; returns the paths written.

    ``path`` ending in ``.yaml``/``.yml``: one file, for exactly one architecture; otherwise a directory
    (created if needed) that gets ``<architecture>.yaml`` per architecture. ``architectures`` limits
    what is exported. An existing file is replaced only with ``overwrite=True``; nothing is written when
    anything is wrong.
    """
    docs = documents(architectures)
    target = Path(path).expanduser()
    if target.suffix in (".yaml", ".yml"):
        if len(docs) != 1:
            raise RegistrationError(
                f"{target.name} is one file, and there are {len(docs)} architectures to export: {', '.join(docs)}",
                hint="pass a directory, or architectures=[...] naming one",
            )
        files = {target: _text(*next(iter(docs.items())))}
    else:
        files = {target / f"{arch}.yaml": _text(arch, doc) for arch, doc in docs.items()}
    for file, text in files.items():
        if file.exists() and not overwrite:
            raise RegistrationError(
                "refusing to replace an existing file", file=file, hint="pass overwrite=True, or another path"
            )
        _check(file, text)
    for file, text in files.items():
        _write(file, text)
    return list(files)


def _write(file: Path, text: str) -> None:
    """Write ``text`` to ``file`` in one rename, with the mode a new file gets here (umask)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["documents", "export_yaml"]
