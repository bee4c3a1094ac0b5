"""Validated registry documents turned into candidate table entries (tasks, registrations,
architectures, checkpoints), each with its provenance, in source order, ready to merge."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from factory.errors import FactoryError
from factory.registry.sources import Source
from factory.registry.table import (
    Architecture,
    Checkpoint,
    ComponentClass,
    Deprecation,
    DivisibleRule,
    FsdpUnit,
    ParallelPlan,
    PlanEntry,
    Provenance,
    Registration,
    Rule,
    Task,
    _freeze,
)

if TYPE_CHECKING:
    from factory.registry.yamlio import Document

Entries = tuple[list[Task], list[Registration], list[Architecture], list[Checkpoint], list[FactoryError]]


def _provenance(doc: Document, source: Source) -> Callable[..., Provenance]:
    """``prov(*path)``: the provenance of the node at ``path`` of ``doc``."""

    def prov(*path: str | int) -> Provenance:
        return Provenance(str(doc.path), doc.line(*path), source.kind, source.distribution, source.version)

    return prov


def entries_from(docs: Sequence[tuple[Document, Source]]) -> Entries:
    """Turn validated documents into candidate table entries, in source order."""
    tasks: list[Task] = []
    regs: list[Registration] = []
    archs: list[Architecture] = []
    ckpts: list[Checkpoint] = []
    errors: list[FactoryError] = []
    for doc, source in docs:
        data = doc.data
        prov = _provenance(doc, source)

        kind = data["kind"]
        if kind == "tasks":
            for i, item in enumerate(data["tasks"]):
                tasks.append(
                    Task(
                        name=item["name"],
                        group=item["group"],
                        summary=item["summary"],
                        auto_class=item["auto_class"],
                        aliases=tuple(item.get("aliases", ())),
                        provenance=prov("tasks", i),
                        override=item.get("override"),
                    )
                )
        elif kind == "architecture":
            archs.append(_architecture(data, prov))
            regs.extend(_registrations(data, prov, errors))
        elif kind == "checkpoints":
            for name, item in data["checkpoints"].items():
                path = item.get("path")
                ckpts.append(
                    Checkpoint(
                        name=name,
                        provenance=prov("checkpoints", name),
                        hub=_freeze(item.get("hub")),
                        package=_freeze(item.get("package")),
                        path=str((doc.path.parent / path).resolve()) if path else None,
                        path_as_written=path,
                        sha256=_freeze(item.get("sha256", {})),
                        architecture=item.get("architecture"),
                        summary=item.get("summary", ""),
                        override=item.get("override"),
                        deprecated=Deprecation(**item["deprecated"]) if "deprecated" in item else None,
                        lint=_freeze(item.get("lint", {})),
                    )
                )
    return tasks, regs, archs, ckpts, errors


def _architecture(data: dict[str, Any], prov: Callable[..., Provenance]) -> Architecture:
    name = data["architecture"]
    rules = tuple(
        Rule(
            architecture=name,
            when=_freeze(rule["when"]),
            dispatch_as=rule["dispatch_as"],
            provenance=prov("rules", i),
            reason=rule.get("reason"),
        )
        for i, rule in enumerate(data.get("rules", ()))
    )
    layer = data.get("layer", "native")
    classes = tuple(
        ComponentClass(
            task=task,
            name=item if isinstance(item, str) else item["name"],
            architecture=name,
            provenance=prov("component_classes", task, i),
            layer=layer,
            override=None if isinstance(item, str) else item.get("override"),
        )
        for task, items in data.get("component_classes", {}).items()
        for i, item in enumerate(items)
    )
    return Architecture(
        name=name,
        summary=data.get("summary", ""),
        files=(prov(),),
        rules=rules,
        shares_targets_with=tuple(data.get("shares_targets_with", ())),
        lint=_freeze(data.get("lint", {})),
        parallel=(_parallel(data, prov),) if "parallel" in data else (),
        component_classes=classes,
    )


def _parallel(data: dict[str, Any], prov: Callable[..., Provenance]) -> ParallelPlan:
    """The ``parallel:`` section (schema-validated), each rule with its own file:line."""
    section = data["parallel"]
    tp = []
    for path, value in section.get("tp", {}).items():
        if isinstance(value, str):
            tp.append(PlanEntry(path, value, prov("parallel", "tp", path)))
        else:
            tp.append(PlanEntry(path, value["style"], prov("parallel", "tp", path), int(value["parts"])))
    divisible = []
    for key, value in section.get("divisible", {}).items():
        spec = {"by": value} if isinstance(value, str) else value
        divisible.append(
            DivisibleRule(
                key,
                prov("parallel", "divisible", key),
                spec["by"],
                spec.get("else", "error"),
                tuple(spec.get("modules", ())),
            )
        )
    fsdp = [FsdpUnit(path, prov("parallel", "fsdp", i)) for i, path in enumerate(section.get("fsdp", ()))]
    return ParallelPlan(
        architecture=data["architecture"],
        builder=data.get("builder", "native"),
        provenance=prov("parallel"),
        tp=tuple(tp),
        divisible=tuple(divisible),
        fsdp=tuple(fsdp),
        layer=data.get("layer", "native"),
        override=section.get("override"),
    )


def _registrations(
    data: dict[str, Any], prov: Callable[..., Provenance], errors: list[FactoryError]
) -> list[Registration]:
    arch = data["architecture"]
    common = {"architecture": arch, "builder": data.get("builder", "native"), "layer": data.get("layer", "native")}
    entries: list[tuple[str, Any, tuple[str, ...]]] = []
    if "config" in data:
        entries.append(("config", data["config"], ("config",)))
    for section in ("tasks", "components"):
        for task, value in data.get(section, {}).items():
            entries.append((task, value, (section, task)))
    out = []
    for task, value, path in entries:
        spec: dict[str, Any] = {"target": value} if isinstance(value, str) else value
        out.append(
            Registration(
                task=task,
                target=spec["target"],
                provenance=prov(*path),
                override=spec.get("override"),
                deprecated=Deprecation(**spec["deprecated"]) if "deprecated" in spec else None,
                lint=_freeze(spec.get("lint", {})),
                **common,
            )
        )
    return out
