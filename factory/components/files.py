"""Reading and writing the small JSON files preprocessing components live in.

Checkpoint files are untrusted: each is checked to be a regular file of bounded size holding a JSON
object before it is used; code-naming keys (``auto_map``) are dropped with a warning. Files are written
atomically (a temporary file renamed into place), so a failure never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.errors import FactoryError, PreprocessorFileError, SaveError, UntrustedCodeWarning
from factory.untrusted import read_json

__all__ = [
    "PREPROCESSOR_FILE",
    "PROCESSOR_FILE",
    "component_config",
    "drop_code_keys",
    "read_json_object",
    "write_json",
    "write_text",
]

PREPROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
#: JSON files larger than this are refused before parsing (old Whisper files with mel filters: ~0.5 MB).
MAX_BYTES = 64 * 1024 * 1024
#: Keys of a checkpoint file that name code; never followed.
CODE_KEYS = ("auto_map",)


def read_json_object(path: Path, *, error: type[FactoryError] = PreprocessorFileError) -> dict[str, Any]:
    """An untrusted JSON file holding an object (:func:`factory.untrusted.read_json`: a regular file, bounded
    size, bounded nesting), errors raised as ``error``."""
    data: dict[str, Any] = read_json(path, max_bytes=MAX_BYTES, error=error, hint="regenerate it with save_pretrained")
    return data


def drop_code_keys(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Remove keys that name code (``auto_map``), warning that they are not followed."""
    named = [key for key in CODE_KEYS if key in data]
    if named:
        warnings.warn(
            f"{path}: ignoring {', '.join(named)}: factory never imports code named by a checkpoint; "
            "register custom components in a YAML architecture file instead",
            UntrustedCodeWarning,
            stacklevel=3,
        )
        data = {k: v for k, v in data.items() if k not in named}
    return data


def component_config(directory: Path, sections: tuple[str, ...], what: str) -> tuple[dict[str, Any], Path]:
    """A component's settings as transformers finds them: a section of ``processor_config.json`` (what
    transformers 5 saves for a processor), else ``preprocessor_config.json``. Returns them and their file."""
    directory = Path(directory)
    if not directory.is_dir():
        found = "a file" if directory.exists() else "nothing"
        raise PreprocessorFileError(
            f"expected a directory holding {PREPROCESSOR_FILE} or {PROCESSOR_FILE}, found {found}",
            file=directory,
            hint=f"pass the directory {what}.save_pretrained() wrote",
        )
    processor_path = directory / PROCESSOR_FILE
    if processor_path.exists():
        processor = read_json_object(processor_path)
        for section in sections:
            value = processor.get(section)
            if isinstance(value, Mapping):
                return drop_code_keys(dict(value), processor_path), processor_path
            if value is not None:
                raise PreprocessorFileError(
                    f"{section!r} must be a JSON object, found {type(value).__name__}",
                    file=processor_path,
                    hint="regenerate it with save_pretrained",
                )
    path = directory / PREPROCESSOR_FILE
    if not path.exists():
        raise PreprocessorFileError(
            f"no {PREPROCESSOR_FILE} (and no {' / '.join(sections)} section in {PROCESSOR_FILE})",
            file=directory,
            hint=f"save the {what} into the directory (save_pretrained)",
        )
    return drop_code_keys(read_json_object(path), path), path


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise SaveError(
            f"cannot write {path.name}: {exc.strerror or exc}",
            file=path,
            hint="check the directory is writable and has free space",
        ) from exc


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as transformers writes its JSON files (sorted keys, indent 2), atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return path
