"""Verbs that resolve a name: ``explain`` (never builds, never imports torch) and ``build``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from factory.cli.output import EXIT_FINDINGS, EXIT_OK, table_from


def cmd_explain(args: argparse.Namespace) -> int:
    from factory.build.resolve import explain, format_chain

    table = table_from(args)
    chain = explain(
        args.task, args.name, registry=table, revision=args.revision, local_files_only=args.local_files_only
    )
    if args.tp is None:  # no torch imported
        print(json.dumps(chain, indent=2, default=str) if args.format == "json" else format_chain(chain))
        return EXIT_OK
    from factory.build.builder import plan

    shard_plan = plan(
        args.task,
        args.name,
        tp_size=args.tp,
        dtype=args.dtype,
        registry=table,
        revision=args.revision,
        local_files_only=args.local_files_only,
    )
    if args.format == "json":
        print(json.dumps({"chain": chain, "plan": shard_plan.as_dict()}, indent=2, default=str))
    else:
        print(format_chain(chain) + "\n\n" + str(shard_plan))
    return EXIT_FINDINGS if shard_plan.problems else EXIT_OK


def _tp_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--tp must be a positive integer, got {text}")
    return value


def cmd_build(args: argparse.Namespace) -> int:
    if args.dry_run:
        args.format = "text"
        return cmd_explain(args)
    from factory.build.builder import build

    table = table_from(args)
    start = time.perf_counter()
    obj = build(
        args.task,
        args.name,
        registry=table,
        dtype=args.dtype,
        device=args.device,
        revision=args.revision,
        local_files_only=args.local_files_only,
    )
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


def add_parsers(verb: Any) -> None:
    """Register the verbs with the CLI's ``verb(name, func, help, registry_opt)``."""
    for name, func, help in (
        ("explain", cmd_explain, "show how a name resolves for a task, without building"),
        ("build", cmd_build, "build a task from a name and describe the result"),
    ):
        p = verb(name, func, help)
        p.add_argument("task")
        p.add_argument("name")
        p.add_argument("--revision")
        p.add_argument("--local-files-only", action="store_true")
        if name == "explain":
            p.add_argument("--no-build", action="store_true", help="accepted for clarity: explain never builds")
            p.add_argument("--format", choices=("text", "json"), default="text")
            p.add_argument(
                "--tp",
                type=_tp_size,
                metavar="N",
                help="also say what each of N tensor-parallel ranks will read and hold (headers only)",
            )
            p.add_argument("--dtype", help="with --tp: the dtype to count bytes in (default: the config's)")
        else:
            p.add_argument("--dry-run", action="store_true", help="explain instead of building")
            p.add_argument("--dtype", help="float32, bfloat16, float16, ...")
            p.add_argument("--device", help="cpu, cuda, cuda:1, ...")
