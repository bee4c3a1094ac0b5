"""Build tests: the fake Hub on loopback (``fake_hub``) for every test that asks for it."""

from __future__ import annotations

import pytest

from tests.build.hub_server import fake_hub  # noqa: F401  (pytest fixture)
from tests.build.torchrun import launch


@pytest.fixture
def torchrun():
    """``torchrun(script, nproc, *args)``: run a worker on gloo ranks, get back what each rank saved."""
    return launch
