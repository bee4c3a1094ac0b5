"""Verbs that read the registry: ``validate``, ``list``, ``tasks``, ``show``, ``schema``. None imports torch
(``validate --import`` imports the targets, and so may)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from factory.cli.output import EXIT_FINDINGS, EXIT_OK, print_table, table_from
from factory.paths import display_path
from factory.registry.table import ParallelPlan, Provenance, Registration, Table
from factory.review.findings import finding_dict, format_findings
from factory.review.selection import select_paths


def cmd_validate(args: argparse.Namespace) -> int:
    selection = select_paths(args.paths)
    result = selection.result
    findings = [finding_dict(e) for e in result.errors if not selection.hidden(e)]
    hidden = len(result.errors) - len(findings)
    only = selection.is_named if args.paths else None
    if result.table is not None and args.imports:
        from factory.review.lint import check_imports

        findings.extend(check_imports(result.table, only=only))
    failing = [f for f in findings if f["severity"] == "error"]
    shown = failing if args.quiet else findings
    out = format_findings(shown, args.format)
    if out:
        print(out)
    if args.format == "text":
        status = "ok" if not failing else f"{len(failing)} problem(s)"
        others = len(findings) - len(failing)
        checked = [f for f in result.files if only is None or only(str(f))]
        print(
            f"{len(checked)} file(s) checked: {status}" + (f" ({others} warning(s) or suppressed)" if others else ""),
            file=sys.stderr,
        )
        if len(checked) < len(result.files):
            print(
                f"note: {len(result.files) - len(checked)} other file(s) loaded for context (the built-in "
                "registry, plugins, FACTORY_REGISTRY_PATH) are not reported here; `factory validate` without "
                "paths checks them",
                file=sys.stderr,
            )
        if hidden:
            print(
                f"note: {hidden} problem(s) in other files of the same registry directory, not named here",
                file=sys.stderr,
            )
    return EXIT_FINDINGS if failing else EXIT_OK


def registration_row(reg: Registration) -> dict[str, Any]:
    """One registration as ``list`` and ``show`` print it."""
    row: dict[str, Any] = {
        "task": reg.task,
        "architecture": reg.architecture,
        "target": reg.target,
        "builder": reg.builder,
        "layer": reg.layer,
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


def cmd_list(args: argparse.Namespace) -> int:
    table = table_from(args)
    regs = table.find(args.task or "*", args.arch or "*")
    if not args.components:
        comps = {t.name for t in table.tasks.values() if t.group == "component"}
        if not args.task or args.task == "*":
            regs = [r for r in regs if r.task not in comps]
    rows = [registration_row(r) for r in regs]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if row.get("distribution"):
                row["source"] = f"{row['source']} ({row['distribution']} {row['version'] or ''})".replace(" )", ")")
        print_table(rows, ("task", "architecture", "target", "source", "defined_at"))
        print(f"{len(rows)} registration(s)", file=sys.stderr)
    return EXIT_OK


def cmd_tasks(args: argparse.Namespace) -> int:
    table = table_from(args)
    counts: dict[str, int] = {}
    for task, _arch in table.registrations:
        counts[task] = counts.get(task, 0) + 1
    rows = [
        {
            "task": t.name,
            "group": t.group,
            "auto_class": t.auto_class,
            "aliases": ",".join(t.aliases),
            "architectures": counts.get(t.name, 0),
            "summary": t.summary,
        }
        for t in table.tasks.values()
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ("task", "group", "auto_class", "aliases", "architectures"))
    return EXIT_OK


def show_architecture(table: Table, name: str) -> dict[str, Any]:
    """Everything ``factory show`` says about one architecture."""
    arch = table.architecture(name)
    regs = sorted(table.find("*", name), key=lambda r: (table.tasks[r.task].group == "component", r.task))
    return {
        "architecture": arch.name,
        "summary": arch.summary,
        "files": [f"{display_path(p.file)}:{p.line} ({p.source})" for p in arch.files],
        "rules": [
            {
                "rule": r.describe(),
                "reason": r.reason,
                "defined_at": f"{display_path(r.provenance.file)}:{r.provenance.line}",
            }
            for r in arch.rules
        ],
        "component_classes": component_class_rows(table, name),
        "registrations": [registration_row(r) for r in regs],
        "checkpoints": sorted(c.name for c in table.checkpoints.values() if c.architecture == name),
        "parallel": [plan_dict(p) for p in arch.parallel],
    }


def _at(prov: Provenance) -> str:
    return f"{display_path(prov.file)}:{prov.line}"


def plan_dict(plan: ParallelPlan) -> dict[str, Any]:
    """A parallel plan as ``show`` prints it, every rule with its file:line."""
    out: dict[str, Any] = {
        "builder": plan.builder,
        "defined_at": _at(plan.provenance),
        "tp": [{"path": e.path, "style": e.style, "parts": e.parts, "defined_at": _at(e.provenance)} for e in plan.tp],
        "divisible": [{"rule": r.describe(), "defined_at": _at(r.provenance)} for r in plan.divisible],
        "fsdp": [{"path": u.path, "defined_at": _at(u.provenance)} for u in plan.fsdp],
    }
    if plan.override:
        out["override"] = plan.override
    if plan.shadows:
        out["shadows"] = [_at(s.provenance) for s in plan.shadows]
    return out


def print_plan(info: dict[str, Any], indent: str = "  ") -> None:
    """The text form of :func:`plan_dict`."""
    print(
        f"{indent}builder {info['builder']}  [{info['defined_at']}]"
        + (f"  (override: {info['override']})" if info.get("override") else "")
    )
    width = max((len(e["path"]) for e in info["tp"]), default=0)
    for e in info["tp"]:
        style = e["style"] + (f" ({e['parts']} parts)" if e.get("parts") else "")
        print(f"{indent}  tp    {e['path']:<{width}}  {style}  [{e['defined_at']}]")
    for r in info["divisible"]:
        print(f"{indent}  check {r['rule']}  [{r['defined_at']}]")
    for u in info["fsdp"]:
        print(f"{indent}  fsdp  {u['path']}  [{u['defined_at']}]")
    for s in info.get("shadows", ()):
        print(f"{indent}  shadows the plan at {s}")


def component_class_rows(table: Table, name: str) -> list[dict[str, Any]]:
    """The component class names ``name``'s files declare, each with the entry in effect for it."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for claim in table.architecture(name).component_classes:
        if claim.key in seen:
            continue
        seen.add(claim.key)
        winner = table.component_classes.get(claim.key)
        if winner is None:
            continue
        row: dict[str, Any] = {
            "task": winner.task,
            "class": winner.name,
            "architecture": winner.architecture,
            "defined_at": f"{display_path(winner.provenance.file)}:{winner.provenance.line}",
            "layer": winner.layer,
        }
        if winner.shadows:
            row["shadows"] = [
                f"-> {s.architecture} ({display_path(s.provenance.file)}:{s.provenance.line}, {s.layer} layer)"
                for s in winner.shadows
            ]
        rows.append(row)
    return sorted(rows, key=lambda r: (r["task"], r["class"]))


