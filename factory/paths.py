"""Where factory's own data lives, and how paths are shown to people."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The directory holding ``schemas/`` and ``registry.d/`` (wheel and editable installs alike)."""
    return Path(__file__).resolve().parent / "_data"


def display_path(path: str | os.PathLike[str] | None) -> str:
    """A path relative to the working directory when it lies below it; ``-`` for none."""
    if path is None:
        return "-"
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return str(p)
