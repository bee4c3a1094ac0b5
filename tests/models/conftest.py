"""Native model tests: deterministic seeds for every test, one intra-op thread."""

from __future__ import annotations

import pytest
import torch

# Tiny models: a second thread only adds synchronisation, which costs a thousand times the work on a busy
# machine (a wav2vec2 forward of 3 ms takes a second with two threads under load).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
