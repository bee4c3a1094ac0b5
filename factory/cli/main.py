"""The ``factory`` command line: the parser and the entry point.

Each verb group lives in its own module and registers its arguments. Verbs that only read
the registry (validate, list, tasks, show, schema, explain, diff, lint) never import torch.
Exit codes: 0 ok, 1 findings (or a failed build), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from factory.cli import build_verbs, pack_verbs, registry_verbs, review_verbs
from factory.cli.output import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from factory.errors import FactoryError

VERB_GROUPS = (registry_verbs, build_verbs, pack_verbs, review_verbs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    parser = argparse.ArgumentParser(prog="factory", description="A declarative, YAML-driven model factory.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    def verb(
        name: str, func: Callable[[argparse.Namespace], int], help: str, registry_opt: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if registry_opt:
            p.add_argument(
                "--registry", action="append", metavar="PATH", help="extra registry file or directory (repeatable)"
            )
        return p

    for group in VERB_GROUPS:
        group.add_parsers(verb)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    func: Any = getattr(args, "func", None)
    if not func:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args))
    except FactoryError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FINDINGS
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
