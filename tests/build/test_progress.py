"""Progress bars for big loads and saves: on a terminal only, off with HF_HUB_DISABLE_PROGRESS_BARS."""

from __future__ import annotations

import io

import torch

from factory.build import progress
from factory.build.meta import empty_model, fresh_model
from factory.build.saving import save
from factory.build.weights import find_weight_files, load_weights
from tests.build.test_weights import TinyConfig, TinyLM


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def as_terminal(monkeypatch) -> Terminal:
    """Standard error is a terminal; every checkpoint counts as big. Called in the test itself: pytest's
    capture sets sys.stderr again between a fixture's setup and the test."""
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr(progress, "MIN_BYTES", 0)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    return err


def save_and_load(tmp_path):
    model = fresh_model(TinyLM, TinyConfig())
    save(model, tmp_path / "ckpt")
    load_weights(empty_model(TinyLM, TinyConfig()), find_weight_files(tmp_path / "ckpt"))


def test_a_terminal_shows_progress_for_save_and_load(tmp_path, monkeypatch):
    terminal = as_terminal(monkeypatch)
    save_and_load(tmp_path)
    shown = terminal.getvalue()
    assert "saving" in shown and "loading" in shown and "100%" in shown


def test_no_bar_when_disabled_or_small_or_not_a_terminal(tmp_path, monkeypatch):
    terminal = as_terminal(monkeypatch)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    save_and_load(tmp_path / "a")
    assert terminal.getvalue() == ""
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    monkeypatch.setattr(progress, "MIN_BYTES", 256 * 2**20)
    save_and_load(tmp_path / "b")
    assert terminal.getvalue() == ""
    monkeypatch.setattr(progress, "MIN_BYTES", 0)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    save_and_load(tmp_path / "c")
    assert terminal.getvalue() == ""


def test_the_threshold_is_a_few_hundred_megabytes():
    assert progress.MIN_BYTES == 256 * 2**20
    assert not progress.enabled(10 * 2**20)


def test_track_yields_every_item_once(monkeypatch):
    terminal = as_terminal(monkeypatch)
    items = [("a", torch.zeros(4)), ("b", torch.zeros(2))]
    assert list(progress.track(items, lambda item: item[1].numel() * 4, "loading")) == items
    assert "24.0/24.0" in terminal.getvalue()
