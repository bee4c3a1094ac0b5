"""Shared helpers for native model parity tests (native model vs transformers on the same checkpoint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import factory


def build_native(task: str, directory: Path, model_cls: type) -> torch.nn.Module:
    """``factory.build(task, directory)`` on a checkpoint saved by transformers.

    Checks that the registry dispatched to the expected native class.
    """
    model = factory.build(task, directory)
    assert type(model) is model_cls, f"{task} built {type(model).__qualname__}, expected {model_cls.__qualname__}"
    assert not model.training
    return model


ATOL = dict(atol=1e-5, rtol=1e-5)


def randomize(model: torch.nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Weights large enough that every component visibly changes the outputs (norms near 1)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(s in name for s in skip):
                continue
            if "norm" in name:
                param.uniform_(0.5, 1.5)
            else:
                param.normal_(0.0, 0.2)


def assert_same_outputs(got, want, keys) -> None:
    """Each of ``keys`` equal (fp32, atol 1e-5); tuples of tensors (hidden states) entry by entry."""
    for key in keys:
        mine, theirs = got[key], want[key]
        if isinstance(theirs, (tuple, list)):
            assert len(mine) == len(theirs), key
            for a, b in zip(mine, theirs):
                torch.testing.assert_close(a, b, **ATOL, msg=lambda m, k=key: f"{k}: {m}")
        else:
            torch.testing.assert_close(mine, theirs, **ATOL, msg=lambda m, k=key: f"{k}: {m}")


# --- tokenizers -----------------------------------------------------------------------------------
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "PG&E stated it scheduled the blackouts in response to forecasts for high winds.",
    "Nearly 800 thousand customers were scheduled to be affected by the shutoffs.",
    "Ünïcödé wörds, numbers 12345 and 3.14; emoji 🙂 too",
]


def byte_level_vocab(size: int = 300) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small byte-level BPE vocabulary (GPT-2 / RoBERTa style) trained on CORPUS."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 10, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def perturb_and_save(model: torch.nn.Module, directory: Path, scale: float = 0.1) -> torch.nn.Module:
    """Add noise to every parameter (so zero biases and unit norms are not), ``save_pretrained``, return it in eval."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * scale)
    model.eval()
    model.save_pretrained(directory)
    return model


def assert_same(ours, theirs, what: str, atol: float = 1e-5, skip: tuple[str, ...] = ()) -> int:
    """Every tensor transformers returns equals ours: fields of model outputs (nested ones too) and tuples of
    tensors (hidden states, attentions). Returns how many tensors were compared."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), (what, type(ours))
        assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
        torch.testing.assert_close(ours, theirs, atol=atol, rtol=1e-5, msg=lambda m: f"{what}: {m}")
        return 1
    if isinstance(theirs, (tuple, list)):
        assert isinstance(ours, (tuple, list)) and len(ours) == len(theirs), (what, ours, len(theirs))
        return sum(assert_same(a, b, f"{what}[{i}]", atol) for i, (a, b) in enumerate(zip(ours, theirs)))
    compared = 0
    for name in theirs.keys():  # noqa: SIM118 (a ModelOutput: its keys are the fields set)
        if name in skip or theirs[name] is None:
            continue
        compared += assert_same(getattr(ours, name), theirs[name], f"{what}.{name}", atol)
    assert compared, what
    return compared


def assert_builds_without_transformers(builds: list[tuple[str, Path, str]]) -> None:
    """In a fresh interpreter: each ``(task, directory, class name)`` builds that native class, and transformers
    is never imported."""
    code = (
        "import sys, factory\n"
        f"for task, directory, name in {[(t, str(d), n) for t, d, n in builds]!r}:\n"
        "    model = factory.build(task, directory)\n"
        "    assert type(model).__name__ == name, (task, type(model).__name__, name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'transformers')\n"
        "assert not bad, bad[:5]\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def assert_config_defaults(native_cls: type, reference_cls: type, derived: dict[str, object] | None = None) -> None:
    """A fresh native config has transformers' defaults, key by key (``derived``: keys whose null default
    transformers fills in at construction, with the value it derives)."""
    ours, theirs = native_cls(), reference_cls()
    for key in native_cls.defaults():
        if key in (native_cls.sub_configs or {}):
            continue
        expected = getattr(theirs, key)
        if isinstance(expected, tuple):
            expected = list(expected)
        if derived and key in derived:
            assert getattr(ours, key) is None and expected == derived[key], key
        else:
            assert getattr(ours, key) == expected, key
    assert ours.model_type == theirs.model_type
