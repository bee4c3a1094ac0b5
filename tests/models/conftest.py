"""Native model tests: deterministic seeds for every test, one intra-op thread."""

from __future__ import annotations

import pytest
import torch

# Tiny models: a second thread only adds synchronisation, which costs a thousand times the work on a busy
# machine (a wav2vec2 forward of 3 ms takes a second with two threads under load).
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models on a shared machine: one intra-op thread is ~100x faster than two threads that wait for a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def pytest_generate_tests(metafunc):
    """An encoder suite's ``task`` runs over the family's registered tasks (those with a loss where asked)."""
    family = getattr(metafunc.cls, "FAMILY", None)
    if family is None or "task" not in metafunc.fixturenames:
        return
    tasks = list(family.heads)
    if getattr(metafunc.function, "labelled_tasks", False):
        tasks = [t for t in tasks if t not in family.no_labels]
    metafunc.parametrize("task", tasks)
