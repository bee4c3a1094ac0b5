"""transformers' default initialisation of a module, shared by the native families' ``_init_weights``.

Used for fresh models and for tensors missing from a non-strict load.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def default_init(module: nn.Module, std: float) -> None:
    """transformers' default initialisation of one module: N(0, std) linear, convolution and embedding
    weights with zero biases (and padding row), unit-weight zero-bias norms, torch's own for MultiheadAttention."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        module.weight.normal_(0.0, std)
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.normal_(0.0, std)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.MultiheadAttention):
        module._reset_parameters()
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d)):
        if module.weight is not None:
            module.weight.fill_(1.0)
        if module.bias is not None:
            module.bias.zero_()


__all__ = ["default_init"]
