"""Shared helpers for native model parity tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def build_native(task: str, directory: Path, model_cls: type) -> torch.nn.Module:
    """Build ``task`` from a checkpoint directory saved by transformers.

    Interim implementation: construct ``model_cls`` from config.json and load
    model.safetensors. Replaced by ``factory.build(task, directory)`` once the
    build pipeline lands; callers must not depend on anything else.
    """
    import json

    from safetensors.torch import load_file

    config_cls = model_cls.config_class
    config = config_cls.from_dict(json.loads((directory / "config.json").read_text()))
    model = model_cls(config)
    state = load_file(str(directory / "model.safetensors"))
    prefix = getattr(model_cls, "base_model_prefix", "")
    own = set(model.state_dict())
    if prefix and not (own & set(state)):
        state = {k.removeprefix(prefix + "."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = getattr(model, "tied_weights", {}) or {}
    missing = [k for k in missing if k not in tied]
    assert not missing and not unexpected, (missing, unexpected)
    for dst, src in tied.items():
        dst_mod, _, dst_name = dst.rpartition(".")
        setattr(model.get_submodule(dst_mod), dst_name, model.get_parameter(src))
    return model.eval()
