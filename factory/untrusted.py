"""Reading files that come from outside: a checkpoint's JSON, registry YAML, chat templates.

Every file is looked at before it is read. It must be a regular file: a FIFO, a socket, a
device or a directory is refused from ``os.stat`` alone, never opened for reading (a FIFO
would block the process, a device could be read without end), and the file is then opened
with ``O_NONBLOCK`` and checked again on the open descriptor, so a file swapped for a FIFO in
between cannot block either. It must be no larger than its kind's limit, checked before a byte
is read. JSON must be nested no deeper than :data:`MAX_DEPTH` levels, counted on the raw text
before it is parsed (a 100,000-level file would otherwise end in ``RecursionError``).

Every problem is raised as the caller's :class:`~factory.errors.FactoryError` subclass
(``ConfigError`` for ``config.json``, ``TokenizerFileError`` for tokenizer files, ...), naming
the file, with ``reason`` set to ``missing``, ``kind``, ``size``, ``encoding``, ``depth`` or ``syntax``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from array import array
from itertools import accumulate
from pathlib import Path
from typing import Any

from factory.errors import FactoryError

MiB = 1 << 20

#: config.json, tokenizer_config.json, special_tokens_map.json, generation_config.json,
#: preprocessor_config.json, ...: real ones are a few KiB, the largest (a 21k-label id2label) ~1 MiB.
MAX_JSON_BYTES = 16 * MiB
#: ``*.safetensors.index.json``: one line per tensor; a 1T-parameter checkpoint's index is ~10 MiB.
MAX_INDEX_BYTES = 32 * MiB
#: Files handed to the tokenizers library (tokenizer.json, vocab.txt, vocab.json, merges.txt):
#: the largest real tokenizer.json files are ~35 MiB.
MAX_TOKENIZER_BYTES = 512 * MiB
#: A chat template file (chat_template.jinja): real ones are under 20 KiB.
MAX_TEMPLATE_BYTES = 1 * MiB
#: One registry YAML file: the largest shipped one (tasks.yaml) is 9 KiB.
MAX_YAML_BYTES = 1 * MiB
#: JSON nesting depth: configs need about 5 levels, tokenizer.json about 8.
MAX_DEPTH = 64

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_DELETE = bytes(b for b in range(256) if b not in b"[]{}")
_SIGNED = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes
_CHUNK = 1 << 16


def describe_size(size: int) -> str:
    """``16 MiB``, ``1.5 KiB``, ``12 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_file(
    path: str | Path,
    *,
    max_bytes: int | None,
    error: type[FactoryError] = FactoryError,
    what: str = "this file",
    hint: str | None = None,
) -> os.stat_result:
    """``os.stat`` of ``path`` once it is known to be a regular file of at most ``max_bytes``.

    ``hint`` is given with a missing file. Symbolic links are followed (the HF cache is made of them).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error("file does not exist", file=path, hint=hint, reason="missing") from None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, EACCES; ValueError: an embedded NUL
        raise error(f"cannot be read: {_reason(exc)}", file=path, hint=hint, reason="missing") from None
    _check_stat(st, path, max_bytes, error, what)
    return st


def _check_stat(
    st: os.stat_result, path: str | Path, max_bytes: int | None, error: type[FactoryError], what: str
) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(
            f"is {_kind(st.st_mode)}, not a regular file: refused without reading it",
            file=path,
            hint=f"{what} must be a plain file; replace it with the real file",
            reason="kind",
        )
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(
            f"is {describe_size(st.st_size)}, larger than the {describe_size(max_bytes)} limit for {what}: "
            "refused before reading",
            file=path,
            hint="a real file of this kind is far smaller; check that it is the right file",
            reason="size",
        )


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


def read_bytes(
    path: str | Path,
    *,
    max_bytes: int,
    error: type[FactoryError] = FactoryError,
    what: str = "this file",
    hint: str | None = None,
) -> bytes:
    """The contents of a regular file of at most ``max_bytes``, never blocking on a FIFO."""
    check_file(path, max_bytes=max_bytes, error=error, what=what, hint=hint)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"cannot be read: {_reason(exc)}", file=path, hint=hint, reason="missing") from None
    try:
        _check_stat(os.fstat(fd), path, max_bytes, error, what)  # the file opened is the file checked
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot be read: {_reason(exc)}", file=path, hint=hint, reason="missing") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(
            f"grew beyond the {describe_size(max_bytes)} limit for {what} while it was read",
            file=path,
            reason="size",
        )
    return data


def decode_text(data: bytes, path: str | Path, error: type[FactoryError] = FactoryError) -> str:
    """UTF-8 text (a leading byte-order mark dropped); an error names the line of the bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            file=path,
            line=line,
            hint="save the file as UTF-8",
            reason="encoding",
        ) from None
    return text.removeprefix("\ufeff")


