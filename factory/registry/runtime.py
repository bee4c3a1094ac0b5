"""The ``runtime`` source: registrations made in this process by ``register()`` (see :mod:`factory.auto`).

It comes last in the source order, after ``path``. Each entry's provenance is the ``file:line`` of the
``register()`` call (source ``runtime``), and the source keeps the registered objects themselves, so a
class defined in ``__main__`` or inside a function builds although no import path names it.

Tables stay immutable. The runtime registrations are an immutable :class:`RuntimeSource`; :func:`add`
replaces it by a new one (checked first), and :func:`layer` puts one on top of a table, giving a new
table. :func:`factory.registry.loader.registry` serves the default table layered with the current
runtime source, so the default table is replaced by a new one whenever a registration is added.

This is process-wide state by design (``register()`` is the seed page's API); it holds one reference
to an immutable snapshot, swapped under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from factory.errors import ConflictError, FactoryError, RegistrationError, UnknownTaskError
from factory.registry.merge import combine_architectures
from factory.registry.table import Architecture, FrozenDict, Registration, Table

SOURCE = "runtime"
#: How the runtime source is named in :attr:`Table.sources`.
SOURCE_NAME = "runtime:register()"


@dataclass(frozen=True)
class RuntimeSource:
    """The registrations of this process: entries by key, their architectures, and the objects named by targets."""

    registrations: FrozenDict[tuple[str, str], Registration] = field(default_factory=FrozenDict)
    architectures: FrozenDict[str, Architecture] = field(default_factory=FrozenDict)
    objects: FrozenDict[str, Any] = field(default_factory=FrozenDict)

    def __bool__(self) -> bool:
        return bool(self.registrations or self.architectures)

    def lookup(self, target: str) -> Any:
        """The object registered under ``target``, or ``None``."""
        return self.objects.get(target)


_lock = threading.RLock()
_current: list[RuntimeSource] = [RuntimeSource()]


def current() -> RuntimeSource:
    """The runtime registrations made so far in this process."""
    return _current[0]


def _where(reg: Registration) -> str:
    return f"{reg.provenance.file}:{reg.provenance.line}"


def add(
    base: Table,
    registrations: Iterable[Registration],
    architectures: Iterable[Architecture] = (),
    objects: Mapping[str, Any] | None = None,
    *,
    exist_ok: bool = False,
) -> RuntimeSource:
    """Add entries to the runtime source, checked against ``base`` (the default table) and earlier calls.

    Registering the same target again for a key is allowed (a re-run notebook cell). Replacing another
    entry, of ``base`` or of an earlier call, needs ``exist_ok=True``; an entry of ``base`` replaced so
    stays visible as shadowed. Raises :class:`RegistrationError` (or the merge's error) and changes
    nothing when the entries do not fit.
    """
    with _lock:
        cur = _current[0]
        regs = dict(cur.registrations)
        for reg in registrations:
            prior = regs.get(reg.key)
            if prior is not None and prior.target != reg.target and not exist_ok:
                raise RegistrationError(
                    f"{reg.task} / {reg.architecture} is already registered to {prior.target} by the register() "
                    f"call at {_where(prior)}",
                    file=reg.provenance.file,
                    line=reg.provenance.line,
                    hint="pass exist_ok=True to replace it, or register under another name",
                )
            existing = base.registrations.get(reg.key)
            if existing is not None:
                if not exist_ok and (prior is None or prior.override is None):
                    raise RegistrationError(
                        f"{reg.task} / {reg.architecture} is already registered: {existing.target} at "
                        f"{_where(existing)} ({existing.provenance.source}, {existing.layer} layer)",
                        file=reg.provenance.file,
                        line=reg.provenance.line,
                        hint="pass exist_ok=True to replace it (the replaced entry stays visible as shadowed), "
                        "or register under another name",
                    )
                reg = replace(
                    reg, override=f"replaces {existing.target} (register(..., exist_ok=True) at {_where(reg)})"
                )
            regs[reg.key] = reg
        archs = dict(cur.architectures)
        for arch in architectures:
            prior_arch = archs.get(arch.name)
            if prior_arch is not None:
                files = prior_arch.files + tuple(f for f in arch.files if f not in prior_arch.files)
                arch = replace(prior_arch, files=files)
            archs[arch.name] = arch
        new = RuntimeSource(FrozenDict(regs), FrozenDict(archs), FrozenDict({**cur.objects, **(objects or {})}))
        layer(base, new)  # raises the first problem before anything changes
        _current[0] = new
        return new


def layer(table: Table, source: RuntimeSource) -> Table:
    """A new table: ``table`` with the runtime ``source`` on top (``table`` itself when it is empty).

    An entry replaces an entry of ``table`` only with an override (``register(..., exist_ok=True)``);
    otherwise the two conflict. Raises the first problem found.
    """
    if not source:
        return table
    errors: list[FactoryError] = []
    regs = dict(table.registrations)
    for reg in source.registrations.values():
        if reg.task not in table.tasks:
            errors.append(
                UnknownTaskError(
                    f"the register() call for {reg.architecture!r} names task {reg.task!r}, which this table's "
                    "task table does not have",
                    file=reg.provenance.file,
                    line=reg.provenance.line,
                    hint="load the table with the built-in task table (include_builtin=True)",
                )
            )
            continue
        existing = regs.get(reg.key)
        if existing is None:
            regs[reg.key] = reg
        elif reg.override:
            regs[reg.key] = replace(reg, shadows=(existing, *existing.shadows))
        else:
            errors.append(
                ConflictError(
                    f"registration '{reg.task} / {reg.architecture}' of a register() call is also defined at "
                    f"{_where(existing)}",
                    file=reg.provenance.file,
                    line=reg.provenance.line,
                    hint="pass exist_ok=True to register() to replace it, or register under another name",
                    first=str(existing.provenance),
                    second=str(reg.provenance),
                )
            )
    if errors:
        raise errors[0]
    archs = dict(table.architectures)
    for arch in source.architectures.values():
        archs[arch.name] = combine_architectures(archs[arch.name], arch) if arch.name in archs else arch
    return Table(table.tasks, archs, regs, table.checkpoints, (*table.sources, SOURCE_NAME))


__all__ = ["SOURCE", "RuntimeSource", "add", "current", "layer"]
