"""``factory diff``: what a registry change does to dispatch.

Two sides, each a git revision of the current repository (read from git
objects; the working tree is never touched), a directory, or the working tree,
are merged into tables exactly as the loader merges its sources. The tables,
not the YAML lines, are compared: a reformat or a file move changes nothing,
and every change is reported per task and architecture with ``file:line`` on
its side.

Where built-in tasks come from, per side (``builtin=``):

- ``side``: the side's registry directory *is* the built-in registry (this
  repository's ``registry.d/``);
- ``installed``: the side's files are layered, as a ``path`` source, over the
  installed factory's built-in registry (a plugin repository's ``registry.d/``);
- ``auto`` (default): ``side`` when the side's (first) registry directory has
  a task table (``tasks.yaml``) at its top, else ``installed``.

Further registry directories (``dirs``) are read after it as ``path`` sources,
so they may override it, as ``FACTORY_REGISTRY_PATH`` directories would.

Plugins and ``FACTORY_REGISTRY_PATH`` are left out of both sides: a diff
compares the repository, not the machine it runs on.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.errors import FactoryError, RegistryError
from factory.paths import display_path
from factory.registry import sources as registry_sources
from factory.registry.loader import load_sources
from factory.registry.sources import Source
from factory.registry.table import Checkpoint, ComponentClass, ParallelPlan, Provenance, Registration, Rule, Table
from factory.registry.yamlio import Document
from factory.review.selection import has_task_table

SECTIONS = (
    "task",
    "alias",
    "architecture",
    "registration",
    "override",
    "rule",
    "parallel",
    "component_class",
    "checkpoint",
)
SECTION_TITLES = {
    "task": "Tasks",
    "alias": "Task aliases",
    "architecture": "Architectures",
    "registration": "Registrations",
    "override": "Overrides",
    "rule": "Dispatch rules",
    "parallel": "Parallel plans",
    "component_class": "Component classes",
    "checkpoint": "Named checkpoints",
}
BUILTIN_MODES = ("auto", "side", "installed")
#: Markdown sections with more items than this are folded into <details>.
FOLD_AFTER = 10


class DiffError(RegistryError):
    """A side of ``factory diff`` cannot be read (bad revision or directory, or it does not load)."""


# --- the result ----------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One difference between the two tables."""

    section: str  # one of SECTIONS
    change: str  # added | removed | retargeted | changed | re-pinned | moved | reordered | ...
    key: str  # "causal-lm / llama", a checkpoint name, a task, an alias
    summary: str  # one line for people
    dispatch: bool  # does it change what a build resolves to?
    old_at: str | None = None  # file:line on the base side
    new_at: str | None = None  # file:line on the head side
    old: Any = None  # JSON-able content on the base side
    new: Any = None
    details: tuple[str, ...] = ()  # extra lines: what an override shadows, changed hashes

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "change": self.change,
            "key": self.key,
            "summary": self.summary,
            "dispatch": self.dispatch,
            "old_at": self.old_at,
            "new_at": self.new_at,
            "old": self.old,
            "new": self.new,
            "details": list(self.details),
        }


@dataclass(frozen=True)
class SideInfo:
    label: str
    digest: str
    commit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "commit": self.commit, "digest": self.digest}


@dataclass(frozen=True)
class Diff:
    base: SideInfo
    head: SideInfo
    changes: tuple[Change, ...] = ()

    @property
    def dispatch_changed(self) -> bool:
        return any(c.dispatch for c in self.changes)

    def counts(self) -> dict[str, int]:
        n = sum(c.dispatch for c in self.changes)
        return {"dispatch": n, "other": len(self.changes) - n}

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.as_dict(),
            "head": self.head.as_dict(),
            "dispatch_changed": self.dispatch_changed,
            "counts": self.counts(),
            "changes": [c.as_dict() for c in self.changes],
        }


# --- comparing tables ---------------------------------------------------------------
def _at(prov: Provenance | None) -> str | None:
    if prov is None:
        return None
    file = prov.file
    if os.path.isabs(file):
        file = display_path(file)
    return f"{file}:{prov.line}"


def _target(reg: Registration) -> str:
    return reg.target + (f" (builder: {reg.builder})" if reg.builder != "native" else "")


