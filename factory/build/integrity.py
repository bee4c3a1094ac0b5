"""sha256 pins of checkpoint files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from factory.errors import IntegrityError
from factory.untrusted import check_file

_CHUNK = 1 << 20
_FORBIDDEN = frozenset("\\:\0")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_plain_relative(name: str) -> bool:
    """A path inside a checkpoint: relative, ``/``-separated, no ``.``/``..`` part, no backslash, ``:`` or NUL."""
    parts = name.split("/")
    return bool(name) and all(part not in ("", ".", "..") and not _FORBIDDEN.intersection(part) for part in parts)


def verify_sha256(directory: str | Path, pins: Mapping[str, str], *, only_present: bool = False) -> None:
    """Check every pinned file of ``directory``; ``only_present`` skips files not downloaded.

    A pin names a plain relative path inside the checkpoint (the schema says so too): any other
    key is an :class:`IntegrityError` before any file is opened, so a pin can never make the
    factory read, hash and print a file outside the checkpoint.
    """
    directory = Path(directory)
    for name in sorted(pins):
        if not isinstance(name, str) or not is_plain_relative(name):
            raise IntegrityError(
                f"sha256 pin key {name!r} is not a plain relative path inside the checkpoint",
                file=directory,
                hint="pin keys are file names as in the checkpoint ('model.safetensors', 'sub/config.json'): "
                "no '..', no leading '/', no backslash; fix the checkpoint entry",
            )
    for name, expected in sorted(pins.items()):
        path = directory / name
        if not os.path.lexists(path):
            if only_present:
                continue
            raise IntegrityError(
                f"pinned file {name!r} is missing",
                file=path,
                hint="the checkpoint is incomplete; re-download or fix the pin",
            )
        check_file(path, max_bytes=None, error=IntegrityError, what="a pinned file")  # never hash a FIFO
        actual = sha256_file(path)
        if actual != expected.lower():
            raise IntegrityError(
                f"sha256 mismatch for {name}: expected {expected}, found {actual}",
                file=path,
                hint="the file changed since it was pinned; do not use it until the pin is reviewed",
                expected=expected,
                actual=actual,
            )
