"""Launching real ``torchrun`` workers from pytest (gloo on the CPU) and collecting what each rank wrote.

``launch(script, nproc, *args)`` runs ``python -m torch.distributed.run --standalone`` (a free
rendezvous port chosen by torchrun itself) with a hard timeout, one thread per rank, and returns
the per-rank results each worker saved with :func:`save_result`. A failing or hanging launch
fails the test with the tail of every rank's output, not a traceback of the launcher.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RESULTS_ENV = "FACTORY_TEST_RESULTS"


def save_result(results: dict[str, Any]) -> None:
    """In a worker: store this rank's results (tensors, numbers, strings) for the launching test."""
    rank = int(os.environ["RANK"])
    torch.save(results, Path(os.environ[RESULTS_ENV]) / f"rank{rank}.pt")


def _tail(text: str, lines: int = 60) -> str:
    kept = [line for line in text.splitlines() if "Warning" not in line and not line.startswith("W1")]
    return "\n".join(kept[-lines:])


def launch(script: Path, nproc: int, *args: str, timeout: float = 300) -> list[dict[str, Any]]:
    """Run ``script`` on ``nproc`` gloo ranks; the list of what each rank saved, by rank."""
    with tempfile.TemporaryDirectory(prefix="factory-torchrun-") as out:
        env = {
            **os.environ,
            RESULTS_ENV: out,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PYTHONWARNINGS": "ignore",
            "TORCH_CPP_LOG_LEVEL": "ERROR",
        }
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "--tee=3",
            str(script),
            *args,
        ]
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            pytest.fail(f"torchrun {script.name} x{nproc} did not finish in {timeout:.0f} s:\n{_tail(output)}")
        if proc.returncode != 0:
            pytest.fail(f"torchrun {script.name} x{nproc} exited {proc.returncode}:\n{_tail(output)}")
        missing = [r for r in range(nproc) if not (Path(out) / f"rank{r}.pt").is_file()]
        if missing:
            pytest.fail(f"ranks {missing} of {script.name} saved no results:\n{_tail(output)}")
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(nproc)]
