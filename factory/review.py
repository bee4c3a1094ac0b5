"""The review verbs of the CLI (``diff``, ``lint``) and how named files are loaded.

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

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, _split_paths, finding_dict, format_findings
from .errors import FactoryError
from .loader import LoadResult, Source, collect, discover_sources, entries_from, list_files, read_sources
from .table import merge

REGISTRY_DIR_NAME = "registry.d"


# --- named files ------------------------------------------------------------------
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
    rest, _has_builtin = _split_paths(paths)
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
    """:func:`factory.loader.collect`, with ``builtin`` (another checkout's registry.d) as the built-in source."""
    sources, errors = discover_sources([str(p) for p in paths], include_builtin=False)
    sources.insert(0, Source("builtin", builtin))
    files = list_files(sources)
    docs, read_errors = read_sources(files)
    errors += read_errors
    tasks, regs, archs, ckpts, entry_errors = entries_from(docs)
    errors += entry_errors
    table = merge(tasks, regs, archs, ckpts, errors, sources=tuple(f"{s.kind}:{s.root}" for s in sources))
    return LoadResult(table if not errors else None, errors, [p for _, p in files])


# --- diff ----------------------------------------------------------------------------
def cmd_diff(args: argparse.Namespace) -> int:
    from .diff import DiffError, diff_specs, render

    try:
        result = diff_specs(args.base, args.head, dirs=args.registry_dir or ["registry.d"], builtin=args.builtin)
    except DiffError as err:
        problems = err.fields.get("problems", ())
        if not problems:
            print(f"error: {err}", file=sys.stderr)
        else:
            print(f"error: {err.fields['side']} does not load: {len(problems)} problem(s)", file=sys.stderr)
            for problem in problems:
                print("  " + str(problem).replace("\n", "\n  "), file=sys.stderr)
        return EXIT_USAGE
    print(render(result, args.format, limit=args.limit), end="" if args.format == "markdown" else "\n")
    return EXIT_FINDINGS if args.exit_code and result.dispatch_changed else EXIT_OK


# --- lint ------------------------------------------------------------------------------
def run_lint(paths: Sequence[str] = (), *, imports: bool = False, as_of: str | None = None) -> list[dict[str, Any]]:
    """Load problems plus lint findings (as finding dicts) for ``paths`` (default: the whole registry)."""
    from .lint import lint_table

    selection = select_paths(paths)
    findings = [finding_dict(e) for e in selection.result.errors if not selection.hidden(e)]
    if selection.result.table is not None:
        found = lint_table(selection.result.table, imports=imports, as_of=as_of)
        findings += [f.as_dict() for f in found if selection.is_named(f.file)]
    return findings


def _tally(findings: Sequence[Mapping[str, Any]]) -> str:
    counts = {s: sum(f["severity"] == s for f in findings) for s in ("error", "warning", "suppressed")}
    return ", ".join(f"{n} {s if s == 'suppressed' else s + '(s)'}" for s, n in counts.items())


def cmd_lint(args: argparse.Namespace) -> int:
    from .lint import has_failures

    findings = run_lint(args.paths, imports=args.imports, as_of=args.as_of)
    out = format_findings(findings, args.format)
    if out:
        print(out)
    if args.format == "text":
        print(f"lint: {_tally(findings)}", file=sys.stderr)
    return EXIT_FINDINGS if has_failures(findings, strict=args.strict) else EXIT_OK


# --- parsers -----------------------------------------------------------------------------
def add_parsers(verb: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``diff`` and ``lint`` with the CLI's ``verb(name, func, help, registry_opt)``."""
    p = verb("diff", cmd_diff, "show what a registry change does to dispatch, between git revisions or directories",
             False)
    p.add_argument("base", help="git revision (also A..B or A...B, as git diff reads them) or directory")
    p.add_argument("head", nargs="?", help="git revision or directory (default: the working tree)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 1 when dispatch changed, 0 when not (like git diff --exit-code)")
    p.add_argument("--registry-dir", action="append", metavar="DIR",
                   help="registry directory inside the repository (repeatable; default: registry.d)")
    p.add_argument("--builtin", choices=("auto", "side", "installed"), default="auto",
                   help="where built-in tasks come from: the side's own registry dir (side), the installed factory "
                        "(installed), or auto: side when the registry dir has a tasks.yaml at its top")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="markdown: at most N items per section (0: all); a comment has a size limit")

    p = verb("lint", cmd_lint, "find what a reviewer would miss: unpinned checkpoints, shared targets, "
             "deprecations, useless overrides, ... (codes F001-F011)", False)
    p.add_argument("paths", nargs="*", help="files or directories (default: the installed registry); "
                   "findings are reported for these only")
    p.add_argument("--import", dest="imports", action="store_true",
                   help="also import every target (F001-F003); this may import torch")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.add_argument("--as-of", metavar="VERSION", help="check deprecations as if the table were at VERSION")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")


__all__ = ["Selection", "add_parsers", "cmd_diff", "cmd_lint", "run_lint", "select_paths"]
