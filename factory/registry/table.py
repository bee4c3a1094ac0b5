"""The dispatch table: an immutable, content-hashed merge of every registry source.

Data flows one way: validated documents -> :func:`merge` -> :class:`Table`.
A table never changes; a changed registry is a new table. Every entry keeps
its :class:`Provenance`, and an entry that won over another keeps the loser
in ``shadows``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from factory.errors import (
    ConfigError,
    NoRegistrationError,
    UnknownArchitectureError,
    UnknownTaskError,
)

SOURCE_ORDER = ("builtin", "plugin", "env", "path", "runtime")

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(Mapping[K, V], Generic[K, V]):
    """A read-only, picklable mapping."""

    __slots__ = ("_data",)
    _data: dict[K, V]

    def __init__(self, data: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenDict is read-only")

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._data.items(), key=repr)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (self._data,))


class LazyDict(FrozenDict[K, V]):
    """A read-only mapping whose values are decoded from raw data on first access."""

    __slots__ = ("_decode", "_raw")
    _raw: dict[K, Any]
    _decode: Callable[[Any], V]

    def __init__(self, raw: dict[K, Any], decode: Callable[[Any], V]) -> None:
        super().__init__()
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_decode", decode)

    def __getitem__(self, key: K) -> V:
        try:
            return self._data[key]
        except KeyError:
            value = self._data[key] = self._decode(self._raw[key])
            return value

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[K]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"LazyDict({len(self._raw)} entries)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self.items()),))


@dataclass(frozen=True)
class Provenance:
    """Where an entry was defined."""

    file: str
    line: int
    source: str  # builtin | plugin | env | path | runtime | git
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        if self.distribution:
            return f"{where} ({self.source} {self.distribution} {self.version or ''})".rstrip()
        return f"{where} ({self.source})"


@dataclass(frozen=True)
class Task:
    name: str
    group: str
    summary: str
    auto_class: str
    aliases: tuple[str, ...]
    provenance: Provenance
    shadows: tuple[Task, ...] = ()
    override: str | None = None

    def content(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "summary": self.summary,
            "auto_class": self.auto_class,
            "aliases": sorted(self.aliases),
            "override": self.override,
        }


@dataclass(frozen=True)
class Deprecation:
    since: str
    remove_in: str | None = None
    replacement: str | None = None


@dataclass(frozen=True)
class Registration:
    """One ``(task, architecture) -> target`` entry."""

    task: str
    architecture: str
    target: str
    provenance: Provenance
    builder: str = "native"
    layer: str = "native"
    override: str | None = None
    deprecated: Deprecation | None = None
    lint: FrozenDict[str, str] = field(default_factory=FrozenDict)
    shadows: tuple[Registration, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.architecture)

    @property
    def module(self) -> str:
        return self.target.partition(":")[0] if ":" in self.target else self.target.rpartition(".")[0]

    @property
    def attribute(self) -> str:
        return self.target.partition(":")[2] if ":" in self.target else self.target.rpartition(".")[2]

    def content(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "architecture": self.architecture,
            "target": self.target,
            "builder": self.builder,
            "layer": self.layer,
            "override": self.override,
            "deprecated": asdict(self.deprecated) if self.deprecated else None,
            "lint": dict(sorted(self.lint.items())),
        }


@dataclass(frozen=True)
class Rule:
    """``when`` a config of ``architecture`` matches, dispatch it as ``dispatch_as``."""

    architecture: str
    when: FrozenDict[str, Any]
    dispatch_as: str
    provenance: Provenance
    reason: str | None = None

    def matches(self, config: Mapping[str, Any]) -> bool:
        when = self.when
        if "has_key" in when and when["has_key"] not in config:
            return False
        if "missing_key" in when and when["missing_key"] in config:
            return False
        return all(key in config and config[key] == value for key, value in (when.get("equals") or {}).items())

    def describe(self) -> str:
        parts = []
        if "has_key" in self.when:
            parts.append(f"has key {self.when['has_key']!r}")
        if "missing_key" in self.when:
            parts.append(f"lacks key {self.when['missing_key']!r}")
        for key, value in (self.when.get("equals") or {}).items():
            parts.append(f"{key} == {value!r}")
        return f"{self.architecture} config that {' and '.join(parts)} -> {self.dispatch_as}"

    def content(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "when": _plain(self.when),
            "dispatch_as": self.dispatch_as,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PlanEntry:
    """One tensor-parallel rule: module (or parameter) path, ``*`` for any layer index -> style."""

    path: str
    style: str
    provenance: Provenance
    parts: int | None = None  # packed styles: how many equal parts the dimension holds (q|k|v: 3)

    def content(self) -> dict[str, Any]:
        return {"path": self.path, "style": self.style, "parts": self.parts}

    def describe(self) -> str:
        return f"{self.path}: {self.style}" + (f" ({self.parts} parts)" if self.parts else "")


@dataclass(frozen=True)
class DivisibleRule:
    """A config value that must divide by the tensor-parallel size; ``otherwise`` says what happens if not:
    ``error`` (refused before any read) or ``replicate`` (each rank keeps the units of ``modules`` its
    shard of the other heads needs, when the value divides tp)."""

    key: str
    provenance: Provenance
    by: str = "tp"
    otherwise: str = "error"
    modules: tuple[str, ...] = ()

    def content(self) -> dict[str, Any]:
        return {"key": self.key, "by": self.by, "else": self.otherwise, "modules": list(self.modules)}

    def describe(self) -> str:
        text = f"{self.key} divisible by {self.by}"
        if self.otherwise == "replicate":
            text += f", else replicate {', '.join(self.modules)}"
        return text


@dataclass(frozen=True)
class FsdpUnit:
    """A module path (``*`` for any layer index) wrapped as one FSDP2 unit."""

    path: str
    provenance: Provenance


@dataclass(frozen=True)
class ParallelPlan:
    """An architecture file's ``parallel:`` section: how its ``builder``'s models split over devices."""

    architecture: str
    builder: str
    provenance: Provenance
    tp: tuple[PlanEntry, ...] = ()
    divisible: tuple[DivisibleRule, ...] = ()
    fsdp: tuple[FsdpUnit, ...] = ()
    layer: str = "native"
    override: str | None = None
    shadows: tuple[ParallelPlan, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.architecture, self.builder)

    def entry(self, path: str) -> PlanEntry | None:
        return next((e for e in self.tp if e.path == path), None)

    def content(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "builder": self.builder,
            "layer": self.layer,
            "override": self.override,
            "tp": [e.content() for e in self.tp],
            "divisible": [r.content() for r in self.divisible],
            "fsdp": [u.path for u in self.fsdp],
        }


@dataclass(frozen=True)
class ComponentClass:
    """A component class name a checkpoint's own file gives (``image_processor_type``, ``tokenizer_class``, ...)
    declared by ``architecture``: a component of that class is built by the architecture's registration."""

    task: str  # tokenizer | feature-extractor | image-processor | processor | video-processor
    name: str  # as a file writes it, without a trailing Fast / Pil: "ViTImageProcessor"
    architecture: str
    provenance: Provenance
    layer: str = "native"
    override: str | None = None
    shadows: tuple[ComponentClass, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.name)

    def describe(self) -> str:
        return f"{self.task} class {self.name} -> {self.architecture}"

    def content(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "name": self.name,
            "architecture": self.architecture,
            "layer": self.layer,
            "override": self.override,
        }


