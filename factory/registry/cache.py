"""A cache of merged tables, keyed on the registry files' stat and the loader's inputs.

A warm load reads one JSON file instead of parsing, validating and merging every
YAML file. The key covers every source (kind, root, distribution, version), every
file's relative path, size, mtime, ctime and inode, the schemas and the factory version,
so an edit, a rename, an added or removed file, or a plugin upgrade gives a new key.
Files are written atomically (temp file + rename): concurrent writers never leave
a torn file, and a corrupt file is ignored with a warning and rebuilt.

``FACTORY_CACHE_DIR`` moves the cache; ``FACTORY_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from factory.errors import FactoryError
from factory.registry.table import (
    Architecture,
    Checkpoint,
    ComponentClass,
    Deprecation,
    DivisibleRule,
    FrozenDict,
    FsdpUnit,
    LazyDict,
    ParallelPlan,
    PlanEntry,
    Provenance,
    Registration,
    Rule,
    Table,
    Task,
    _freeze,
)
from factory.untrusted import read_bytes

FORMAT = 4
KEEP = 8
#: A cache file of the ~1,000-architecture table is a few MiB.
MAX_CACHE_BYTES = 256 << 20


class CacheWarning(UserWarning):
    """The registry cache could not be read or written; the table was rebuilt."""


def cache_dir() -> Path | None:
    """Where tables are cached, or ``None`` when caching is off."""
    if os.environ.get("FACTORY_NO_CACHE", "").strip() not in ("", "0"):
        return None
    if os.environ.get("FACTORY_CACHE_DIR"):
        return Path(os.environ["FACTORY_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "factory"


def cache_key(sources: Sequence[Any], files: Iterable[tuple[Any, Path]], extra: Iterable[str]) -> str:
    """A key over the sources, each file's stat, and ``extra`` (version, schema stats, pack choice)."""
    h = hashlib.sha256()
    h.update(f"format {FORMAT}\n".encode())
    for item in extra:
        h.update(f"{item}\n".encode())
    for s in sources:
        h.update(f"source {s.kind} {s.root} {s.distribution} {s.version}\n".encode())
    stat = os.stat
    lines = []
    for source, path in files:
        try:
            st = stat(path)
        except OSError:  # vanished since it was listed: the load that follows reports it
            lines.append(f"{source.kind} {path} -")
            continue
        # st_ctime_ns too: `cp -p`, `rsync -t` or utime() can restore size and mtime (and even the inode)
        # of a replaced file, but not its change time.
        lines.append(f"{source.kind} {path} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}")
    h.update("\n".join(lines).encode())
    return h.hexdigest()


def read_json(kind: str, key: str) -> Any | None:
    """The cached value of ``kind`` under ``key``, or ``None`` (missing, corrupt: warned)."""
    directory = cache_dir()
    if directory is None:
        return None
    path = directory / f"{kind}-{key[:32]}.json"
    if not os.path.lexists(path):
        return None
    try:
        raw = read_bytes(path, max_bytes=MAX_CACHE_BYTES)  # a FIFO or a device in its place never blocks
    except FactoryError as exc:
        warnings.warn(
            f"ignoring unusable registry cache {path} ({exc.message}); rebuilding it", CacheWarning, stacklevel=3
        )
        return None
    try:
        with _gc_paused():
            state = json.loads(raw)
        if state.get("format") != FORMAT or state.get("key") != key:
            raise ValueError("key or format mismatch")
        return state["value"]
    except Exception as exc:  # corrupt, truncated, or written by another version
        warnings.warn(
            f"ignoring corrupt registry cache {path} ({type(exc).__name__}: {exc}); rebuilding it",
            CacheWarning,
            stacklevel=3,
        )
        return None


