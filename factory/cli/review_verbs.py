"""The review verbs: ``diff`` (what a registry change does to dispatch) and ``lint`` (findings with codes)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from factory.cli.output import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from factory.review.findings import finding_dict, format_findings
from factory.review.selection import select_paths


def cmd_diff(args: argparse.Namespace) -> int:
    from factory.review.diff import DiffError, diff_specs, render

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


def run_lint(paths: Sequence[str] = (), *, imports: bool = False, as_of: str | None = None) -> list[dict[str, Any]]:
    """Load problems plus lint findings (as finding dicts) for ``paths`` (default: the whole registry)."""
    from factory.review.lint import lint_table

    selection = select_paths(paths)
    findings = [finding_dict(e) for e in selection.result.errors if not selection.hidden(e)]
    if selection.result.table is not None:
        only = selection.is_named if paths else None  # import the named files' targets only
        found = lint_table(selection.result.table, imports=imports, as_of=as_of, only=only)
        findings += [f.as_dict() for f in found if selection.is_named(f.file)]
    return findings


def _tally(findings: Sequence[Mapping[str, Any]]) -> str:
    counts = {s: sum(f["severity"] == s for f in findings) for s in ("error", "warning", "suppressed")}
    return ", ".join(f"{n} {s if s == 'suppressed' else s + '(s)'}" for s, n in counts.items())


def cmd_lint(args: argparse.Namespace) -> int:
    from factory.review.lint import has_failures

    findings = run_lint(args.paths, imports=args.imports, as_of=args.as_of)
    out = format_findings(findings, args.format)
    if out:
        print(out)
    if args.format == "text":
        print(f"lint: {_tally(findings)}", file=sys.stderr)
    return EXIT_FINDINGS if has_failures(findings, strict=args.strict) else EXIT_OK


def add_parsers(verb: Any) -> None:
    """Register ``diff`` and ``lint`` with the CLI's ``verb(name, func, help, registry_opt)``."""
    p = verb(
        "diff", cmd_diff, "show what a registry change does to dispatch, between git revisions or directories", False
    )
    p.add_argument("base", help="git revision (also A..B or A...B, as git diff reads them) or directory")
    p.add_argument("head", nargs="?", help="git revision or directory (default: the working tree)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument(
        "--exit-code", action="store_true", help="exit 1 when dispatch changed, 0 when not (like git diff --exit-code)"
    )
    p.add_argument(
        "--registry-dir",
        action="append",
        metavar="DIR",
        help="registry directory inside the repository (repeatable; default: registry.d)",
    )
    p.add_argument(
        "--builtin",
        choices=("auto", "side", "installed"),
        default="auto",
        help="where built-in tasks come from: the side's own registry dir (side), the installed factory "
        "(installed), or auto: side when the registry dir has a tasks.yaml at its top",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="markdown: at most N items per section (0: all); a comment has a size limit",
    )

    p = verb(
        "lint",
        cmd_lint,
        "find what a reviewer would miss: unpinned checkpoints, shared targets, "
        "deprecations, useless overrides, ... (codes F001-F011)",
        False,
    )
    p.add_argument(
        "paths",
        nargs="*",
        help="files or directories (default: the installed registry); findings are reported for these only",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="store_true",
        help="also import every target (F001-F003); this may import torch",
    )
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.add_argument("--as-of", metavar="VERSION", help="check deprecations as if the table were at VERSION")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")
