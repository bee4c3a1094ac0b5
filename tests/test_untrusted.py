"""factory.untrusted: files are looked at (kind, size, JSON depth) before they are read or parsed."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory import untrusted
from factory.errors import ConfigError, FactoryError, TokenizerFileError
from factory.untrusted import MAX_DEPTH, check_file, json_depth, loads_json, read_json, read_text


def test_a_regular_json_file_reads(tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text('\ufeff{"model_type": "gpt2", "n_embd": 8, "nested": {"a": [1, {"b": null}]}}')
    assert read_json(path, error=ConfigError) == {"model_type": "gpt2", "n_embd": 8, "nested": {"a": [1, {"b": None}]}}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("error", [ConfigError, TokenizerFileError])
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, error, finishes):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(error, match=r"is a FIFO \(named pipe\), not a regular file") as info:
        finishes(lambda: read_json(fifo, error=error))
    assert info.value.file == str(fifo) and info.value.reason == "kind"
    link = tmp_path / "link.json"  # a link to a FIFO is a FIFO
    link.symlink_to(fifo)
    with pytest.raises(error, match="FIFO"):
        finishes(lambda: read_text(link, max_bytes=100, error=error))


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.mkdir(), "a directory"),
        (lambda p: p.symlink_to("/dev/zero"), "a character device"),
        (lambda p: p.symlink_to("/dev/null"), "a character device"),
    ],
    ids=["directory", "dev-zero", "dev-null"],
)
def test_directories_and_devices_are_refused(tmp_path: Path, make, kind, finishes):
    path = tmp_path / "tokenizer_config.json"
    make(path)
    with pytest.raises(TokenizerFileError, match=f"is {kind}, not a regular file") as info:
        finishes(lambda: read_json(path, error=TokenizerFileError))
    assert info.value.file == str(path)


def test_a_socket_is_refused(tmp_path: Path, finishes):
    path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as server:
        try:
            server.bind(str(path))
        except OSError:
            pytest.skip("cannot bind a unix socket here")
        with pytest.raises(ConfigError, match="is a socket"):
            finishes(lambda: read_json(path, error=ConfigError))


def test_missing_and_unreadable_files_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="file does not exist") as info:
        read_json(tmp_path / "config.json", error=ConfigError, hint="a checkpoint needs config.json")
    assert info.value.hint == "a checkpoint needs config.json" and info.value.reason == "missing"
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match="cannot be read") as info:
        read_json(loop, error=ConfigError)
    assert info.value.file == str(loop)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_json(tmp_path / ("x" * 300), error=ConfigError)  # ENAMETOOLONG
    with pytest.raises(ConfigError, match="cannot be read"):
        read_json(str(tmp_path / "a\0b"), error=ConfigError)  # an embedded NUL


@pytest.mark.parametrize("limit", [10, 1024, untrusted.MAX_JSON_BYTES])
def test_size_is_checked_before_reading(tmp_path: Path, limit: int):
    path = tmp_path / "big.json"
    with open(path, "wb") as fh:  # sparse: nothing is written but the size
        fh.truncate(limit + 1)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="larger than the .* limit for config.json: refused before reading") as info:
        read_json(path, max_bytes=limit, error=ConfigError, what="config.json")
    assert time.monotonic() - started < 1 and info.value.reason == "size"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 70 + "1" + "}" * 70,
        "[{" * 40 + "}]" * 40,
        '{"x": ' + "[" * 65 + "]" * 65 + "}",
        "[" * 1_000_000,  # unterminated as well
    ],
    ids=["arrays-100k", "objects-70", "mixed-80", "inner-65", "unterminated-1M"],
)
def test_nesting_depth_is_checked_before_parsing(tmp_path: Path, text: str):
    path = tmp_path / "config.json"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"JSON nested more than {MAX_DEPTH} levels deep") as info:
        read_json(path, error=ConfigError, require_object=False)
    assert time.monotonic() - started < 3 and info.value.reason == "depth" and info.value.file == str(path)


def test_brackets_inside_strings_do_not_count():
    deep_string = json.dumps({"template": "{{[[" * 500 + '\\"' * 100, "ok": ["[", "{"]})
    assert json_depth(deep_string.encode()) == 2
    assert loads_json(deep_string, "x.json")["ok"] == ["[", "{"]
    assert json_depth(b'["\\\\", [[1]]]') == 3  # an escaped backslash ends the string
    assert json_depth(b"[" * 64 + b"]" * 64) == 64


def test_quote_heavy_text_is_linear():
    started = time.monotonic()  # quadratic scanning would take hours here, linear takes a fraction of a second
    json_depth(b'"' + b'\\"' * 200_000)
    json_depth(b'"' * 400_000)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("data", "match", "reason"),
    [
        (b'{"a": 1,}', "is not valid JSON: .*line 1", "syntax"),
        (b"\xff\xfe{}", "is not valid UTF-8", "encoding"),
        (b'{"a": ' + b"1" * 5000 + b"}", "is not usable JSON", "syntax"),
        (b"[1, 2]", "must hold a JSON object, found list", "syntax"),
        (b"", "is not valid JSON", "syntax"),
    ],
    ids=["trailing-comma", "not-utf8", "huge-integer", "not-an-object", "empty"],
)
def test_bad_contents_name_the_file(tmp_path: Path, data: bytes, match: str, reason: str):
    path = tmp_path / "special_tokens_map.json"
    path.write_bytes(data)
    with pytest.raises(TokenizerFileError, match=match) as info:
        read_json(path, error=TokenizerFileError)
    assert info.value.file == str(path) and info.value.reason == reason


def test_check_file_returns_the_stat(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"12345")
    assert check_file(path, max_bytes=None).st_size == 5
    with pytest.raises(FactoryError, match="larger than the 4 bytes limit for a weights file"):
        check_file(path, max_bytes=4, what="a weights file")


# --- properties -----------------------------------------------------------------------
JSON_TEXT = st.one_of(
    st.text(alphabet='[]{}":,0123456789.-+eE \\nulltruefalseNaIfiy\n', max_size=400),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=30,
    ).map(json.dumps),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)


@given(text=JSON_TEXT, max_depth=st.integers(min_value=0, max_value=8))
def test_any_text_loads_or_is_a_factory_error(text: str, max_depth: int):
    started = time.monotonic()
    try:
        value = loads_json(text.encode("utf-8", "surrogatepass"), "x.json", max_depth=max_depth, error=ConfigError)
    except ConfigError as err:
        assert err.file == "x.json" and err.reason in ("depth", "syntax", "encoding")
    else:
        assert json_depth(json.dumps(value).encode()) <= max_depth
    assert time.monotonic() - started < 2


@given(data=st.binary(max_size=2000))
def test_any_bytes_read_or_are_a_factory_error(tmp_path_factory, data: bytes):
    path = tmp_path_factory.mktemp("json") / "config.json"
    path.write_bytes(data)
    started = time.monotonic()
    try:
        read_json(path, max_bytes=1000, error=ConfigError)
    except ConfigError as err:
        assert err.file == str(path)
    assert time.monotonic() - started < 2
