"""What the builder records on a model: the config it was built with (so a plain module that keeps none
saves), and the checkpoint's generation defaults."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

import factory
from factory.build import records
from factory.errors import SaveError

PLAIN_MODULE = """
import torch
from torch import nn


class PlainConfig:
    def __init__(self, width=4, depth=1):
        self.width = width
        self.depth = depth


class PlainNet(nn.Module):
    # keeps no config: only what it needs
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(config.width, config.width) for _ in range(config.depth))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
"""

PLAIN_YAML = """
schema_version: 1
kind: architecture
architecture: plain-net
config: plain_models:PlainConfig
tasks:
  model: plain_models:PlainNet
"""


@pytest.fixture
def table(tmp_path, monkeypatch):
    (tmp_path / "plain_models.py").write_text(textwrap.dedent(PLAIN_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "plain_models", raising=False)
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "plain-net.yaml").write_text(textwrap.dedent(PLAIN_YAML))
    return factory.load_registry([tmp_path / "reg"])


def test_a_plain_module_that_keeps_no_config_saves_and_builds_again(table, tmp_path):
    model = factory.build("model", "plain-net", registry=table, config_overrides={"width": 3, "depth": 2})
    assert not hasattr(model, "config")
    assert vars(model.factory_config) == {"width": 3, "depth": 2}
    saved = factory.save(model.to(torch.bfloat16), tmp_path / "saved")
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "plain-net" and config["architectures"] == ["PlainNet"]
    assert (config["width"], config["depth"], config["dtype"]) == (3, 2, "bfloat16")
    again = factory.build("model", saved, registry=table)
    assert again.layers[1].weight.dtype == torch.bfloat16  # the saved dtype, though the config class keeps none
    for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_module_built_elsewhere_still_needs_a_config(tmp_path):
    with pytest.raises(SaveError, match="Linear has no config with to_dict"):
        factory.save(torch.nn.Linear(2, 2), tmp_path / "x")


def test_config_dict_reads_to_dict_dataclasses_mappings_and_plain_objects():
    from dataclasses import dataclass

    @dataclass
    class DataConfig:
        size: int = 2

    class Holder(torch.nn.Module):
        pass

    for config, expected in [
        (DataConfig(), {"size": 2}),
        ({"size": 3}, {"size": 3}),
        (type("Bag", (), {"__init__": lambda self: setattr(self, "size", 4)})(), {"size": 4}),
    ]:
        module = Holder()
        records.record(module, config, None)
        assert records.config_dict(module) == expected
