"""factory.auto tests: every test starts with no runtime registrations and leaves none behind."""

from __future__ import annotations

import pytest

from factory.registry import loader, runtime
from tests.build.hub_server import fake_hub  # noqa: F401  (pytest fixture)


@pytest.fixture(autouse=True)
def no_runtime_registrations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_current", [runtime.RuntimeSource()])
    monkeypatch.setattr(loader, "_layered", [])