@dataclass(frozen=True)
class Architecture:
    name: str
    summary: str
    files: tuple[Provenance, ...]
    rules: tuple[Rule, ...] = ()
    shares_targets_with: tuple[str, ...] = ()
    lint: FrozenDict[str, str] = field(default_factory=FrozenDict)
    parallel: tuple[ParallelPlan, ...] = ()  # at most one per builder
    component_classes: tuple[ComponentClass, ...] = ()  # as its files declare them (the table keeps the winners)

    def parallel_for(self, builder: str) -> ParallelPlan | None:
        """The parallel plan that applies to registrations built by ``builder``."""
        return next((p for p in self.parallel if p.builder == builder), None)

    def content(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "shares_targets_with": sorted(self.shares_targets_with),
            "lint": _plain(self.lint),
        }


@dataclass(frozen=True)
class Checkpoint:
    """A named checkpoint: a reviewed short name for a pinned source."""

    name: str
    provenance: Provenance
    hub: FrozenDict[str, Any] | None = None
    path: str | None = None  # absolute, resolved against the defining file
    package: FrozenDict[str, Any] | None = None
    sha256: FrozenDict[str, str] = field(default_factory=FrozenDict)
    architecture: str | None = None
    summary: str = ""
    override: str | None = None
    deprecated: Deprecation | None = None
    lint: FrozenDict[str, str] = field(default_factory=FrozenDict)
    shadows: tuple[Checkpoint, ...] = ()

    @property
    def kind(self) -> str:
        return "hub" if self.hub else "path" if self.path else "package"

    def content(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hub": _plain(self.hub),
            "path": self.path_as_written,
            "package": _plain(self.package),
            "sha256": _plain(self.sha256),
            "architecture": self.architecture,
            "summary": self.summary,
            "override": self.override,
            "deprecated": asdict(self.deprecated) if self.deprecated else None,
            "lint": _plain(self.lint),
        }

    path_as_written: str | None = None


