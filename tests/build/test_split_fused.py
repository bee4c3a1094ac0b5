"""factory.build.weights.split_fused: checkpoint tensors a model declares as several of its parameters."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from factory.build.weights import load_weights, split_fused
from factory.errors import CheckpointError


class Pair(nn.Module):
    """Two parameters stored fused as one ``both`` tensor [2, 3, 4] in the checkpoint."""

    def __init__(self, rows: tuple[int, int] = (0, 3)) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(3, 4))
        self.b = nn.Parameter(torch.zeros(3, 4))
        self.rows = rows

    def split_checkpoint_tensor(self, key, shape):
        if key != "both":
            return None
        first, end = self.rows
        return [("a", first, end, (end - first, 4)), ("b", 3, 6, (3, 4))]


def test_parts_load_as_views_of_the_file(tmp_path):
    both = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    save_file({"both": both}, str(tmp_path / "model.safetensors"))
    model = Pair()
    report = load_weights(model, [tmp_path / "model.safetensors"])
    assert torch.equal(model.a, both[0]) and torch.equal(model.b, both[1])
    assert report.zero_copy == 2 and not report.missing and not report.unexpected
    cast = Pair()
    load_weights(cast, [tmp_path / "model.safetensors"], dtype=torch.bfloat16)
    assert torch.equal(cast.b, both[1].to(torch.bfloat16))


def test_parts_outside_the_tensor_are_refused(tmp_path):
    save_file({"both": torch.zeros(2, 3, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"tensor both \[2, 3, 4\] cannot hold a \(rows 4:7, \[3, 4\]\)"):
        load_weights(Pair(rows=(4, 7)), [tmp_path / "model.safetensors"])


def test_models_without_a_declaration_see_the_entries_unchanged():
    entries = {"x": object()}
    assert split_fused(nn.Linear(2, 2), entries) is entries  # type: ignore[arg-type]
