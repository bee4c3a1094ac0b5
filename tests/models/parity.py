"""Shared helpers for native model parity tests (native model vs transformers on the same checkpoint)."""

from __future__ import annotations

import json
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


def assert_builds_without_transformers(builds: list[tuple[str, Path, str]]) -> None:
    """In a fresh process, ``factory.build(task, directory)`` gives class ``name`` and never imports transformers."""
    code = "\n".join(
        [
            "import sys, factory",
            f"for task, directory, name in {[(t, str(d), n) for t, d, n in builds]!r}:",
            "    model = factory.build(task, directory)",
            "    assert type(model).__name__ == name, (task, type(model).__name__)",
            "assert 'transformers' not in sys.modules, 'transformers was imported'",
        ]
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]


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
