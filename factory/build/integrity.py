"""sha256 pins of checkpoint files."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from factory.errors import IntegrityError

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(directory: str | Path, pins: Mapping[str, str], *, only_present: bool = False) -> None:
    """Check every pinned file of ``directory``; ``only_present`` skips files not downloaded."""
    directory = Path(directory)
    for name, expected in sorted(pins.items()):
        path = directory / name
        if not path.is_file():
            if only_present:
                continue
            raise IntegrityError(
                f"pinned file {name!r} is missing",
                file=path,
                hint="the checkpoint is incomplete; re-download or fix the pin",
            )
        actual = sha256_file(path)
        if actual != expected.lower():
            raise IntegrityError(
                f"sha256 mismatch for {name}: expected {expected}, found {actual}",
                file=path,
                hint="the file changed since it was pinned; do not use it until the pin is reviewed",
                expected=expected,
                actual=actual,
            )
