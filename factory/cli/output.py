"""What every verb shares: exit codes, the table it reads, plain-text tables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from factory.registry.loader import load_registry
from factory.registry.table import Table

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT


def table_from(args: argparse.Namespace) -> Table:
    """The table a verb works on: the default sources plus ``--registry`` paths."""
    return load_registry(getattr(args, "registry", None) or None)


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows as aligned columns with an upper-case header."""
    if not rows:
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())
