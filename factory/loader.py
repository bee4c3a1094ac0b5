"""Finding registry sources, reading their YAML, and merging them into a table.

Sources, in this fixed order (later ones may override earlier ones, with a reason):

1. ``builtin``: the ``registry.d/`` shipped with the package;
2. ``plugin``: entry points of group ``factory.registry``, each naming a package
   (``my_plugin``) or a directory inside one (``my_plugin:registry.d``);
3. ``env``: directories in ``FACTORY_REGISTRY_PATH`` (``os.pathsep``-separated);
4. ``path``: explicit ``paths=`` (files or directories).

Within a source, files are read in sorted relative-path order, so the result
never depends on the file system's listing order.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from . import cache, schemas
from .errors import FactoryError, RegistryError
from .table import (
    Architecture,
    Checkpoint,
    Deprecation,
    FrozenDict,
    Provenance,
    Registration,
    Rule,
    Table,
    Task,
    _freeze,
    merge,
)

if TYPE_CHECKING:
    from .yamlio import Document

ENTRY_POINT_GROUP = "factory.registry"
PATH_ENV = "FACTORY_REGISTRY_PATH"
DISABLE_PACKS_ENV = "FACTORY_DISABLE_PACKS"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Source:
    """One place registry YAML comes from."""

    kind: str  # builtin | plugin | env | path
    root: Path
    distribution: str | None = None
    version: str | None = None

    def files(self, skip: Sequence[Path] = ()) -> list[Path]:
        """The source's YAML files, sorted by relative path (``skip``: directories to leave out)."""
        if self.root.is_file():
            return [self.root]
        skipped = {str(p) for p in skip}
        found: list[tuple[str, str]] = []
        stack = [(str(self.root), "")]
        while stack:
            directory, rel = stack.pop()
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.path in skipped:
                        continue
                    if entry.is_dir():
                        stack.append((entry.path, f"{rel}{entry.name}/"))
                    elif entry.name.endswith(YAML_SUFFIXES) and entry.is_file():
                        found.append((f"{rel}{entry.name}", entry.path))
        found.sort()
        return [Path(path) for _, path in found]


def builtin_dir() -> Path:
    return (schemas.data_dir() / "registry.d").resolve()


def disabled_packs(packs: bool | Iterable[str] | None = None) -> set[str] | None:
    """Pack names to skip; ``None`` means all packs are off."""
    if packs is False:
        return None
    names = {p.strip() for p in os.environ.get(DISABLE_PACKS_ENV, "").split(",") if p.strip()}
    if "all" in names or "*" in names:
        return None
    if packs is not None and packs is not True:
        available = {p.name for p in (builtin_dir() / "packs").glob("*") if p.is_dir()}
        names |= available - set(packs)
    return names


def discover_sources(
    paths: Iterable[str | os.PathLike] | None = None,
    *,
    include_builtin: bool = True,
    include_plugins: bool = True,
) -> tuple[list[Source], list[FactoryError]]:
    """Every source in precedence order, plus errors for sources that do not exist."""
    sources: list[Source] = []
    errors: list[FactoryError] = []
    if include_builtin:
        sources.append(Source("builtin", builtin_dir()))
    if include_plugins:
        sources.extend(_cached_plugin_sources(errors))
    for entry in os.environ.get(PATH_ENV, "").split(os.pathsep):
        if entry:
            root = Path(entry).expanduser()
            if not root.is_dir():
                errors.append(RegistryError(
                    f"{PATH_ENV} names {entry!r}, which is not a directory",
                    hint=f"fix or remove it from {PATH_ENV}"))
            else:
                sources.append(Source("env", root))
    for entry in paths or ():
        root = Path(entry).expanduser()
        if not root.exists():
            errors.append(RegistryError(f"registry path {str(entry)!r} does not exist", file=entry,
                                        hint="pass an existing YAML file or directory"))
        else:
            sources.append(Source("path", root))
    return sources, errors