def _shadow_lines(entry: Any) -> tuple[str, ...]:
    out = []
    for s in entry.shadows:
        if isinstance(s, Registration):
            what = _target(s)
        elif isinstance(s, Checkpoint):
            what = _ckpt_source(s)
        elif isinstance(s, ComponentClass):
            what = f"-> {s.architecture}"
        else:
            what = s.name
        layer = f", {s.layer} layer" if isinstance(s, (Registration, ComponentClass)) and s.layer != "native" else ""
        out.append(f"shadows {what} ({_at(s.provenance)}, {s.provenance.source}{layer})")
    return tuple(out)


def diff_tables(
    old: Table,
    new: Table,
    *,
    base_label: str = "old",
    head_label: str = "new",
    base_commit: str | None = None,
    head_commit: str | None = None,
) -> Diff:
    """Every semantic difference between two tables, in a stable order."""
    changes: list[Change] = []
    changes += _diff_tasks(old, new)
    changes += _diff_aliases(old, new)
    changes += _diff_architectures(old, new)
    changes += _diff_registrations(old, new)
    changes += _diff_rules(old, new)
    changes += _diff_parallel(old, new)
    changes += _diff_component_classes(old, new)
    changes += _diff_checkpoints(old, new)
    order = {s: i for i, s in enumerate(SECTIONS)}
    changes.sort(key=lambda c: order[c.section])  # stable: keeps key order within a section
    return Diff(
        SideInfo(base_label, old.digest, base_commit), SideInfo(head_label, new.digest, head_commit), tuple(changes)
    )


def _diff_tasks(old: Table, new: Table) -> Iterable[Change]:
    for name in sorted({*old.tasks, *new.tasks}):
        a, b = old.tasks.get(name), new.tasks.get(name)
        if a is None:
            assert b is not None  # the key is in one of the two tables
            yield Change(
                "task",
                "added",
                name,
                f"task {name} added ({b.group}, {b.auto_class})",
                True,
                new_at=_at(b.provenance),
                new=b.content(),
            )
        elif b is None:
            yield Change(
                "task",
                "removed",
                name,
                f"task {name} removed (was {a.group}, {a.auto_class})",
                True,
                old_at=_at(a.provenance),
                old=a.content(),
            )
        else:
            ca = {k: v for k, v in a.content().items() if k != "aliases"}
            cb = {k: v for k, v in b.content().items() if k != "aliases"}
            if ca != cb:
                what = ", ".join(f"{k}: {ca[k]!r} -> {cb[k]!r}" for k in ca if ca[k] != cb[k])
                yield Change(
                    "task",
                    "changed",
                    name,
                    f"task {name}: {what}",
                    ca["group"] != cb["group"],
                    old_at=_at(a.provenance),
                    new_at=_at(b.provenance),
                    old=ca,
                    new=cb,
                )


def _diff_aliases(old: Table, new: Table) -> Iterable[Change]:
    for alias in sorted({*old.aliases, *new.aliases}):
        a, b = old.aliases.get(alias), new.aliases.get(alias)
        if a == b:
            continue
        old_at = _at(old.tasks[a].provenance) if a else None
        new_at = _at(new.tasks[b].provenance) if b else None
        if a is None:
            yield Change("alias", "added", alias, f"alias {alias} -> {b}", True, new_at=new_at, new=b)
        elif b is None:
            yield Change("alias", "removed", alias, f"alias {alias} removed (was -> {a})", True, old_at=old_at, old=a)
        else:
            yield Change(
                "alias", "moved", alias, f"alias {alias}: {a} -> {b}", True, old_at=old_at, new_at=new_at, old=a, new=b
            )


def _diff_architectures(old: Table, new: Table) -> Iterable[Change]:
    for name in sorted({*old.architectures, *new.architectures}):
        a, b = old.architectures.get(name), new.architectures.get(name)
        if a is None:
            assert b is not None  # the key is in one of the two tables
            yield Change(
                "architecture",
                "added",
                name,
                f"architecture {name} added",
                True,
                new_at=_at(b.files[0] if b.files else None),
                new=b.content(),
            )
        elif b is None:
            yield Change(
                "architecture",
                "removed",
                name,
                f"architecture {name} removed",
                True,
                old_at=_at(a.files[0] if a.files else None),
                old=a.content(),
            )
        elif a.content() != b.content():
            ca, cb = a.content(), b.content()
            what = ", ".join(f"{k}: {ca[k]!r} -> {cb[k]!r}" for k in ca if ca[k] != cb[k])
            yield Change(
                "architecture",
                "changed",
                name,
                f"architecture {name}: {what}",
                False,
                old_at=_at(a.files[0] if a.files else None),
                new_at=_at(b.files[0] if b.files else None),
                old=ca,
                new=cb,
            )