def cmd_show(args: argparse.Namespace) -> int:
    table = table_from(args)
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
    if info["component_classes"]:
        print("component classes (a checkpoint file naming one is built by the architecture it points to):")
        for c in info["component_classes"]:
            elsewhere = "" if c["architecture"] == info["architecture"] else f" -> {c['architecture']} (taken over)"
            print(f"  {c['task']:<28} {c['class']}{elsewhere}  [{c['defined_at']}]")
            for s in c.get("shadows", ()):
                print(f"  {'':<28} shadows {s}")
    print("registrations:")
    for r in info["registrations"]:
        builder = " (builder: transformers)" if r["builder"] == "transformers" else ""
        print(f"  {r['task']:<28} {r['target']}  [{r['defined_at']}]{builder}")
        for s in r.get("shadows", ()):
            print(f"  {'':<28} shadows {s}")
    if info["checkpoints"]:
        print("named checkpoints: " + ", ".join(info["checkpoints"]))
    if info["parallel"]:
        print("parallel plans:")
        for plan in info["parallel"]:
            print_plan(plan)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from factory.registry import schemas

    if not args.kind:
        for kind in schemas.KINDS:
            print(f"{kind}\t{display_path(schemas.schema_path(kind))}")
        return EXIT_OK
    print(json.dumps(schemas.schema(args.kind), indent=2))
    return EXIT_OK


def add_parsers(verb: Any) -> None:
    """Register the verbs with the CLI's ``verb(name, func, help, registry_opt)``."""
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