def _cached_plugin_sources(errors: list[FactoryError]) -> list[Source]:
    """Plugin sources; the entry-point scan is cached, keyed on the import path's directories."""
    import sys

    signature = []
    for entry in sys.path:
        try:
            signature.append(f"{entry} {os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            signature.append(f"{entry} -")
    key = cache.cache_key((), (), ["plugins", *signature])
    cached = cache.read_json("plugins", key)
    if cached is not None:
        return [Source(kind, Path(root), dist, version) for kind, root, dist, version in cached]
    before = len(errors)
    found = _plugin_sources(errors)
    if len(errors) == before:
        cache.write_json("plugins", key, [[s.kind, str(s.root), s.distribution, s.version] for s in found])
    return found


def _plugin_sources(errors: list[FactoryError]) -> list[Source]:
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        module, _, subdir = ep.value.partition(":")
        spec = None
        try:
            spec = find_spec(module.strip())
        except (ImportError, ValueError):
            pass
        if spec is None or not (spec.submodule_search_locations or spec.origin):
            errors.append(RegistryError(
                f"plugin entry point {ep.name!r} of {dist} names {ep.value!r}, which cannot be found",
                hint=f"reinstall {dist} or fix its [project.entry-points.\"{ENTRY_POINT_GROUP}\"]"))
            continue
        base = Path(next(iter(spec.submodule_search_locations))) if spec.submodule_search_locations \
            else Path(spec.origin).parent
        root = base / subdir.strip() if subdir.strip() else base
        if not root.is_dir():
            errors.append(RegistryError(
                f"plugin entry point {ep.name!r} of {dist} points at {root}, which is not a directory",
                hint="the entry point names a package or 'package:subdirectory' holding YAML files"))
            continue
        found.append(Source("plugin", root, dist, version))
    return found


def list_files(
    sources: Sequence[Source], *, packs: bool | Iterable[str] | None = None
) -> list[tuple[Source, Path]]:
    """Every YAML file of every source, in merge order (disabled packs left out)."""
    skip_names = disabled_packs(packs)
    out: list[tuple[Source, Path]] = []
    for source in sources:
        skip: list[Path] = []
        packs_dir = source.root / "packs"
        if source.kind == "builtin" and packs_dir.is_dir():
            skip = [p for p in packs_dir.iterdir() if skip_names is None or p.name in skip_names]
        out.extend((source, path) for path in source.files(skip))
    return out


def read_sources(files: Sequence[tuple[Source, Path]]) -> tuple[list[tuple[Document, Source]], list[FactoryError]]:
    """Parse and schema-check every file."""
    from .yamlio import load_document  # YAML is only needed on a cache miss
    docs: list[tuple[Document, Source]] = []
    errors: list[FactoryError] = []
    for source, path in files:
        try:
            doc = load_document(path)
        except RegistryError as exc:
            errors.append(exc)
            continue
        found = schemas.validate(doc)
        if found:
            errors.extend(found)
            continue
        docs.append((doc, source))
    return docs, errors


def entries_from(docs: Sequence[tuple[Document, Source]]):
    """Turn validated documents into candidate table entries, in source order."""
    tasks: list[Task] = []
    regs: list[Registration] = []
    archs: list[Architecture] = []
    ckpts: list[Checkpoint] = []
    errors: list[FactoryError] = []
    for doc, source in docs:
        data = doc.data

        def prov(*path) -> Provenance:
            return Provenance(str(doc.path), doc.line(*path), source.kind, source.distribution, source.version)

        kind = data["kind"]
        if kind == "tasks":
            for i, item in enumerate(data["tasks"]):
                tasks.append(Task(
                    name=item["name"], group=item["group"], summary=item["summary"],
                    auto_class=item["auto_class"], aliases=tuple(item.get("aliases", ())),
                    provenance=prov("tasks", i), override=item.get("override")))
        elif kind == "architecture":
            archs.append(_architecture(data, prov))
            regs.extend(_registrations(data, prov, errors))
        elif kind == "checkpoints":
            for name, item in data["checkpoints"].items():
                path = item.get("path")
                ckpts.append(Checkpoint(
                    name=name, provenance=prov("checkpoints", name),
                    hub=_freeze(item.get("hub")), package=_freeze(item.get("package")),
                    path=str((doc.path.parent / path).resolve()) if path else None,
                    path_as_written=path,
                    sha256=_freeze(item.get("sha256", {})), architecture=item.get("architecture"),
                    summary=item.get("summary", ""), override=item.get("override"),
                    deprecated=Deprecation(**item["deprecated"]) if "deprecated" in item else None,
                    lint=_freeze(item.get("lint", {}))))
    return tasks, regs, archs, ckpts, errors


def _architecture(data: dict, prov) -> Architecture:
    name = data["architecture"]
    rules = tuple(
        Rule(architecture=name, when=_freeze(rule["when"]), dispatch_as=rule["dispatch_as"],
             provenance=prov("rules", i), reason=rule.get("reason"))
        for i, rule in enumerate(data.get("rules", ()))
    )
    return Architecture(
        name=name, summary=data.get("summary", ""), files=(prov(),), rules=rules,
        shares_targets_with=tuple(data.get("shares_targets_with", ())), lint=_freeze(data.get("lint", {})))


def _registrations(data: dict, prov, errors: list[FactoryError]) -> list[Registration]:
    arch = data["architecture"]
    common = {"architecture": arch, "builder": data.get("builder", "native"), "layer": data.get("layer", "native")}
    entries: list[tuple[str, object, tuple]] = []
    if "config" in data:
        entries.append(("config", data["config"], ("config",)))
    for section in ("tasks", "components"):
        for task, value in data.get(section, {}).items():
            entries.append((task, value, (section, task)))
    out = []
    for task, value, path in entries:
        spec = {"target": value} if isinstance(value, str) else value
        out.append(Registration(
            task=task, target=spec["target"], provenance=prov(*path),
            override=spec.get("override"),
            deprecated=Deprecation(**spec["deprecated"]) if "deprecated" in spec else None,
            lint=_freeze(spec.get("lint", {})), **common))
    return out


@dataclass
class LoadResult:
    """A table (or ``None``) and every problem found on the way."""

    table: Table | None
    errors: list[FactoryError]
    files: list[Path]


def collect(
    paths: Iterable[str | os.PathLike] | None = None,
    *,
    include_builtin: bool = True,
    include_plugins: bool = True,
    packs: bool | Iterable[str] | None = None,
) -> LoadResult:
    """Load every source and report all problems instead of stopping at the first."""
    sources, errors = discover_sources(paths, include_builtin=include_builtin, include_plugins=include_plugins)
    files = list_files(sources, packs=packs)
    if not errors:
        key = _cache_key(sources, files, packs)
        table = cache.read(key)
        if table is not None:
            return LoadResult(table, [], [p for _, p in files])
    docs, read_errors = read_sources(files)
    errors.extend(read_errors)
    tasks, regs, archs, ckpts, entry_errors = entries_from(docs)
    errors.extend(entry_errors)
    merge_errors: list[FactoryError] = []
    table = merge(tasks, regs, archs, ckpts, merge_errors,
                  sources=tuple(f"{s.kind}:{s.root}" for s in sources))
    errors.extend(merge_errors)
    if table is not None and not errors:
        cache.write(key, table)
    return LoadResult(table if not errors else None, errors, [p for _, p in files])


def _cache_key(sources: Sequence[Source], files: Sequence[tuple[Source, Path]], packs) -> str:
    from . import __version__

    off = disabled_packs(packs)
    extra = [f"factory {__version__}", f"packs off: {'all' if off is None else sorted(off)}"]
    code = [schemas.schema_path(k) for k in schemas.KINDS]
    code += [Path(__file__).with_name(m) for m in ("yamlio.py", "schemas.py", "table.py", "loader.py", "cache.py")]
    for path in code:  # a changed loader or schema must not be served an old table
        st = path.stat()
        extra.append(f"code {path.name} {st.st_size} {st.st_mtime_ns}")
    return cache.cache_key(sources, files, extra)


def load_registry(
    paths: Iterable[str | os.PathLike] | None = None,
    *,
    include_builtin: bool = True,
    include_plugins: bool = True,
    packs: bool | Iterable[str] | None = None,
) -> Table:
    """Load and merge the registry into a new immutable :class:`Table`.

    ``packs``: ``None``/``True`` for every pack not disabled by ``FACTORY_DISABLE_PACKS``,
    ``False`` for none, or the names of the packs to keep.
    Raises the first problem found (a :class:`FactoryError` naming file and line);
    ``factory validate`` lists them all.
    """
    result = collect(paths, include_builtin=include_builtin, include_plugins=include_plugins, packs=packs)
    if result.errors:
        first = result.errors[0]
        if len(result.errors) > 1:
            first.hint = (first.hint + "; " if first.hint else "") + \
                f"{len(result.errors) - 1} more problem(s): run `factory validate` to list them all"
            first.args = (str(first),)
        raise first
    assert result.table is not None
    return result.table


_default_lock = threading.Lock()
_default: list[Table] = []


def registry() -> Table:
    """The default table (built-ins, plugins, ``FACTORY_REGISTRY_PATH``), loaded once, lazily."""
    if _default:
        return _default[0]
    with _default_lock:
        if not _default:
            _default.append(load_registry())
        return _default[0]