def _reg_json(reg: Registration) -> dict[str, Any]:
    out = reg.content()
    out["shadows"] = [s.content() for s in reg.shadows]
    return out


def _diff_registrations(old: Table, new: Table) -> Iterable[Change]:
    for key in sorted({*old.registrations, *new.registrations}):
        a, b = old.registrations.get(key), new.registrations.get(key)
        label = f"{key[0]} / {key[1]}"
        if a is None:
            assert b is not None  # the key is in one of the two tables
            section = "override" if b.override else "registration"
            summary = f"{label} -> {_target(b)}" + (f" (override: {b.override})" if b.override else "")
            yield Change(
                section,
                "added",
                label,
                summary,
                True,
                new_at=_at(b.provenance),
                new=_reg_json(b),
                details=_shadow_lines(b),
            )
            continue
        if b is None:
            yield Change(
                "override" if a.override else "registration",
                "removed",
                label,
                f"{label} removed (was -> {_target(a)})",
                True,
                old_at=_at(a.provenance),
                old=_reg_json(a),
            )
            continue
        if _reg_json(a) == _reg_json(b):
            continue
        moved = (a.target, a.builder) != (b.target, b.builder)
        where: dict[str, Any] = {
            "old_at": _at(a.provenance),
            "new_at": _at(b.provenance),
            "old": _reg_json(a),
            "new": _reg_json(b),
        }
        if bool(a.override) != bool(b.override):
            if b.override:
                summary = f"{label}: override added ({b.override}): {_target(a)} -> {_target(b)}"
                yield Change("override", "added", label, summary, moved, details=_shadow_lines(b), **where)
            else:
                summary = f"{label}: override removed: {_target(a)} -> {_target(b)}"
                yield Change("override", "removed", label, summary, moved, details=_shadow_lines(b), **where)
            continue
        if moved:
            yield Change(
                "registration",
                "retargeted",
                label,
                f"{label}: {_target(a)} -> {_target(b)}",
                True,
                details=_shadow_lines(b),
                **where,
            )
            continue
        shadows_a = [s.content() for s in a.shadows]
        shadows_b = [s.content() for s in b.shadows]
        if shadows_a != shadows_b and b.override:
            yield Change(
                "override",
                "changed",
                label,
                f"{label}: the override of {_target(b)} now shadows other entries",
                False,
                details=_shadow_lines(b),
                **where,
            )
            continue
        ca, cb = a.content(), b.content()
        what = [f"{k}: {_short(ca[k])} -> {_short(cb[k])}" for k in ca if ca[k] != cb[k]]
        if shadows_a != shadows_b:
            what.append("what it shadows changed (target unchanged)")
        yield Change(
            "registration", "changed", label, f"{label}: " + "; ".join(what), False, details=_shadow_lines(b), **where
        )


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else "none"
    return "none" if value is None else repr(value)


def _rule_key(rule: Rule) -> str:
    return json.dumps(rule.content()["when"], sort_keys=True, default=str)


