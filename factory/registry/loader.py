"""Loading the registry: list every source's files, parse and schema-check them, turn them into
entries and merge those into a table (served from the cache when nothing changed).
See :mod:`factory.registry.sources` for the sources and their order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.errors import FactoryError, RegistryError
from factory.registry import cache, runtime, schemas
from factory.registry.documents import entries_from
from factory.registry.merge import merge
from factory.registry.sources import Source, disabled_packs, discover_sources, list_files
from factory.registry.table import Table

if TYPE_CHECKING:
    from factory.registry.yamlio import Document


def read_sources(files: Sequence[tuple[Source, Path]]) -> tuple[list[tuple[Document, Source]], list[FactoryError]]:
    """Parse and schema-check every file."""
    from factory.registry.yamlio import load_document  # YAML is only needed on a cache miss

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


@dataclass
class LoadResult:
    """A table (or ``None``) and every problem found on the way."""

    table: Table | None
    errors: list[FactoryError]
    files: list[Path]


def load_sources(
    sources: Sequence[Source],
    *,
    packs: bool | Iterable[str] | None = None,
    errors: Sequence[FactoryError] = (),
    files: Sequence[tuple[Source, Path]] | None = None,
    relocate: Callable[[Document, Source], Document] | None = None,
) -> LoadResult:
    """Read, check and merge ``sources`` (in precedence order) without the cache.

    ``files``: the sources' files when already listed; ``errors``: problems found while discovering
    the sources; ``relocate`` may rewrite a
    document (its shown path) before its entries are taken.
    """
    problems = list(errors)
    files = list_files(sources, packs=packs) if files is None else files
    docs, read_errors = read_sources(files)
    problems += read_errors
    if relocate is not None:
        docs = [(relocate(doc, source), source) for doc, source in docs]
    tasks, regs, archs, ckpts, entry_errors = entries_from(docs)
    problems += entry_errors
    merge_errors: list[FactoryError] = []
    table = merge(tasks, regs, archs, ckpts, merge_errors, sources=tuple(f"{s.kind}:{s.root}" for s in sources))
    problems += merge_errors
    return LoadResult(table if not problems else None, problems, [p for _, p in files])


def collect(
    paths: Iterable[str | os.PathLike[str]] | None = None,
    *,
    include_builtin: bool = True,
    include_plugins: bool = True,
    packs: bool | Iterable[str] | None = None,
) -> LoadResult:
    """Load every source and report all problems instead of stopping at the first."""
    sources, errors = discover_sources(paths, include_builtin=include_builtin, include_plugins=include_plugins)
    files = list_files(sources, packs=packs)
    key = None
    if not errors:
        key = _cache_key(sources, files, packs)
        table = cache.read(key)
        if table is not None:
            return LoadResult(table, [], [p for _, p in files])
    result = load_sources(sources, errors=errors, files=files)
    if result.table is not None and key is not None:
        cache.write(key, result.table)
    return result


def _cache_key(
    sources: Sequence[Source], files: Sequence[tuple[Source, Path]], packs: bool | Iterable[str] | None
) -> str:
    from factory import __version__

    off = disabled_packs(packs)
    extra = [f"factory {__version__}", f"packs off: {'all' if off is None else sorted(off)}"]
    code = [schemas.schema_path(k) for k in schemas.KINDS]
    code += sorted(Path(__file__).parent.glob("*.py"))
    for path in code:  # a changed loader or schema must not be served an old table
        st = path.stat()
        extra.append(f"code {path.name} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}")
    return cache.cache_key(sources, files, extra)


def load_registry(
    paths: Iterable[str | os.PathLike[str]] | None = None,
    *,
    include_builtin: bool = True,
    include_plugins: bool = True,
    packs: bool | Iterable[str] | None = None,
    include_runtime: bool = True,
) -> Table:
    """Load and merge the registry into a new immutable :class:`Table`.

    ``packs``: ``None``/``True`` for every pack not disabled by ``FACTORY_DISABLE_PACKS``,
    ``False`` for none, or the names of the packs to keep. ``include_runtime``: put this process's
    ``register()`` calls (the ``runtime`` source, :mod:`factory.registry.runtime`) on top.
    Raises the first problem found (a :class:`FactoryError` naming file and line);
    ``factory validate`` lists them all.
    """
    result = collect(paths, include_builtin=include_builtin, include_plugins=include_plugins, packs=packs)
    if result.errors:
        first = result.errors[0]
        if len(result.errors) > 1:
            first.hint = (
                first.hint + "; " if first.hint else ""
            ) + f"{len(result.errors) - 1} more problem(s): run `factory validate` to list them all"
            first.args = (str(first),)
        raise first
    assert result.table is not None
    return runtime.layer(result.table, runtime.current()) if include_runtime else result.table


_default_lock = threading.Lock()
_default: list[Table] = []  # the YAML sources' table, loaded once
_layered: list[tuple[Table, runtime.RuntimeSource, Table]] = []  # (base, runtime source, the two layered)


def base_registry() -> Table:
    """The default YAML sources (built-ins, plugins, ``FACTORY_REGISTRY_PATH``) merged, loaded once, lazily."""
    if _default:
        return _default[0]
    with _default_lock:
        if not _default:
            _default.append(load_registry(include_runtime=False))
        return _default[0]


def registry() -> Table:
    """The default table: :func:`base_registry` with this process's ``register()`` calls on top.

    A registration replaces the default table by a new one; tables themselves never change.
    """
    base = base_registry()
    source = runtime.current()
    if not source:
        return base
    found = _layered[0] if _layered else None
    if found is not None and found[0] is base and found[1] is source:
        return found[2]
    table = runtime.layer(base, source)
    _layered[:] = [(base, source, table)]
    return table
