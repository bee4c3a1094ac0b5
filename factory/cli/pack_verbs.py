"""``factory pack transformers``: regenerate a registration pack."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_pack(args: argparse.Namespace) -> int:
    from factory.packs.transformers import main as pack_main

    return pack_main([args.name, *args.rest])


def add_parsers(verb: Any) -> None:
    """Register the verb with the CLI's ``verb(name, func, help, registry_opt)``."""
    p = verb("pack", cmd_pack, "generate a registration pack (e.g. `factory pack transformers`)", False)
    p.add_argument("name", choices=("transformers",))
    p.add_argument("rest", nargs=argparse.REMAINDER)