def read_text(
    path: str | Path,
    *,
    max_bytes: int,
    error: type[FactoryError] = FactoryError,
    what: str = "this file",
    hint: str | None = None,
) -> str:
    """A regular UTF-8 text file of at most ``max_bytes``."""
    return decode_text(read_bytes(path, max_bytes=max_bytes, error=error, what=what, hint=hint), path, error)


def json_depth(data: bytes, stop_above: int | None = None) -> int:
    """How deeply the arrays and objects of JSON text nest (brackets inside strings do not count).

    With ``stop_above`` the count stops as soon as it is exceeded (a bomb is found in its first bytes).
    """
    # Escapes first, then whole strings, then an unterminated one: each a linear pass.
    outside = _STRING.sub(b"", _ESCAPE.sub(b"", data)).partition(b'"')[0]
    signed = array("b", outside.translate(None, _DELETE).translate(_SIGNED))
    deepest = level = 0
    for start in range(0, len(signed), _CHUNK):
        levels = list(accumulate(signed[start : start + _CHUNK], initial=level))
        deepest, level = max(deepest, max(levels)), levels[-1]
        if stop_above is not None and deepest > stop_above:
            break
    return deepest


def loads_json(
    data: bytes | str,
    path: str | Path,
    *,
    max_depth: int = MAX_DEPTH,
    error: type[FactoryError] = FactoryError,
) -> Any:
    """Parse JSON text that came from ``path``, refusing it unparsed when it nests deeper than ``max_depth``.

    ``NaN`` and ``Infinity`` are accepted as Python's json module does; whoever uses the values
    checks their ranges (:mod:`factory.models.configuration` does for configs).
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = json_depth(raw, stop_above=max_depth)
    if depth > max_depth:
        raise error(
            f"JSON nested more than {max_depth} levels deep (at least {depth}): refused before parsing",
            file=path,
            hint="real files of this kind are a few levels deep; check that it is the right file",
            reason="depth",
        )
    text = data if isinstance(data, str) else decode_text(data, path, error)
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise error(
            f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            file=path,
            line=exc.lineno,
            column=exc.colno,
            hint="fix or re-download the file",
            reason="syntax",
        ) from None
    except (ValueError, RecursionError) as exc:  # an integer of more than 4300 digits, ...
        raise error(
            f"is not usable JSON: {exc}", file=path, hint="fix or re-download the file", reason="syntax"
        ) from None


def read_json(
    path: str | Path,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_DEPTH,
    error: type[FactoryError] = FactoryError,
    what: str | None = None,
    hint: str | None = None,
    require_object: bool = True,
) -> Any:
    """Read an untrusted JSON file: kind, size and nesting depth checked before it is parsed.

    With ``require_object`` (default) the top level must be a JSON object. ``what`` names the
    kind of file in messages (default: its name); ``hint`` is given when it is missing.
    """
    what = what or Path(path).name
    data = read_bytes(path, max_bytes=max_bytes, error=error, what=what, hint=hint)
    value = loads_json(data, path, max_depth=max_depth, error=error)
    if require_object and not isinstance(value, dict):
        raise error(
            f"must hold a JSON object, found {type(value).__name__}",
            file=path,
            hint="fix or re-download the file",
            reason="syntax",
        )
    return value
