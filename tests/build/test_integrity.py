"""sha256 pins: keys are plain relative paths inside the checkpoint, checked by the schema and again before hashing."""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path

import pytest

import factory
from factory.build.integrity import is_plain_relative, verify_sha256
from factory.errors import IntegrityError, SchemaError

BAD_KEYS = ["../../etc/passwd", "/etc/passwd", "a/../../b", "sub/./x", "./config.json", "a\\\\b", "C:/x", "a//b", "x/"]
GOOD_KEYS = ["config.json", "sub/model.safetensors", "..hidden", "a..b", ".gitattributes"]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("key", BAD_KEYS)
def test_the_schema_refuses_pin_keys_outside_the_checkpoint(tmp_path: Path, key: str):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "evil.yaml").write_text(
        textwrap.dedent(f"""\
        schema_version: 1
        kind: checkpoints
        checkpoints:
          evil:
            path: {tmp_path}
            architecture: gpt2
            sha256:
              "{key}": "{"0" * 64}"
        """)
    )
    with pytest.raises(SchemaError, match="a plain relative path inside the checkpoint") as info:
        factory.load_registry(paths=[tmp_path], include_plugins=False, packs=False)
    assert info.value.file.endswith("evil.yaml") and info.value.line == 8


@pytest.mark.parametrize("key", [k.replace("\\\\", "\\") for k in BAD_KEYS] + ["", "a\0b"])
def test_verify_refuses_such_keys_before_opening_anything(tmp_path: Path, key: str):
    outside = tmp_path / "secret"
    outside.write_text("not yours")
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(IntegrityError, match="is not a plain relative path inside the checkpoint") as info:
        verify_sha256(tmp_path / "ckpt", {key: _digest(b"x"), "config.json": _digest(b"x")})
    assert _digest(b"not yours") not in str(info.value)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_plain_keys_are_verified(tmp_path: Path, key: str):
    assert is_plain_relative(key)
    path = tmp_path / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    verify_sha256(tmp_path, {key: _digest(b"weights")})
    with pytest.raises(IntegrityError, match=f"sha256 mismatch for {key}"):
        verify_sha256(tmp_path, {key: _digest(b"other")})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_pinned_fifo_is_refused_without_blocking(tmp_path: Path, finishes):
    os.mkfifo(tmp_path / "model.safetensors")
    with pytest.raises(IntegrityError, match="is a FIFO"):
        finishes(lambda: verify_sha256(tmp_path, {"model.safetensors": _digest(b"")}))
    (tmp_path / "sub").mkdir()
    with pytest.raises(IntegrityError, match="is a directory"):
        verify_sha256(tmp_path, {"sub": _digest(b"")})
