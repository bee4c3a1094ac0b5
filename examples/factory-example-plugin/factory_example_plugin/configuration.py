"""The config of ``toy-mlp``: plain class attributes are its defaults."""

from __future__ import annotations

from factory.models.configuration import Config


class ToyMLPConfig(Config):
    model_type = "toy-mlp"  # must equal the architecture key in registry.d/toy.yaml

    input_size: int = 8
    hidden_size: int = 16
    num_hidden_layers: int = 2
    activation: str = "gelu"
