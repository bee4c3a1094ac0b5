"""Progress bars for loading and saving big checkpoints: on a terminal only.

A bar is shown when the work is at least :data:`MIN_BYTES`, standard error is a terminal and
``HF_HUB_DISABLE_PROGRESS_BARS`` is not set (huggingface_hub's switch, also for its downloads;
``huggingface_hub.utils.disable_progress_bars()`` turns factory's bars off too). The bars are
huggingface_hub's ``tqdm``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: Checkpoints smaller than this load and save without a bar.
MIN_BYTES = 256 * 2**20
_TRUE = ("1", "true", "yes", "on")


def enabled(total_bytes: int) -> bool:
    """Whether work of ``total_bytes`` shows a bar here and now."""
    if total_bytes < MIN_BYTES:
        return False
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in _TRUE:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(callable(isatty) and isatty())


def track(items: Iterable[T], size: Callable[[T], int], description: str) -> Iterator[T]:
    """Yield ``items``, advancing a bar by ``size(item)`` bytes once each is done."""
    items = list(items)
    total = sum(size(item) for item in items)
    if not enabled(total):
        yield from items
        return
    from huggingface_hub.utils.tqdm import tqdm

    with tqdm(  # type: ignore[no-untyped-call]
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description, file=sys.stderr
    ) as bar:
        for item in items:
            yield item
            bar.update(size(item))


__all__ = ["MIN_BYTES", "enabled", "track"]
