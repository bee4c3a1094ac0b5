"""Relative-position buckets (Raffel et al., 2020): what T5-style relative attention biases index.

A relative distance ``key - query`` falls in one of ``num_buckets`` buckets: exact for short
distances, logarithmically wider up to ``max_distance``, the last bucket beyond. Bidirectional
buckets give half the buckets to keys after the query. MPNet uses the bidirectional form.
"""

from __future__ import annotations

import math

import torch


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """The bucket of each ``key - query`` distance in ``relative_position`` (long tensor), as T5 computes it."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # distance 0 takes the exact branch; clamp keeps log() finite for it in the discarded branch
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


__all__ = ["relative_position_bucket"]
