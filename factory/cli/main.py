"""The ``factory`` command line: the parser and the entry point.

Each verb group lives in its own module and registers its arguments. Verbs that only read
the registry (validate, list, tasks, show, schema, explain, diff, lint) never import torch.
Exit codes: 0 ok, 1 findings (or a failed build), 2 usage errors.

Every error is one message on stderr and exit 1, never a traceback; ``--debug`` (before or
after the verb, or ``FACTORY_DEBUG=1``) prints the traceback too. An error that is not a
``FactoryError`` is a bug in factory (or a plugin) and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from factory.cli import build_verbs, pack_verbs, registry_verbs, review_verbs
from factory.cli.output import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from factory.errors import FactoryError

VERB_GROUPS = (registry_verbs, build_verbs, pack_verbs, review_verbs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    parser = argparse.ArgumentParser(prog="factory", description="A declarative, YAML-driven model factory.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")

    def verb(
        name: str, func: Callable[[argparse.Namespace], int], help: str, registry_opt: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
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
    debug = bool(getattr(args, "debug", False)) or os.environ.get("FACTORY_DEBUG", "").strip() not in ("", "0")
    try:
        return int(func(args))
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if debug:
            traceback.print_exc()
        if isinstance(err, FactoryError):
            print(f"error: {err}", file=sys.stderr)
        else:
            print(
                f"error: {type(err).__name__}: {err}\n  hint: this is a bug in factory or in a plugin it imported; "
                "rerun with --debug for the traceback and report it",
                file=sys.stderr,
            )
        return EXIT_FINDINGS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