@dataclass(frozen=True)
class Dispatch:
    """How a config dict was mapped onto an architecture."""

    architecture: str
    via: str  # model_type | architectures
    model_type: str | None
    rules: tuple[Rule, ...] = ()


def _sorted_frozen(mapping: Mapping[K, V]) -> FrozenDict[K, V]:
    """A FrozenDict in key order; a LazyDict (already sorted, from the cache) is kept as it is."""
    if isinstance(mapping, LazyDict):
        return mapping
    return FrozenDict(sorted(mapping.items()))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def suggest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    import difflib  # only for error messages

    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = suggest(word, candidates)
    return f"did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class Table:
    """The immutable dispatch table. Build one with :func:`factory.load_registry`."""

    __slots__ = (
        "aliases",
        "architectures",
        "checkpoints",
        "component_classes",
        "digest",
        "registrations",
        "sources",
        "tasks",
    )
    tasks: FrozenDict[str, Task]
    aliases: FrozenDict[str, str]
    architectures: FrozenDict[str, Architecture]
    registrations: FrozenDict[tuple[str, str], Registration]
    checkpoints: FrozenDict[str, Checkpoint]
    component_classes: FrozenDict[tuple[str, str], ComponentClass]
    sources: tuple[str, ...]
    digest: str

    def __init__(
        self,
        tasks: Mapping[str, Task],
        architectures: Mapping[str, Architecture],
        registrations: Mapping[tuple[str, str], Registration],
        checkpoints: Mapping[str, Checkpoint],
        sources: tuple[str, ...] = (),
        *,
        component_classes: Mapping[tuple[str, str], ComponentClass] | None = None,
        digest: str | None = None,
    ) -> None:
        aliases = {alias: task.name for task in tasks.values() for alias in task.aliases}
        set_ = object.__setattr__
        set_(self, "tasks", _sorted_frozen(tasks))
        set_(self, "aliases", FrozenDict(sorted(aliases.items())))
        set_(self, "architectures", _sorted_frozen(architectures))
        set_(self, "registrations", _sorted_frozen(registrations))
        set_(self, "checkpoints", _sorted_frozen(checkpoints))
        set_(self, "component_classes", _sorted_frozen(component_classes or {}))
        set_(self, "sources", tuple(sources))
        set_(self, "digest", digest or self._compute_digest())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the dispatch table is immutable; load a new one instead")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("the dispatch table is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_table,
            (
                dict(self.tasks),
                dict(self.architectures),
                dict(self.registrations),
                dict(self.checkpoints),
                self.sources,
                dict(self.component_classes),
            ),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Table) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return (
            f"<Table {len(self.tasks)} tasks, {len(self.architectures)} architectures, "
            f"{len(self.registrations)} registrations, {len(self.checkpoints)} checkpoints, "
            f"digest {self.digest[:12]}>"
        )

    def content(self) -> dict[str, Any]:
        """The semantic content the digest is computed from (no file names or lines)."""
        return {
            "tasks": [t.content() for t in self.tasks.values()],
            "architectures": [a.content() for a in self.architectures.values()],
            "rules": [r.content() for a in self.architectures.values() for r in a.rules],
            "registrations": [r.content() for r in self.registrations.values()],
            "shadowed": [s.content() for r in self.registrations.values() for s in r.shadows],
            "shadowed_tasks": [s.content() for t in self.tasks.values() for s in t.shadows],
            "checkpoints": [c.content() for c in self.checkpoints.values()],
            "shadowed_checkpoints": [s.content() for c in self.checkpoints.values() for s in c.shadows],
            "parallel": [p.content() for a in self.architectures.values() for p in a.parallel],
            "shadowed_parallel": [
                s.content() for a in self.architectures.values() for p in a.parallel for s in p.shadows
            ],
            "component_classes": [c.content() for c in self.component_classes.values()],
            "shadowed_component_classes": [s.content() for c in self.component_classes.values() for s in c.shadows],
        }

    def _compute_digest(self) -> str:
        blob = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    # --- queries ----------------------------------------------------------
    def task(self, name: str) -> Task:
        """The task called ``name`` (or an alias of it)."""
        canonical = self.aliases.get(name, name)
        try:
            return self.tasks[canonical]
        except KeyError:
            hint = _did_you_mean(name, [*self.tasks, *self.aliases]) or "run `factory tasks` to list tasks"
            raise UnknownTaskError(f"unknown task {name!r}", hint=hint, task=name) from None

    def canonical_task(self, name: str) -> str:
        return self.task(name).name

    def architecture(self, name: str) -> Architecture:
        try:
            return self.architectures[name]
        except KeyError:
            hint = _did_you_mean(name, self.architectures) or "run `factory list` to list architectures"
            raise UnknownArchitectureError(f"unknown architecture {name!r}", hint=hint, architecture=name) from None

    def resolve(self, task: str, architecture: str) -> Registration:
        """The registration serving ``task`` for ``architecture``."""
        task = self.canonical_task(task)
        self.architecture(architecture)
        try:
            return self.registrations[(task, architecture)]
        except KeyError:
            pass
        supports = sorted(t for t, a in self.registrations if a == architecture)
        served_by = sorted(a for t, a in self.registrations if t == task)
        hint = f"architecture {architecture!r} supports: {', '.join(supports) or 'nothing'}"
        if served_by:
            shown = ", ".join(served_by[:12]) + (f", ... ({len(served_by)} in all)" if len(served_by) > 12 else "")
            hint += f"; task {task!r} is served by: {shown}"
        raise NoRegistrationError(
            f"architecture {architecture!r} has no registration for task {task!r}",
            hint=hint,
            task=task,
            architecture=architecture,
        )

    def find(self, task: str = "*", architecture: str = "*") -> list[Registration]:
        """Registrations matching shell-style wildcards (task aliases allowed)."""
        if not any(ch in task for ch in "*?["):
            task = self.canonical_task(task)
        if not any(ch in architecture for ch in "*?["):
            self.architecture(architecture)  # a literal name: unknown -> error with suggestions
        return [
            reg
            for (t, a), reg in self.registrations.items()
            if fnmatch.fnmatchcase(t, task) and fnmatch.fnmatchcase(a, architecture)
        ]

    def by_target(self, name: str) -> list[Registration]:
        """Registrations whose target is ``name``: a full target or a bare class name."""
        return [
            reg
            for reg in self.registrations.values()
            if name in (reg.target, reg.attribute, reg.attribute.rpartition(".")[2])
            or reg.target.replace(":", ".") == name
        ]

    def parallel_plan(self, reg: Registration) -> ParallelPlan | None:
        """The parallel plan for ``reg``: its architecture's plan for the registration's builder."""
        arch = self.architectures.get(reg.architecture)
        return arch.parallel_for(reg.builder) if arch is not None else None

    def checkpoint(self, name: str) -> Checkpoint | None:
        return self.checkpoints.get(name)

    def component_class(self, task: str, name: str) -> ComponentClass | None:
        """The declaration of component class ``name`` (as a checkpoint file writes it) for ``task``."""
        return self.component_classes.get((self.canonical_task(task), name))

    def dispatch(self, config: Mapping[str, Any], *, origin: str | None = None) -> Dispatch:
        """Map a ``config.json`` dict to an architecture, applying declarative rules."""
        model_type = config.get("model_type")
        if isinstance(model_type, str) and model_type:
            if model_type not in self.architectures:
                hint = _did_you_mean(model_type, self.architectures) or (
                    "register it with an architecture file in a registry source "
                    "(see README: 'Registering your own model')"
                )
                raise UnknownArchitectureError(
                    f"model_type {model_type!r} is not a registered architecture",
                    file=origin,
                    hint=hint,
                    architecture=model_type,
                )
            arch, via = model_type, "model_type"
        else:
            arch, via = self._from_class_names(config, origin), "architectures"
        applied: list[Rule] = []
        seen = {arch}
        while True:
            rule = next((r for r in self.architectures[arch].rules if r.matches(config)), None)
            if rule is None:
                break
            if rule.dispatch_as not in self.architectures:
                raise ConfigError(
                    f"dispatch rule {rule.describe()!r} names architecture {rule.dispatch_as!r}, "
                    "which is not registered",
                    file=rule.provenance.file,
                    line=rule.provenance.line,
                    hint="enable the pack that provides it or register it",
                )
            applied.append(rule)
            arch = rule.dispatch_as
            if arch in seen:
                break
            seen.add(arch)
        return Dispatch(architecture=arch, via=via, model_type=model_type, rules=tuple(applied))

    def _from_class_names(self, config: Mapping[str, Any], origin: str | None) -> str:
        names = config.get("architectures") or []
        if not isinstance(names, list):
            names = []
        found = sorted({reg.architecture for name in names if isinstance(name, str) for reg in self.by_target(name)})
        if len(found) == 1:
            return found[0]
        if not names:
            raise ConfigError(
                "config has neither 'model_type' nor 'architectures'",
                file=origin,
                hint='add "model_type": "<architecture>" to config.json',
            )
        if not found:
            raise ConfigError(
                f"config has no 'model_type' and no registered class matches architectures {names}",
                file=origin,
                hint='add "model_type" to config.json or register the class',
            )
        raise ConfigError(
            f"config has no 'model_type' and architectures {names} match several architectures: {', '.join(found)}",
            file=origin,
            hint='add "model_type" to config.json',
        )


def _rebuild_table(
    tasks: dict[str, Task],
    architectures: dict[str, Architecture],
    registrations: dict[tuple[str, str], Registration],
    checkpoints: dict[str, Checkpoint],
    sources: tuple[str, ...],
    component_classes: dict[tuple[str, str], ComponentClass],
) -> Table:
    """Unpickling a :class:`Table` (the component classes are a keyword argument of the constructor)."""
    return Table(tasks, architectures, registrations, checkpoints, sources, component_classes=component_classes)