def write_json(kind: str, key: str, value: Any) -> None:
    """Store ``value`` atomically (temp file + rename); failures only warn."""
    directory = cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        import tempfile  # only on a cache miss

        data = json.dumps({"format": FORMAT, "key": key, "value": value}, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{kind}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, directory / f"{kind}-{key[:32]}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _prune(directory, kind)
    except OSError as exc:
        warnings.warn(f"cannot write the registry cache in {directory}: {exc}", CacheWarning, stacklevel=3)


def read(key: str) -> Table | None:
    """The cached table under ``key``."""
    state = read_json("registry", key)
    if state is None:
        return None
    try:
        with _gc_paused():
            return from_state(state)
    except Exception as exc:
        warnings.warn(
            f"ignoring unreadable registry cache ({type(exc).__name__}: {exc}); rebuilding it",
            CacheWarning,
            stacklevel=2,
        )
        return None


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Decoding allocates many small containers; with torch loaded, gc passes cost 10x the decode."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def write(key: str, table: Table) -> None:
    write_json("registry", key, to_state(table))


def _prune(directory: Path, kind: str) -> None:
    entries = sorted(directory.glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)


# --- (de)serialising a table ------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, FrozenDict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, (Provenance, Deprecation)):
        return [getattr(value, f.name) for f in fields(value)]
    if isinstance(
        value,
        (
            Task,
            Registration,
            Rule,
            Architecture,
            Checkpoint,
            ParallelPlan,
            PlanEntry,
            DivisibleRule,
            FsdpUnit,
            ComponentClass,
        ),
    ):
        return [_plain(getattr(value, f.name)) for f in fields(value)]
    return value


def _packed(value: Any) -> str:
    """One entry as a JSON string: decoding the cache then makes one object per entry, not dozens."""
    return json.dumps(_plain(value), separators=(",", ":"))


def to_state(table: Table) -> dict[str, Any]:
    return {
        "digest": table.digest,
        "sources": list(table.sources),
        "tasks": [_plain(t) for t in table.tasks.values()],
        "architectures": [[name, _packed(a)] for name, a in table.architectures.items()],
        "registrations": [[task, arch, _packed(r)] for (task, arch), r in table.registrations.items()],
        "checkpoints": [[name, _packed(c)] for name, c in table.checkpoints.items()],
        "component_classes": [[task, name, _packed(c)] for (task, name), c in table.component_classes.items()],
    }


def _prov(v: list[Any]) -> Provenance:
    return Provenance(*v)


def _dep(v: list[Any] | None) -> Deprecation | None:
    return Deprecation(*v) if v else None


def _task(v: list[Any]) -> Task:
    name, group, summary, auto_class, aliases, prov, shadows, override = v
    return Task(
        name, group, summary, auto_class, tuple(aliases), _prov(prov), tuple(_task(s) for s in shadows), override
    )


def _reg(v: list[Any]) -> Registration:
    task, arch, target, prov, builder, layer, override, dep, lint, shadows = v
    return Registration(
        task,
        arch,
        target,
        _prov(prov),
        builder,
        layer,
        override,
        _dep(dep),
        _freeze(lint),
        tuple(_reg(s) for s in shadows),
    )


def _rule(v: list[Any]) -> Rule:
    arch, when, dispatch_as, prov, reason = v
    return Rule(arch, _freeze(when), dispatch_as, _prov(prov), reason)


def _plan(v: list[Any]) -> ParallelPlan:
    arch, builder, prov, tp, divisible, fsdp, layer, override, shadows = v
    return ParallelPlan(
        arch,
        builder,
        _prov(prov),
        tuple(PlanEntry(path, style, _prov(p), parts) for path, style, p, parts in tp),
        tuple(DivisibleRule(key, _prov(p), by, otherwise, tuple(mods)) for key, p, by, otherwise, mods in divisible),
        tuple(FsdpUnit(path, _prov(p)) for path, p in fsdp),
        layer,
        override,
        tuple(_plan(s) for s in shadows),
    )


def _component_class(v: list[Any]) -> ComponentClass:
    task, name, arch, prov, layer, override, shadows = v
    return ComponentClass(task, name, arch, _prov(prov), layer, override, tuple(_component_class(s) for s in shadows))


def _arch(v: list[Any]) -> Architecture:
    name, summary, files, rules, shares, lint, parallel, classes = v
    return Architecture(
        name,
        summary,
        tuple(_prov(p) for p in files),
        tuple(_rule(r) for r in rules),
        tuple(shares),
        _freeze(lint),
        tuple(_plan(p) for p in parallel),
        tuple(_component_class(c) for c in classes),
    )


def _ckpt(v: list[Any]) -> Checkpoint:
    (name, prov, hub, path, package, sha256, arch, summary, override, dep, lint, shadows, as_written) = v
    return Checkpoint(
        name,
        _prov(prov),
        _freeze(hub) if hub else None,
        path,
        _freeze(package) if package else None,
        _freeze(sha256),
        arch,
        summary,
        override,
        _dep(dep),
        _freeze(lint),
        tuple(_ckpt(s) for s in shadows),
        as_written,
    )


def from_state(state: dict[str, Any]) -> Table:
    """Rebuild a table; entries are decoded when first read."""
    tasks = {t.name: t for t in map(_task, state["tasks"])}
    archs = LazyDict(dict(state["architectures"]), lambda raw: _arch(json.loads(raw)))
    regs = LazyDict(
        {(task, arch): raw for task, arch, raw in state["registrations"]}, lambda raw: _reg(json.loads(raw))
    )
    ckpts = LazyDict(dict(state["checkpoints"]), lambda raw: _ckpt(json.loads(raw)))
    classes = LazyDict(
        {(task, name): raw for task, name, raw in state["component_classes"]},
        lambda raw: _component_class(json.loads(raw)),
    )
    return Table(tasks, archs, regs, ckpts, tuple(state["sources"]), component_classes=classes, digest=state["digest"])
