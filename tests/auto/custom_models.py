"""Classes the factory.auto tests register: importable by name, so that export_yaml can name them.

Two pairs in the seed page's shape, ``NewModelConfig`` / ``NewModel``: transformers subclasses
(``PretrainedConfig`` / ``PreTrainedModel``, as the seed shows them) and factory's own
(``factory.models.configuration.Config`` with a plain ``torch.nn.Module``); plus classes that break
the seed's two consistency rules, and a plain module that does not keep its config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import transformers
from torch import nn

from factory.models.configuration import Config


class HFNewModelConfig(transformers.PretrainedConfig):
    model_type = "new-model"

    def __init__(self, hidden_size: int = 8, vocab_size: int = 16, **kwargs):
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        super().__init__(**kwargs)


class HFNewModel(transformers.PreTrainedModel):
    config_class = HFNewModelConfig

    def __init__(self, config: HFNewModelConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.post_init()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(input_ids))


class NewModelConfig(Config):
    model_type = "new-model"
    hidden_size: int = 8
    vocab_size: int = 16


class NewModel(nn.Module):
    config_class = NewModelConfig

    def __init__(self, config: NewModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(input_ids))


class NewModelForTokens(NewModel):
    """A second task's class of the same architecture."""

    def __init__(self, config: NewModelConfig):
        super().__init__(config)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(input_ids))


class OtherConfig(Config):
    model_type = "other-model"
    hidden_size: int = 4


class ModelOfOtherConfig(NewModel):
    config_class = OtherConfig


class UntypedConfig(Config):
    """A factory config that leaves model_type empty."""

    hidden_size: int = 8


@dataclass
class PlainConfig:
    """A config that is a plain dataclass: no to_dict, no model_type."""

    width: int = 4


class PlainModule(nn.Module):
    """A plain module that does not keep its config."""

    def __init__(self, config: PlainConfig):
        super().__init__()
        self.linear = nn.Linear(config.width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
