"""The ``factory`` command line.

Verbs that only read the registry (validate, list, tasks, show, schema,
explain --no-build, diff, lint) never import torch. Exit codes: 0 ok,
1 findings (or a failed build), 2 usage errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import FactoryError
from .loader import builtin_dir, load_registry
from .table import Registration, Table

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def display_path(path: str | os.PathLike | None) -> str:
    """A path relative to the working directory when it lies below it."""
    if path is None:
        return "-"
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return str(p)


# --- findings output ---------------------------------------------------------
def finding_dict(err: FactoryError, severity: str = "error", code: str | None = None) -> dict[str, Any]:
    return {
        "severity": severity, "code": code or type(err).__name__,
        "file": display_path(err.file) if err.file else None, "line": err.line, "column": err.column,
        "message": err.message, "hint": err.hint,
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_findings(findings: Sequence[dict[str, Any]], fmt: str) -> str:
    """Render findings as text, JSON or GitHub Actions workflow commands."""
    if fmt == "json":
        return json.dumps(findings, indent=2)
    lines = []
    for f in findings:
        message = f["message"] + (f" (hint: {f['hint']})" if f.get("hint") else "")
        if fmt == "github":
            level = {"error": "error", "warning": "warning"}.get(f["severity"], "notice")
            props = []
            if f.get("file"):
                props.append(f"file={_escape_prop(f['file'])}")
                if f.get("line"):
                    props.append(f"line={f['line']}")
                    if f.get("column"):
                        props.append(f"col={f['column']}")
            props.append(f"title={_escape_prop(f['code'])}")
            lines.append(f"::{level} {','.join(props)}::{_escape_data(message)}")
        else:
            where = f["file"] or ""
            if f.get("line"):
                where += f":{f['line']}" + (f":{f['column']}" if f.get("column") else "")
            lines.append(f"{where}: {f['severity']}: [{f['code']}] {message}" if where
                         else f"{f['severity']}: [{f['code']}] {message}")
    return "\n".join(lines)


# --- verbs ---------------------------------------------------------------------
def _table_from(args) -> Table:
    return load_registry(getattr(args, "registry", None) or None)


def _split_paths(paths: Sequence[str]) -> tuple[list[str], bool]:
    """Explicit paths, minus the built-in registry (which is then loaded as built-in)."""
    builtin = builtin_dir()
    rest, has_builtin = [], False
    for p in paths:
        rp = Path(p).resolve()
        if rp == builtin or (builtin in rp.parents and rp.exists()):
            has_builtin = True
        else:
            rest.append(p)
    return rest, has_builtin


def cmd_validate(args) -> int:
    from .review import select_paths  # named files of another repo's registry.d: see factory.review

    selection = select_paths(args.paths)
    result = selection.result
    findings = [finding_dict(e) for e in result.errors if not selection.hidden(e)]
    hidden = len(result.errors) - len(findings)
    if result.table is not None and args.imports:
        from .imports import check_imports

        findings.extend(check_imports(result.table))
    failing = [f for f in findings if f["severity"] == "error"]
    shown = failing if args.quiet else findings
    out = format_findings(shown, args.format)
    if out:
        print(out)
    if args.format == "text":
        status = "ok" if not failing else f"{len(failing)} problem(s)"
        others = len(findings) - len(failing)
        print(f"{len(result.files)} file(s) checked: {status}" + (f" ({others} warning(s) or suppressed)" if others else ""),
              file=sys.stderr)
        if hidden:
            print(f"note: {hidden} problem(s) in other files of the same registry directory, not named here",
                  file=sys.stderr)
    return EXIT_FINDINGS if failing else EXIT_OK


def _registration_row(reg: Registration) -> dict[str, Any]:
    row = {
        "task": reg.task, "architecture": reg.architecture, "target": reg.target,
        "builder": reg.builder, "layer": reg.layer,
        "defined_at": f"{display_path(reg.provenance.file)}:{reg.provenance.line}",
        "source": reg.provenance.source,
    }
    if reg.provenance.distribution:
        row["distribution"] = reg.provenance.distribution
        row["version"] = reg.provenance.version
    if reg.shadows:
        row["shadows"] = [f"{s.target} ({display_path(s.provenance.file)}:{s.provenance.line})" for s in reg.shadows]
    if reg.deprecated:
        row["deprecated"] = {k: v for k, v in vars(reg.deprecated).items() if v}
    return row


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def cmd_list(args) -> int:
    table = _table_from(args)
    regs = table.find(args.task or "*", args.arch or "*")
    if not args.components:
        comps = {t.name for t in table.tasks.values() if t.group == "component"}
        if not args.task or args.task == "*":
            regs = [r for r in regs if r.task not in comps]
    rows = [_registration_row(r) for r in regs]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if row.get("distribution"):
                row["source"] = f"{row['source']} ({row['distribution']} {row['version'] or ''})".replace(" )", ")")
        _print_table(rows, ("task", "architecture", "target", "source", "defined_at"))
        print(f"{len(rows)} registration(s)", file=sys.stderr)
    return EXIT_OK


def cmd_tasks(args) -> int:
    table = _table_from(args)
    counts: dict[str, int] = {}
    for (task, _arch) in table.registrations:
        counts[task] = counts.get(task, 0) + 1
    rows = [{"task": t.name, "group": t.group, "auto_class": t.auto_class,
             "aliases": ",".join(t.aliases), "architectures": counts.get(t.name, 0), "summary": t.summary}
            for t in table.tasks.values()]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ("task", "group", "auto_class", "aliases", "architectures"))
    return EXIT_OK


def show_architecture(table: Table, name: str) -> dict[str, Any]:
    arch = table.architecture(name)
    regs = sorted(table.find("*", name), key=lambda r: (table.tasks[r.task].group == "component", r.task))
    return {
        "architecture": arch.name, "summary": arch.summary,
        "files": [f"{display_path(p.file)}:{p.line} ({p.source})" for p in arch.files],
        "rules": [{"rule": r.describe(), "reason": r.reason,
                   "defined_at": f"{display_path(r.provenance.file)}:{r.provenance.line}"} for r in arch.rules],
        "registrations": [_registration_row(r) for r in regs],
        "checkpoints": sorted(c.name for c in table.checkpoints.values() if c.architecture == name),
    }


def cmd_show(args) -> int:
    table = _table_from(args)
    info = show_architecture(table, args.arch)
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"{info['architecture']}: {info['summary']}")
    for f in info["files"]:
        print(f"  defined in {f}")
    if info["rules"]:
        print("dispatch rules:")
        for r in info["rules"]:
            print(f"  {r['rule']}  [{r['defined_at']}]" + (f"  ({r['reason']})" if r["reason"] else ""))
    print("registrations:")
    for r in info["registrations"]:
        print(f"  {r['task']:<28} {r['target']}  [{r['defined_at']}]" + (" (builder: transformers)" if r["builder"] == "transformers" else ""))
        for s in r.get("shadows", ()):
            print(f"  {'':<28} shadows {s}")
    if info["checkpoints"]:
        print("named checkpoints: " + ", ".join(info["checkpoints"]))
    return EXIT_OK


def cmd_schema(args) -> int:
    from . import schemas

    if not args.kind:
        for kind in schemas.KINDS:
            print(f"{kind}\t{display_path(schemas.schema_path(kind))}")
        return EXIT_OK
    print(json.dumps(schemas.schema(args.kind), indent=2))
    return EXIT_OK


def cmd_explain(args) -> int:
    from .resolve import explain, format_chain

    table = _table_from(args)
    chain = explain(args.task, args.name, registry=table, revision=args.revision,
                          local_files_only=args.local_files_only)
    print(json.dumps(chain, indent=2, default=str) if args.format == "json" else format_chain(chain))
    return EXIT_OK


def cmd_build(args) -> int:
    if args.dry_run:
        args.format = "text"
        return cmd_explain(args)
    import time

    from .builder import build

    table = _table_from(args)
    start = time.perf_counter()
    obj = build(args.task, args.name, registry=table, dtype=args.dtype, device=args.device,
                revision=args.revision, local_files_only=args.local_files_only)
    seconds = time.perf_counter() - start
    rows: list[tuple[str, Any]] = [("class", f"{type(obj).__module__}.{type(obj).__qualname__}")]
    params = getattr(obj, "parameters", None)
    if callable(params):
        ps = list(obj.parameters())
        rows.append(("parameters", f"{sum(p.numel() for p in ps):,}"))
        if ps:
            rows += [("dtype", ps[0].dtype), ("device", ps[0].device)]
    origin = getattr(obj, "factory_provenance", None) or {}
    rows += [(key, value) for key, value in origin.items() if value is not None]
    rows.append(("load time", f"{seconds:.3f} s"))
    width = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        print(f"{key + ':':<{width}}{value}")
    return EXIT_OK


def cmd_pack(args) -> int:
    from .pack import main as pack_main

    return pack_main([args.name, *args.rest])


# --- parser --------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factory", description="A declarative, YAML-driven model factory.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, func: Callable, help: str, registry_opt: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if registry_opt:
            p.add_argument("--registry", action="append", metavar="PATH",
                           help="extra registry file or directory (repeatable)")
        return p

    p = verb("validate", cmd_validate, "check registry YAML files against the schemas and merge rules", False)
    p.add_argument("paths", nargs="*", help="files or directories (default: the installed registry)")
    p.add_argument("--import", dest="imports", action="store_true", help="also import every target and check it")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only, not warnings or suppressed findings")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")

    p = verb("list", cmd_list, "list registrations (shell-style wildcards)")
    p.add_argument("--task", help="task or alias, wildcards allowed")
    p.add_argument("--arch", help="architecture, wildcards allowed")
    p.add_argument("--components", action="store_true", help="include config/tokenizer/... components")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = verb("tasks", cmd_tasks, "list the task table")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = verb("show", cmd_show, "show one architecture: files, rules, registrations")
    p.add_argument("arch")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = verb("schema", cmd_schema, "print the JSON Schema of a document kind", False)
    p.add_argument("kind", nargs="?", choices=("tasks", "architecture", "checkpoints"))

    for name, func, help in (("explain", cmd_explain, "show how a name resolves for a task, without building"),
                             ("build", cmd_build, "build a task from a name and describe the result")):
        p = verb(name, func, help)
        p.add_argument("task")
        p.add_argument("name")
        p.add_argument("--revision")
        p.add_argument("--local-files-only", action="store_true")
        if name == "explain":
            p.add_argument("--no-build", action="store_true", help="accepted for clarity: explain never builds")
            p.add_argument("--format", choices=("text", "json"), default="text")
        else:
            p.add_argument("--dry-run", action="store_true", help="explain instead of building")
            p.add_argument("--dtype", help="float32, bfloat16, float16, ...")
            p.add_argument("--device", help="cpu, cuda, cuda:1, ...")

    p = verb("pack", cmd_pack, "generate a registration pack (e.g. `factory pack transformers`)", False)
    p.add_argument("name", choices=("transformers",))
    p.add_argument("rest", nargs=argparse.REMAINDER)

    _add_review_verbs(sub, verb)
    return parser


def _add_review_verbs(sub, verb) -> None:
    """diff and lint live in factory.review; they register their own arguments."""
    try:
        from . import review
    except ImportError:
        return
    review.add_parsers(verb)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except FactoryError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FINDINGS
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
