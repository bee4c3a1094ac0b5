"""Merging candidate entries (in source order) into a :class:`~factory.registry.table.Table`.

Deterministic, with the design's rules: two entries of one key conflict unless the later
source overrides with a reason; an override of nothing is stale; a pack-layer registration
yields to a native one; every winner keeps what it shadows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from factory.errors import (
    AliasError,
    ConflictError,
    FactoryError,
    OverrideError,
    RegistryError,
    UnknownArchitectureError,
    UnknownTaskError,
)
from factory.registry.table import (
    SOURCE_ORDER,
    Architecture,
    Checkpoint,
    ComponentClass,
    FrozenDict,
    Provenance,
    Registration,
    Table,
    Task,
    _did_you_mean,
)


@dataclass
class Entry:
    """A candidate entry before merging: what, where, and how it may replace others."""

    key: Any
    value: Any  # Task | Registration | Checkpoint
    source_rank: int


def _rank(prov: Provenance) -> int:
    return SOURCE_ORDER.index(prov.source) if prov.source in SOURCE_ORDER else len(SOURCE_ORDER)


def _merge_entries(entries: Sequence[Any], what: str, errors: list[FactoryError]) -> dict[Any, Any]:
    """Merge entries (Task/Registration/Checkpoint) with the design's rules.

    Entries arrive in source order. A later source replaces an entry only with an
    explicit ``override`` reason; a pack-layer registration yields to a native one.
    """
    merged: dict[Any, Any] = {}
    for entry in entries:
        key = entry.name if isinstance(entry, (Task, Checkpoint)) else entry.key
        label = key if isinstance(key, str) else f"{key[0]} / {key[1]}"
        existing = merged.get(key)
        override = entry.override
        if existing is None:
            if override:
                errors.append(
                    OverrideError(
                        f"stale override: {what} {label!r} overrides nothing",
                        file=entry.provenance.file,
                        line=entry.provenance.line,
                        hint="remove the override (and its reason) or the whole entry",
                    )
                )
                continue
            merged[key] = entry
            continue
        layers = (getattr(existing, "layer", "native"), getattr(entry, "layer", "native"))
        if layers == ("pack", "native"):
            merged[key] = _replace(entry, shadows=(existing, *existing.shadows))
            continue
        if layers == ("native", "pack"):
            merged[key] = _replace(existing, shadows=(*existing.shadows, entry))
            continue
        later = _rank(entry.provenance) > _rank(existing.provenance)
        if override and later:
            merged[key] = _replace(entry, shadows=(existing, *existing.shadows))
            continue
        if override:
            errors.append(
                OverrideError(
                    f"{what} {label!r} overrides an entry of the same source ({existing.provenance})",
                    file=entry.provenance.file,
                    line=entry.provenance.line,
                    hint="an override must come from a later source (plugin, FACTORY_REGISTRY_PATH, paths=); "
                    "within one source, keep one entry",
                )
            )
            continue
        errors.append(
            ConflictError(
                f"{what} {label!r} is defined twice: here and at {existing.provenance.file}:{existing.provenance.line}",
                file=entry.provenance.file,
                line=entry.provenance.line,
                hint="remove one, or override it from a later source with `override: <reason>`",
                first=str(existing.provenance),
                second=str(entry.provenance),
            )
        )
    return merged


def _replace(obj: Any, **changes: Any) -> Any:
    return replace(obj, **changes)


def merge(
    tasks: list[Task],
    registrations: list[Registration],
    architectures: list[Architecture],
    checkpoints: list[Checkpoint],
    errors: list[FactoryError],
    sources: tuple[str, ...] = (),
) -> Table | None:
    """Merge candidate entries (in source order) into a :class:`Table`.

    Problems are appended to ``errors``; returns ``None`` when there were any.
    """
    task_map = _merge_entries(tasks, "task", errors)
    _check_aliases(task_map, errors)
    alias_map = {a: t.name for t in task_map.values() for a in t.aliases}

    canonical: list[Registration] = []
    for reg in registrations:
        name = alias_map.get(reg.task, reg.task)
        task = task_map.get(name)
        if task is None:
            hint = _did_you_mean(reg.task, [*task_map, *alias_map]) or "run `factory tasks` to list tasks"
            errors.append(
                UnknownTaskError(
                    f"unknown task {reg.task!r} for architecture {reg.architecture!r}",
                    file=reg.provenance.file,
                    line=reg.provenance.line,
                    hint=hint,
                )
            )
            continue
        canonical.append(_replace(reg, task=name) if name != reg.task else reg)
    reg_map = _merge_entries(canonical, "registration", errors)

    arch_map: dict[str, Architecture] = {}
    for arch in architectures:
        prior = arch_map.get(arch.name)
        arch_map[arch.name] = arch if prior is None else combine_architectures(prior, arch)
    for name, arch in arch_map.items():
        if arch.parallel:  # one plan per builder: a second one conflicts unless it overrides from a later source
            plans = _merge_entries(list(arch.parallel), "parallel plan", errors)
            arch_map[name] = _replace(arch, parallel=tuple(plans[key] for key in sorted(plans)))
    class_map = _merge_component_classes(architectures, task_map, alias_map, reg_map, errors)
    ckpt_map = _merge_entries(checkpoints, "checkpoint", errors)
    for ckpt in ckpt_map.values():
        if ckpt.architecture and ckpt.architecture not in arch_map:
            errors.append(
                UnknownArchitectureError(
                    f"checkpoint {ckpt.name!r} names unknown architecture {ckpt.architecture!r}",
                    file=ckpt.provenance.file,
                    line=ckpt.provenance.line,
                    hint=_did_you_mean(ckpt.architecture, arch_map) or None,
                )
            )
    if errors:
        return None
    return Table(task_map, arch_map, reg_map, ckpt_map, sources, component_classes=class_map)


def _merge_component_classes(
    architectures: list[Architecture],
    tasks: Mapping[str, Task],
    aliases: Mapping[str, str],
    registrations: Mapping[tuple[str, str], Registration],
    errors: list[FactoryError],
) -> dict[tuple[str, str], ComponentClass]:
    """Component class names -> architecture, merged like registrations; each must reach a registration."""
    candidates: list[ComponentClass] = []
    for arch in architectures:
        for claim in arch.component_classes:
            name = aliases.get(claim.task, claim.task)
            task = tasks.get(name)
            file, line = claim.provenance.file, claim.provenance.line
            if task is None:
                hint = _did_you_mean(claim.task, [t for t in tasks if tasks[t].group == "component"])
                unknown = UnknownTaskError(
                    f"component_classes: unknown task {claim.task!r}", hint=hint, file=file, line=line
                )
                errors.append(unknown)
            elif task.group != "component" or name == "config":
                errors.append(
                    RegistryError(
                        f"component_classes: {claim.task!r} is not a component built from its own files",
                        hint="component_classes lists tokenizer, feature-extractor, image-processor, processor "
                        "or video-processor class names",
                        file=file,
                        line=line,
                    )
                )
            else:
                candidates.append(_replace(claim, task=name) if name != claim.task else claim)
    merged: dict[tuple[str, str], ComponentClass] = _merge_entries(candidates, "component class", errors)
    for claim in merged.values():
        if (claim.task, claim.architecture) not in registrations:
            errors.append(
                RegistryError(
                    f"component class {claim.name} is declared for architecture {claim.architecture!r}, "
                    f"which registers no {claim.task}",
                    file=claim.provenance.file,
                    line=claim.provenance.line,
                    hint=f"register a {claim.task} for {claim.architecture!r} (components:), or declare the class "
                    "in the architecture that serves it",
                )
            )
    return merged


def combine_architectures(prior: Architecture, arch: Architecture) -> Architecture:
    """One architecture defined in several files: ``prior`` (earlier in source order) and ``arch``."""
    return Architecture(
        name=arch.name,
        summary=prior.summary or arch.summary,
        files=prior.files + arch.files,
        rules=prior.rules + arch.rules,
        shares_targets_with=tuple(sorted({*prior.shares_targets_with, *arch.shares_targets_with})),
        lint=FrozenDict({**arch.lint, **prior.lint}),
        parallel=prior.parallel + arch.parallel,
        component_classes=prior.component_classes + arch.component_classes,
    )


def _check_aliases(tasks: Mapping[str, Task], errors: list[FactoryError]) -> None:
    owners: dict[str, Task] = {}
    for task in tasks.values():
        for alias in task.aliases:
            if alias in tasks:
                errors.append(
                    AliasError(
                        f"alias {alias!r} of task {task.name!r} is itself a task name",
                        file=task.provenance.file,
                        line=task.provenance.line,
                        hint="an alias must name one task only; remove it",
                    )
                )
            elif alias in owners:
                other = owners[alias]
                errors.append(
                    AliasError(
                        f"ambiguous alias {alias!r}: tasks {other.name!r} "
                        f"({other.provenance.file}:{other.provenance.line}) "
                        f"and {task.name!r} both claim it",
                        file=task.provenance.file,
                        line=task.provenance.line,
                        hint="an alias must name one task only; remove it from one of them",
                    )
                )
            else:
                owners[alias] = task
