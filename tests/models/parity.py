"""Shared helpers for native model parity tests (native model vs transformers on the same checkpoint)."""

from __future__ import annotations

from pathlib import Path

import torch

import factory


def build_native(task: str, directory: Path, model_cls: type) -> torch.nn.Module:
    """``factory.build(task, directory)`` on a checkpoint saved by transformers.

    Checks that the registry dispatched to the expected native class.
    """
    model = factory.build(task, directory)
    assert type(model) is model_cls, f"{task} built {type(model).__qualname__}, expected {model_cls.__qualname__}"
    assert not model.training
    return model
