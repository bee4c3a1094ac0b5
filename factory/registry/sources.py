"""Where registry YAML comes from, in this fixed order (later ones may override earlier ones, with a reason):

1. ``builtin``: the ``registry.d/`` shipped with the package;
2. ``plugin``: entry points of group ``factory.registry``, each naming a package
   (``my_plugin``) or a directory inside one (``my_plugin:registry.d``);
3. ``env``: directories in ``FACTORY_REGISTRY_PATH`` (``os.pathsep``-separated);
4. ``path``: explicit ``paths=`` (files or directories).

Within a source, files are listed in sorted relative-path order, so the result
never depends on the file system's listing order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from factory.errors import FactoryError, RegistryError
from factory.paths import data_dir
from factory.registry import cache

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
        """The source's YAML files, sorted by relative path (``skip``: directories to leave out).

        Symbolic links are followed, each real directory once: a link back to a directory
        already walked (a loop) is skipped. A directory that cannot be read is a :class:`RegistryError`.
        """
        try:
            if self.root.is_file():
                return [self.root]
            root_id = _identity(os.stat(self.root))
        except OSError as exc:
            raise RegistryError(
                f"{self.kind} registry source cannot be read: {exc.strerror or exc}",
                file=self.root,
                hint="check that the directory exists and is readable",
            ) from None
        skipped = {str(p) for p in skip}
        found: list[tuple[str, str]] = []
        seen = {root_id}
        stack = [(str(self.root), "")]
        while stack:
            directory, rel = stack.pop()
            try:
                with os.scandir(directory) as entries:
                    listed = list(entries)
            except OSError as exc:
                raise RegistryError(
                    f"registry directory cannot be read: {exc.strerror or exc}",
                    file=directory,
                    hint="check its permissions, or remove it from the registry sources",
                ) from None
            for entry in listed:
                if entry.path in skipped:
                    continue
                try:
                    is_dir = entry.is_dir()
                    ident = _identity(entry.stat()) if is_dir else None
                except OSError:  # a link loop (ELOOP): a YAML name is kept, so that reading it reports it
                    is_dir, ident = False, None
                if is_dir and ident is not None:
                    if ident not in seen:
                        seen.add(ident)
                        stack.append((entry.path, f"{rel}{entry.name}/"))
                elif entry.name.endswith(YAML_SUFFIXES):
                    found.append((f"{rel}{entry.name}", entry.path))
        found.sort()
        return [Path(path) for _, path in found]


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def builtin_dir() -> Path:
    return (data_dir() / "registry.d").resolve()


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
    paths: Iterable[str | os.PathLike[str]] | None = None,
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
                errors.append(
                    RegistryError(
                        f"{PATH_ENV} names {entry!r}, which is not a directory",
                        hint=f"fix or remove it from {PATH_ENV}",
                    )
                )
            else:
                sources.append(Source("env", root))
    for path in paths or ():
        root = Path(path).expanduser()
        if not root.exists():
            errors.append(
                RegistryError(
                    f"registry path {str(path)!r} does not exist",
                    file=str(path),
                    hint="pass an existing YAML file or directory",
                )
            )
        else:
            sources.append(Source("path", root))
    return sources, errors


def _cached_plugin_sources(errors: list[FactoryError]) -> list[Source]:
    """Plugin sources; the entry-point scan is cached, keyed on the import path's directories."""
    import sys

    signature = []
    for entry in sys.path:
        try:
            st = os.stat(entry or ".")
            signature.append(f"{entry} {st.st_mtime_ns} {st.st_ctime_ns}")
        except OSError:
            signature.append(f"{entry} -")
    key = cache.cache_key((), (), ["plugins", *signature])
    cached = cache.read_json("plugins", key)
    if cached is not None:
        found = [Source(kind, Path(root), dist, version) for kind, root, dist, version in cached]
        # A plugin's registry directory renamed or removed inside its package changes no sys.path entry:
        # the scan is trusted only while every directory it found is still there.
        if all(source.root.is_dir() for source in found):
            return found
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
            errors.append(
                RegistryError(
                    f"plugin entry point {ep.name!r} of {dist} names {ep.value!r}, which cannot be found",
                    hint=f'reinstall {dist} or fix its [project.entry-points."{ENTRY_POINT_GROUP}"]',
                )
            )
            continue
        base = (
            Path(next(iter(spec.submodule_search_locations)))
            if spec.submodule_search_locations
            else Path(str(spec.origin)).parent
        )
        root = base / subdir.strip() if subdir.strip() else base
        if not root.is_dir():
            errors.append(
                RegistryError(
                    f"plugin entry point {ep.name!r} of {dist} points at {root}, which is not a directory",
                    hint="the entry point names a package or 'package:subdirectory' holding YAML files",
                )
            )
            continue
        found.append(Source("plugin", root, dist, version))
    return found


def list_files(sources: Sequence[Source], *, packs: bool | Iterable[str] | None = None) -> list[tuple[Source, Path]]:
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