def _diff_rules(old: Table, new: Table) -> Iterable[Change]:
    for arch in sorted({*old.architectures, *new.architectures}):
        ra = old.architectures[arch].rules if arch in old.architectures else ()
        rb = new.architectures[arch].rules if arch in new.architectures else ()
        if [r.content() for r in ra] == [r.content() for r in rb]:
            continue
        by_a = {_rule_key(r): r for r in reversed(ra)}  # first occurrence wins, as in dispatch
        by_b = {_rule_key(r): r for r in reversed(rb)}
        for r in rb:
            k = _rule_key(r)
            if k not in by_a:
                yield Change(
                    "rule",
                    "added",
                    f"{arch}: {r.describe()}",
                    f"rule added: {r.describe()}",
                    True,
                    new_at=_at(r.provenance),
                    new=r.content(),
                    details=_reason(r),
                )
        for r in ra:
            k = _rule_key(r)
            if k not in by_b:
                yield Change(
                    "rule",
                    "removed",
                    f"{arch}: {r.describe()}",
                    f"rule removed: {r.describe()}",
                    True,
                    old_at=_at(r.provenance),
                    old=r.content(),
                )
        for r in rb:
            k = _rule_key(r)
            prev = by_a.get(k)
            if prev is None or by_b[k] is not r:
                continue
            where: dict[str, Any] = {
                "old_at": _at(prev.provenance),
                "new_at": _at(r.provenance),
                "old": prev.content(),
                "new": r.content(),
            }
            if prev.dispatch_as != r.dispatch_as:
                yield Change(
                    "rule",
                    "changed",
                    f"{arch}: {r.describe()}",
                    f"rule changed: {r.describe()} (was -> {prev.dispatch_as})",
                    True,
                    **where,
                )
            elif prev.reason != r.reason:
                yield Change(
                    "rule",
                    "changed",
                    f"{arch}: {r.describe()}",
                    f"rule reason changed: {r.describe()}",
                    False,
                    details=_reason(r),
                    **where,
                )
        order_a = [_rule_key(r) for r in ra if _rule_key(r) in by_b]
        order_b = [_rule_key(r) for r in rb if _rule_key(r) in by_a]
        if order_a != order_b:
            yield Change(
                "rule",
                "reordered",
                arch,
                f"rules of {arch} reordered (the first matching rule wins)",
                True,
                old_at=_at(ra[0].provenance),
                new_at=_at(rb[0].provenance),
                old=[r.content() for r in ra],
                new=[r.content() for r in rb],
            )


def _plans(table: Table) -> dict[tuple[str, str], ParallelPlan]:
    return {p.key: p for a in table.architectures.values() for p in a.parallel}


def _diff_parallel(old: Table, new: Table) -> Iterable[Change]:
    """Parallel plans: a plan added or removed, a style, divisibility rule or FSDP unit changed.

    How a build splits over ranks is part of what it resolves to: every such change is a dispatch change.
    """
    plans_a, plans_b = _plans(old), _plans(new)
    for key in sorted({*plans_a, *plans_b}):
        a, b = plans_a.get(key), plans_b.get(key)
        label = f"{key[0]} ({key[1]} builder)"
        if a is None:
            assert b is not None
            yield Change(
                "parallel",
                "added",
                label,
                f"parallel plan of {label} added: {len(b.tp)} tp rule(s)",
                True,
                new_at=_at(b.provenance),
                new=b.content(),
            )
            continue
        if b is None:
            yield Change(
                "parallel",
                "removed",
                label,
                f"parallel plan of {label} removed",
                True,
                old_at=_at(a.provenance),
                old=a.content(),
            )
            continue
        if a.content() == b.content():
            continue
        tp_a, tp_b = {e.path: e for e in a.tp}, {e.path: e for e in b.tp}
        yield from _keyed_changes(f"{label}: ", key[0], "tp", tp_a, tp_b)
        rules_a, rules_b = {r.key: r for r in a.divisible}, {r.key: r for r in b.divisible}
        yield from _keyed_changes(f"{label}: divisible ", key[0], "check", rules_a, rules_b)
        fsdp_a, fsdp_b = [u.path for u in a.fsdp], [u.path for u in b.fsdp]
        if fsdp_a != fsdp_b:
            yield Change(
                "parallel",
                "changed",
                f"{label}: fsdp",
                f"{key[0]}: fsdp units {fsdp_a} -> {fsdp_b}",
                True,
                old_at=_at(a.provenance),
                new_at=_at(b.provenance),
                old=fsdp_a,
                new=fsdp_b,
            )
        if a.override != b.override:
            yield Change(
                "parallel",
                "changed",
                f"{label}: override",
                f"{key[0]}: plan override reason changed",
                False,
                old_at=_at(a.provenance),
                new_at=_at(b.provenance),
                old=a.override,
                new=b.override,
            )


