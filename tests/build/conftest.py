"""Build tests: the fake Hub on loopback (``fake_hub``) for every test that asks for it."""
from __future__ import annotations

from tests.build.hub_server import fake_hub  # noqa: F401  (pytest fixture)
