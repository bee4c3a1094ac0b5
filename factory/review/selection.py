"""How the files named on a command line (``validate``, ``lint``, pre-commit) are loaded.

``factory validate FILE...`` and ``factory lint FILE...`` accept any subset of
a registry directory, the way pre-commit passes changed files: a file below a
directory called ``registry.d`` is checked in the context of that whole
directory (a checkpoint file may name an architecture defined in a file that
did not change), and problems are reported for the named files only. Files of
the built-in registry, of an installed plugin or of ``FACTORY_REGISTRY_PATH``
are already loaded by their source and are not loaded twice. A registry
directory with a task table (``tasks.yaml``) at its top is complete, like a
checkout of factory itself: it stands in for the installed built-in registry
instead of being layered over it (the rule ``factory diff`` uses too).

Nothing here imports torch, unless ``lint --import`` imports the targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from factory.errors import FactoryError
from factory.registry import sources as registry_sources
from factory.registry.loader import LoadResult, collect, load_sources
from factory.registry.sources import Source, discover_sources

REGISTRY_DIR_NAME = "registry.d"


# --- named files ------------------------------------------------------------------
def split_paths(paths: Sequence[str]) -> tuple[list[str], bool]:
    """Explicit paths, minus the built-in registry (which is then loaded as built-in)."""
    builtin = registry_sources.builtin_dir()
    rest, has_builtin = [], False
    for p in paths:
        rp = Path(p).resolve()
        if rp == builtin or (builtin in rp.parents and rp.exists()):
            has_builtin = True
        else:
            rest.append(p)
    return rest, has_builtin


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


@dataclass
class Selection:
    """What ``validate``/``lint`` loaded for the paths on the command line."""

    result: LoadResult
    named: tuple[Path, ...] = ()  # the paths given, resolved
    context: tuple[Path, ...] = ()  # registry directories loaded whole only to give named files context

    def is_named(self, file: str | None) -> bool:
        return not self.named or (file is not None and _inside(Path(file).resolve(), self.named))

    def hidden(self, err: FactoryError) -> bool:
        """A problem of a context file that was not named, and does not mention a named one."""
        if not self.context or err.file is None:
            return False
        path = Path(err.file).resolve()
        if not _inside(path, self.context) or _inside(path, self.named):
            return False
        mentioned = " ".join(str(v) for v in err.fields.values())
        return not any(str(n) in mentioned for n in self.named)


def select_paths(paths: Sequence[str]) -> Selection:
    """Load the registry with ``paths`` added as explicit sources (see the module docstring)."""
    if not paths:
        return Selection(collect())
    rest, _has_builtin = split_paths(paths)
    sources, _ = discover_sources(None)
    loaded = [s.root.resolve() for s in sources]
    roots: list[Path] = []
    context: list[Path] = []
    for p in rest:
        path = Path(p).expanduser().resolve()
        if _inside(path, loaded):
            continue
        root = path
        if path.is_file():
            root = next((d for d in path.parents if d.name == REGISTRY_DIR_NAME), path)
            if root != path:
                context.append(root)
        if root not in roots:
            roots.append(root)
    roots = [r for r in roots if not any(o != r and o in r.parents for o in roots)]
    named = tuple(Path(p).expanduser().resolve() for p in paths)
    complete = next((r for r in roots if has_task_table(r)), None)
    if complete is None:
        return Selection(collect([str(r) for r in roots]), named, tuple(context))
    return Selection(_collect_with_builtin(complete, [r for r in roots if r != complete]), named, tuple(context))


def has_task_table(root: Path) -> bool:
    """A registry directory with a task table at its top is complete: it can stand in for the built-in one."""
    return root.is_dir() and any((root / name).is_file() for name in ("tasks.yaml", "tasks.yml"))


def _collect_with_builtin(builtin: Path, paths: Sequence[Path]) -> LoadResult:
    """:func:`~factory.registry.loader.collect`, with ``builtin`` (another checkout's registry.d) as the
    built-in source."""
    sources, errors = discover_sources([str(p) for p in paths], include_builtin=False)
    return load_sources([Source("builtin", builtin), *sources], errors=errors)


__all__ = ["Selection", "has_task_table", "select_paths", "split_paths"]