def _keyed_changes(
    prefix: str, arch: str, what: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> Iterable[Change]:
    """Parallel-plan items (``tp`` entries, ``check`` rules) added, removed or changed, key by key."""
    for key in sorted({*old, *new}):
        a, b = old.get(key), new.get(key)
        if a is not None and b is not None and a.content() == b.content():
            continue
        if a is None:
            assert b is not None
            change, summary = "added", f"{arch}: {what} {b.describe()} added"
        elif b is None:
            change = "removed"
            summary = f"{arch}: {what} {a.describe()} removed" + (" (now replicated)" if what == "tp" else "")
        else:
            old_text, new_text = a.describe(), b.describe()
            if what == "tp":  # "path: style" -> the styles
                old_text, new_text = old_text.partition(": ")[2], new_text.partition(": ")[2]
            change, summary = "changed", f"{arch}: {what} {key}: {old_text} -> {new_text}"
        yield Change(
            "parallel",
            change,
            prefix + key,
            summary,
            True,
            old_at=_at(a.provenance) if a is not None else None,
            new_at=_at(b.provenance) if b is not None else None,
            old=a.content() if a is not None else None,
            new=b.content() if b is not None else None,
        )


def _class_json(c: ComponentClass) -> dict[str, Any]:
    out = c.content()
    out["shadows"] = [s.content() for s in c.shadows]
    return out


def _diff_component_classes(old: Table, new: Table) -> Iterable[Change]:
    """Component class names (``image_processor_type``, ...) that dispatch elsewhere, appear or vanish."""
    for key in sorted({*old.component_classes, *new.component_classes}):
        a, b = old.component_classes.get(key), new.component_classes.get(key)
        label = f"{key[0]} / {key[1]}"
        if a is None:
            assert b is not None
            override = f" (override: {b.override})" if b.override else ""
            yield Change(
                "component_class",
                "added",
                label,
                f"{b.describe()}{override}",
                True,
                new_at=_at(b.provenance),
                new=_class_json(b),
                details=_shadow_lines(b),
            )
        elif b is None:
            yield Change(
                "component_class",
                "removed",
                label,
                f"{label} removed (was -> {a.architecture})",
                True,
                old_at=_at(a.provenance),
                old=_class_json(a),
            )
        elif _class_json(a) != _class_json(b):
            where: dict[str, Any] = {
                "old_at": _at(a.provenance),
                "new_at": _at(b.provenance),
                "old": _class_json(a),
                "new": _class_json(b),
            }
            if a.architecture != b.architecture:
                yield Change(
                    "component_class",
                    "moved",
                    label,
                    f"{label}: {a.architecture} -> {b.architecture}",
                    True,
                    details=_shadow_lines(b),
                    **where,
                )
            else:
                ca, cb = a.content(), b.content()
                what = [f"{k}: {_short(ca[k])} -> {_short(cb[k])}" for k in ca if ca[k] != cb[k]]
                if [s.content() for s in a.shadows] != [s.content() for s in b.shadows]:
                    what.append("what it shadows changed (architecture unchanged)")
                yield Change(
                    "component_class",
                    "changed",
                    label,
                    f"{label}: " + "; ".join(what),
                    False,
                    details=_shadow_lines(b),
                    **where,
                )


def _reason(rule: Rule) -> tuple[str, ...]:
    return (f"reason: {rule.reason}",) if rule.reason else ()


def _ckpt_source(c: Checkpoint) -> str:
    if c.hub:
        sub = f" (subfolder {c.hub['subfolder']})" if c.hub.get("subfolder") else ""
        return f"hub {c.hub['repo']}@{c.hub.get('revision') or '<default branch>'}{sub}"
    if c.package:
        return f"package {c.package['distribution']}:{c.package['path']}"
    return f"path {c.path_as_written}"


_CKPT_DISPATCH = ("hub", "path", "package", "sha256", "architecture")


def _hash_lines(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    out = []
    for name in sorted({*a, *b}):
        x, y = a.get(name), b.get(name)
        if x != y:
            out.append(f"sha256 {name}: {x[:16] + '…' if x else 'none'} -> {y[:16] + '…' if y else 'none'}")
    return out


def _diff_checkpoints(old: Table, new: Table) -> Iterable[Change]:
    for name in sorted({*old.checkpoints, *new.checkpoints}):
        a, b = old.checkpoints.get(name), new.checkpoints.get(name)
        if a is None:
            assert b is not None  # the key is in one of the two tables
            arch = f" ({b.architecture})" if b.architecture else ""
            yield Change(
                "override" if b.override else "checkpoint",
                "added",
                name,
                f"checkpoint {name}{arch} -> {_ckpt_source(b)}",
                True,
                new_at=_at(b.provenance),
                new=b.content(),
                details=tuple(_hash_lines({}, b.sha256)) + _shadow_lines(b),
            )
            continue
        if b is None:
            yield Change(
                "override" if a.override else "checkpoint",
                "removed",
                name,
                f"checkpoint {name} removed (was -> {_ckpt_source(a)})",
                True,
                old_at=_at(a.provenance),
                old=a.content(),
            )
            continue
        ca, cb = a.content(), b.content()
        if ca == cb and [s.content() for s in a.shadows] == [s.content() for s in b.shadows]:
            continue
        where: dict[str, Any] = {"old_at": _at(a.provenance), "new_at": _at(b.provenance), "old": ca, "new": cb}
        dispatch = any(ca[k] != cb[k] for k in _CKPT_DISPATCH)
        hashes = _hash_lines(a.sha256, b.sha256)
        if bool(a.override) != bool(b.override):
            verb = "added" if b.override else "removed"
            yield Change(
                "override",
                verb,
                name,
                f"checkpoint {name}: override {verb}: {_ckpt_source(a)} -> {_ckpt_source(b)}",
                dispatch,
                details=tuple(hashes) + _shadow_lines(b),
                **where,
            )
            continue
        ha, hb = dict(a.hub or {}), dict(b.hub or {})
        if (
            ha
            and hb
            and ha.get("revision") != hb.get("revision")
            and {k: v for k, v in ha.items() if k != "revision"} == {k: v for k, v in hb.items() if k != "revision"}
        ):
            yield Change(
                "checkpoint",
                "re-pinned",
                name,
                f"checkpoint {name} re-pinned: {ha['repo']} {ha.get('revision') or '<default branch>'} -> "
                f"{hb.get('revision') or '<default branch>'}",
                True,
                details=tuple(hashes),
                **where,
            )
        elif dispatch:
            what = [k for k in _CKPT_DISPATCH if ca[k] != cb[k]]
            summary = f"checkpoint {name} changed ({', '.join(what)}): {_ckpt_source(a)}" + (
                f" -> {_ckpt_source(b)}" if _ckpt_source(a) != _ckpt_source(b) else ""
            )
            yield Change("checkpoint", "changed", name, summary, True, details=tuple(hashes), **where)
        else:
            what = [f"{k}: {_short(ca[k])} -> {_short(cb[k])}" for k in ca if ca[k] != cb[k]] or ["shadowed entries"]
            yield Change(
                "checkpoint",
                "changed",
                name,
                f"checkpoint {name}: " + "; ".join(what),
                False,
                details=_shadow_lines(b),
                **where,
            )


# --- reading a side -------------------------------------------------------------------
@dataclass(frozen=True)
class Side:
    """One side of a diff: a label, the commit when it came from git, and its table."""

    label: str
    table: Table
    commit: str | None = None
    files: tuple[str, ...] = field(default=())


def git(args: Sequence[str], repo: Path, *, input: bytes | None = None) -> bytes:
    """Run git in ``repo``; a failure becomes a :class:`DiffError`."""
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True, check=False)
    except FileNotFoundError:
        raise DiffError("git is not installed", hint="install git, or compare two directories") from None
    if proc.returncode != 0:
        raise DiffError(
            f"git {' '.join(args[:2])} failed: {proc.stderr.decode(errors='replace').strip()}",
            hint="check the revision and that you are inside a git repository",
        )
    return proc.stdout


def repo_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The top of the git working tree containing ``start`` (default: the working directory)."""
    start = Path(start or ".").resolve()
    try:
        out = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "--show-toplevel"], capture_output=True, check=False, text=True
        )
    except FileNotFoundError:
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def _commit_of(rev: str, repo: Path) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def extract_revision(commit: str, repo: Path, dirs: Sequence[str], dest: Path) -> list[str]:
    """Write the YAML blobs under ``dirs`` at ``commit`` into ``dest``; returns their repo-relative paths."""
    listing = git(["ls-tree", "-r", "-z", "--full-tree", commit, "--", *dirs], repo)
    blobs: list[tuple[str, str]] = []
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, _, path = item.partition(b"\t")
        mode, kind, oid = meta.decode().split()
        name = path.decode("utf-8", errors="surrogateescape")
        if kind == "blob" and mode in ("100644", "100755") and name.endswith((".yaml", ".yml")):
            blobs.append((oid, name))
    if not blobs:
        return []
    out = git(["cat-file", "--batch"], repo, input="".join(f"{oid}\n" for oid, _ in blobs).encode())
    pos = 0
    for _, name in blobs:
        header_end = out.index(b"\n", pos)
        _oid, _kind, size = out[pos:header_end].decode().split()
        start = header_end + 1
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(out[start : start + int(size)])
        pos = start + int(size) + 1
    return [name for _, name in blobs]


def _relocate(path: Path, root: Path) -> Path:
    try:
        return Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return Path(path)


def load_tree(root: Path, dirs: Sequence[str], *, builtin: str = "auto", label: str = "") -> Table:
    """Merge the registry directories ``dirs`` of the tree at ``root``, as the loader would.

    Provenance file names become relative to ``root``. Raises :class:`DiffError`
    listing every problem when the side does not load.
    """
    roots = [root / d for d in dirs if (root / d).exists()]
    complete = builtin == "side" or (builtin == "auto" and bool(roots) and has_task_table(roots[0]))
    sources = [] if complete else [Source("builtin", registry_sources.builtin_dir())]
    sources += [Source("builtin" if complete and i == 0 else "path", r) for i, r in enumerate(roots)]

    def here(doc: Document, source: Source) -> Document:
        return Document(_relocate(doc.path, root), doc.data, doc.positions) if source.root in roots else doc

    result = load_sources(sources, relocate=here)
    errors, table = result.errors, result.table
    if errors or table is None:
        for err in errors:
            if err.file:
                err.file = _relocate(Path(err.file), root).as_posix()
        first = "; ".join(f"{e.location}: {e.message}" if e.location else e.message for e in errors[:3])
        more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
        raise DiffError(
            f"{label or root} does not load: {len(errors)} problem(s): {first}{more}",
            side=label or str(root),
            problems=errors,
            hint="fix that side; `factory validate` on a checkout of it lists every problem with its hint",
        )
    return table


def read_side(
    spec: str | None, *, repo: Path | None = None, dirs: Sequence[str] = ("registry.d",), builtin: str = "auto"
) -> Side:
    """Read one side: ``None`` (the working tree), a directory, or a git revision of ``repo``."""
    if builtin not in BUILTIN_MODES:
        raise DiffError(f"builtin must be one of {', '.join(BUILTIN_MODES)}, found {builtin!r}")
    repo = repo or repo_root()
    if spec is None:
        root = repo or Path.cwd()
        return Side("working tree", load_tree(root, dirs, builtin=builtin, label="the working tree"))
    path = Path(spec).expanduser()
    if path.is_dir():
        if any((path / d).is_dir() for d in dirs):
            return Side(spec, load_tree(path, dirs, builtin=builtin, label=spec))
        return Side(spec, load_tree(path.resolve().parent, [path.resolve().name], builtin=builtin, label=spec))
    if repo is None:
        raise DiffError(
            f"{spec!r} is not a directory, and the working directory is not inside a git repository",
            hint="pass two directories, or run factory diff inside a git working tree",
        )
    commit = _commit_of(spec, repo)
    if commit is None:
        raise DiffError(
            f"{spec!r} is neither a directory nor a git revision of {repo}",
            hint="use a branch, tag, commit or expression such as HEAD~1 or origin/main",
        )
    with tempfile.TemporaryDirectory(prefix="factory-diff-") as tmp:
        names = extract_revision(commit, repo, dirs, Path(tmp))
        table = load_tree(Path(tmp), dirs, builtin=builtin, label=f"{spec} ({commit[:12]})")
    return Side(f"{spec} ({commit[:12]})", table, commit, tuple(names))


def split_range(base: str, head: str | None, repo: Path | None) -> tuple[str, str | None]:
    """``A..B`` -> (A, B); ``A...B`` -> (merge-base of A and B, B), as ``git diff`` reads them."""
    if head is not None or Path(base).exists():
        return base, head
    for sep in ("...", ".."):
        if sep in base:
            left, _, right = base.partition(sep)
            left, right = left or "HEAD", right or "HEAD"
            if sep == "..." and repo is not None:
                left = git(["merge-base", left, right], repo).decode().strip()
            return left, right
    return base, head


def diff_specs(
    base: str,
    head: str | None = None,
    *,
    dirs: Sequence[str] = ("registry.d",),
    builtin: str = "auto",
    repo: Path | None = None,
) -> Diff:
    """Read both sides and compare them."""
    repo = repo or repo_root()
    base, head = split_range(base, head, repo)
    a = read_side(base, repo=repo, dirs=dirs, builtin=builtin)
    b = read_side(head, repo=repo, dirs=dirs, builtin=builtin)
    return diff_tables(
        a.table, b.table, base_label=a.label, head_label=b.label, base_commit=a.commit, head_commit=b.commit
    )


# --- rendering --------------------------------------------------------------------------
_MARK = {"added": "+", "removed": "-"}


def _headline(diff: Diff) -> str:
    n = diff.counts()
    if not diff.changes:
        return "no dispatch change (the tables are identical)"
    if not n["dispatch"]:
        return f"no dispatch change; {n['other']} other change(s)"
    return f"{n['dispatch']} dispatch change(s)" + (f"; {n['other']} other change(s)" if n["other"] else "")


def _where(c: Change) -> str:
    if c.old_at and c.new_at:
        return f"at {c.new_at}" if c.old_at == c.new_at else f"at {c.old_at} -> {c.new_at}"
    return f"at {c.new_at}" if c.new_at else f"was at {c.old_at}" if c.old_at else ""


def render_text(diff: Diff) -> str:
    lines = [
        f"factory diff {diff.base.label} -> {diff.head.label}",
        f"table digest {diff.base.digest[:12]} -> {diff.head.digest[:12]}",
        _headline(diff),
    ]
    for section in SECTIONS:
        items = [c for c in diff.changes if c.section == section]
        if not items:
            continue
        lines += ["", SECTION_TITLES[section].lower()]
        for c in items:
            flag = "" if c.dispatch else "  (no dispatch change)"
            lines.append(f"  {_MARK.get(c.change, '~')} {c.summary}{flag}")
            lines.append(f"      {_where(c)}")
            lines += [f"      {d}" for d in c.details]
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _md_code(text: str | None) -> str:
    return f"`{text}`" if text else ""


def render_markdown(diff: Diff, *, limit: int = 100) -> str:
    """Markdown for a pull-request comment or the job summary; long sections fold.

    At most ``limit`` items per section are listed (0: all), so that a large
    change still fits a comment; the counts are always complete.
    """
    lines = [
        f"### factory diff: `{diff.base.label}` → `{diff.head.label}`",
        "",
        f"**{_headline(diff)}** · table digest `{diff.base.digest[:12]}` → `{diff.head.digest[:12]}`",
    ]
    for section in SECTIONS:
        for dispatch in (True, False):
            items = [c for c in diff.changes if c.section == section and c.dispatch == dispatch]
            if not items:
                continue
            title = f"{SECTION_TITLES[section]} ({len(items)})" + ("" if dispatch else ", no dispatch change")
            table = ["| | change | where |", "|---|---|---|"]
            shown = items[:limit] if limit and limit > 0 else items
            for c in shown:
                text = _md(c.summary) + "".join(f"<br>{_md(d)}" for d in c.details)
                table.append(f"| {_MARK.get(c.change, '~')} {c.change} | {text} | {_md_where(c)} |")
            if len(shown) < len(items):
                table.append(f"| | … and {len(items) - len(shown)} more: run `factory diff --format text` | |")
            if len(items) > FOLD_AFTER or not dispatch:
                lines += ["", f"<details><summary>{title}</summary>", "", *table, "", "</details>"]
            else:
                lines += ["", f"#### {title}", "", *table]
    return "\n".join(lines) + "\n"


def _md_where(c: Change) -> str:
    if c.old_at and c.new_at and c.old_at != c.new_at:
        return f"{_md_code(c.old_at)} → {_md_code(c.new_at)}"
    return _md_code(c.new_at or c.old_at)


def render_json(diff: Diff) -> str:
    return json.dumps(diff.as_dict(), indent=2, default=str)


RENDERERS: dict[str, Callable[[Diff], str]] = {"text": render_text, "markdown": render_markdown, "json": render_json}


def render(diff: Diff, fmt: str = "text", *, limit: int = 100) -> str:
    """``diff`` as text, markdown or json (``limit``: markdown items per section)."""
    if fmt not in RENDERERS:
        raise FactoryError(f"unknown diff format {fmt!r}", hint=f"formats: {', '.join(RENDERERS)}")
    return render_markdown(diff, limit=limit) if fmt == "markdown" else RENDERERS[fmt](diff)


__all__ = [
    "Change",
    "Diff",
    "DiffError",
    "Side",
    "SideInfo",
    "diff_specs",
    "diff_tables",
    "load_tree",
    "read_side",
    "render",
    "render_json",
    "render_markdown",
    "render_text",
]
