"""Shared helpers for native model parity tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import factory


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def build_native(task: str, directory: Path, model_cls: type) -> torch.nn.Module:
    """``factory.build(task, directory)`` on a checkpoint saved by transformers.

    Checks that the registry dispatched to the expected native class.
    """
    model = factory.build(task, directory)
    assert type(model) is model_cls, f"{task} built {type(model).__qualname__}, expected {model_cls.__qualname__}"
    assert not model.training
    return model
