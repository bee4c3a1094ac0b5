"""The ``toy-mlp`` model: a plain torch module whose ``__init__`` takes the config."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from factory.models.outputs import BaseModelOutput

from .configuration import ToyMLPConfig


class ToyMLPModel(nn.Module):
    config_class = ToyMLPConfig  # `factory validate --import` checks it is the registered config

    def __init__(self, config: ToyMLPConfig) -> None:
        super().__init__()
        self.config = config
        sizes = [config.input_size] + [config.hidden_size] * config.num_hidden_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.act = nn.GELU() if config.activation == "gelu" else nn.ReLU()

    def forward(self, inputs: torch.Tensor) -> BaseModelOutput:
        hidden = inputs
        for layer in self.layers:
            hidden = self.act(layer(hidden))
        return BaseModelOutput(last_hidden_state=hidden)
