"""``make bench`` section ``parallel``: tensor-parallel builds on 2 gloo ranks, and the 405B-shaped meta build.

* The ~1 GB fp32 Llama checkpoint (``llama-1g``) built with ``tp_size=2`` on two torchrun ranks
  (gloo, CPU): factory's native split (each rank reads its slices with ``get_slice``) against
  transformers' own tensor parallelism (``from_pretrained(..., distributed_config=DistributedConfig(tp_size=2))``),
  side by side in one run, and the single-process factory build for reference. Each rank reports
  its import time (torch.distributed.tensor and torch._dynamo, which DTensor imports on first use,
  included for both), its build time (process group already up), and its memory: RSS after the
  imports and ``init_process_group`` is the baseline, the peak is ``ru_maxrss`` after every page
  of its local shards was touched. Per figure: the slower rank's build time, the larger rank's
  peak above baseline, over the checkpoint's size.
* The Llama-3.1-405B-shaped ``factory.build("causal-lm", "llama", weights=False, device="meta")``:
  its build time and RSS growth.

Run by ``bench/run.py`` (``--only parallel``); ``python bench/parallel.py worker LOADER DIR`` is one
rank, ``python bench/parallel.py meta405b`` the meta build.
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MB = 1024 * 1024
GOAL_RSS, GOAL_TIME, GOAL_META = 0.6, 0.5, 1.0
LOADERS = ("factory", "transformers")

#: Llama-3.1-405B's config.json shape.
LLAMA_405B = {
    "vocab_size": 128256, "hidden_size": 16384, "intermediate_size": 53248, "num_hidden_layers": 126,
    "num_attention_heads": 128, "num_key_value_heads": 8, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "torch_dtype": "bfloat16",
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
}  # fmt: skip


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def touch(model) -> int:
    """Read one element per 4 KiB page of every local shard, so that lazily read memory counts."""
    import torch
    from torch.distributed.tensor import DTensor

    seen, total = set(), 0
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            local = t.to_local() if isinstance(t, DTensor) else t
            key = (local.data_ptr(), local.numel())
            if local.numel() == 0 or key in seen:
                continue
            seen.add(key)
            flat = local.detach().reshape(-1)
            flat[:: max(1, 4096 // flat.element_size())].float().sum().item()
            total += local.numel() * local.element_size()
    return total


# --- one rank (or the single-process reference) ------------------------------------------
def worker(loader: str, directory: str) -> None:
    import torch
    import torch._dynamo
    import torch.distributed as dist
    import torch.distributed.tensor

    distributed = "RANK" in os.environ
    if loader == "transformers":
        import transformers
        from transformers.distributed.configuration_utils import DistributedConfig

        transformers.logging.set_verbosity_error()
    else:
        import factory
    if distributed:
        dist.init_process_group("gloo")
    t_imports, base = time.perf_counter(), rss_now()
    if loader == "transformers":
        model = transformers.AutoModelForCausalLM.from_pretrained(
            directory, dtype=torch.float32, distributed_config=DistributedConfig(tp_size=dist.get_world_size())
        )
    else:
        options = {"tp_size": dist.get_world_size()} if distributed else {}
        model = factory.build("causal-lm", directory, dtype=torch.float32, **options)
    t_built = time.perf_counter()
    held = touch(model)
    result = {
        "rank": dist.get_rank() if distributed else 0,
        "import_seconds": t_imports - T0,
        "build_seconds": t_built - t_imports,
        "rss_base": base,
        "rss_peak": rss_peak(),
        "held_bytes": held,
    }
    if distributed:
        Path(os.environ["BENCH_OUT"], f"rank{result['rank']}.json").write_text(json.dumps(result))
        dist.barrier()
        dist.destroy_process_group()
    else:
        print("BENCH-RESULT " + json.dumps(result), flush=True)


def meta405b() -> None:
    import factory

    factory.build("causal-lm", "llama", weights=False, device="meta", config_overrides={"vocab_size": 8})  # warm
    t_imports, base = time.perf_counter(), rss_now()
    model = factory.build("causal-lm", "llama", weights=False, device="meta", config_overrides=LLAMA_405B)
    seconds = time.perf_counter() - t_imports
    params = sum(p.numel() for p in model.parameters())
    print(
        "BENCH-RESULT " + json.dumps({"build_seconds": seconds, "rss_growth": rss_now() - base, "parameters": params}),
        flush=True,
    )


# --- driving it from bench/run.py --------------------------------------------------------------
def _env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }


def _torchrun(loader: str, directory: Path, nproc: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-tp-") as out:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            str(Path(__file__).resolve()),
            "worker",
            loader,
            str(directory),
        ]
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**_env(), "BENCH_OUT": out}
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - started
        ranks = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
        if proc.returncode != 0 or len(ranks) != nproc:
            tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Error" in ln or "error" in ln]
            return {"error": f"exit {proc.returncode}: " + (tail[-1] if tail else "no output")[:400]}
        return {
            "ranks": ranks,
            "wall_seconds": wall,
            "build_seconds": max(r["build_seconds"] for r in ranks),
            "import_seconds": max(r["import_seconds"] for r in ranks),
            "rss_above_base": max(r["rss_peak"] - r["rss_base"] for r in ranks),
        }


def _child(*args: str, timeout: float) -> dict:
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=_env(),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            result = json.loads(line.removeprefix("BENCH-RESULT "))
            if "rss_peak" in result:
                result["rss_above_base"] = result["rss_peak"] - result["rss_base"]
            return result
    tail = proc.stderr.strip().splitlines()
    return {"error": f"exit {proc.returncode}: " + (tail[-1] if tail else "no output")[:400]}


def bench(res, n: int, directory: Path, log) -> None:
    """``n`` samples of each figure, sides rotated, after one untimed run each (page cache warm)."""
    log(f"parallel: tp_size=2 on 2 gloo ranks, {n} run(s) per loader; 405B-shaped meta build")
    jobs = {f"tp2 {loader}": (lambda loader=loader: _torchrun(loader, directory, 2, 900)) for loader in LOADERS}
    jobs["tp1 factory"] = lambda: _child("worker", "factory", str(directory), timeout=600)
    jobs["meta 405B"] = lambda: _child("meta405b", timeout=300)
    keys = list(jobs)
    for key in keys:  # untimed: warms the page cache and the bytecode
        first = jobs[key]()
        if "error" in first:
            res.add(key, first)
    for i in range(n):
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            if key not in res.errors:
                res.add(key, jobs[key]())


def report(rep, size: int, fmt, ratio) -> None:
    res = rep.res

    def med(key: str, field: str) -> float | None:
        values = [s[field] for s in res.samples.get(key, []) if field in s]
        return statistics.median(values) if values else None

    rows = []
    times = {key: med(key, "build_seconds") for key in ("tp2 factory", "tp2 transformers", "tp1 factory")}
    for key, label in (
        ("tp2 factory", "factory, tp_size=2 (2 gloo ranks)"),
        ("tp2 transformers", "transformers, DistributedConfig(tp_size=2)"),
        ("tp1 factory", "factory, one process (reference)"),
    ):
        rss = med(key, "rss_above_base")
        rows.append(
            [
                label,
                fmt(med(key, "import_seconds"), "s"),
                fmt(times[key], "s"),
                fmt(med(key, "wall_seconds"), "s") if key.startswith("tp2") else "",
                fmt(rss, "MB"),
                fmt(ratio(rss, size), "x"),
                fmt(ratio(times[key], times["tp2 transformers"]), "x"),
                rep.err(key) if key in res.errors else "",
            ]
        )
    rep.lines.append(
        f"### Tensor parallel: the ~1 GB Llama ({size / MB:.0f} MB fp32) on 2 gloo ranks (median of "
        "runs; per rank: the slower rank's build, the larger rank's peak RSS)\n"
    )
    rep.table(
        [
            "loader",
            "import",
            "build",
            "torchrun wall",
            "peak RSS − base (per rank)",
            "÷ checkpoint",
            "build ÷ transformers TP",
            "error",
        ],
        rows,
    )
    rss_ratio = ratio(med("tp2 factory", "rss_above_base"), size)
    time_ratio = ratio(times["tp2 factory"], times["tp2 transformers"])
    meta = med("meta 405B", "build_seconds")
    growth = med("meta 405B", "rss_growth")
    rep.lines.append(
        f'Llama-3.1-405B-shaped `factory.build(..., weights=False, device="meta")`: '
        f"{fmt(meta, 's', 3)}, RSS growth {fmt(growth, 'MB')}.\n"
    )
    rep.target(
        "tp_size=2 per-rank peak RSS above baseline <= 0.6x checkpoint",
        fmt(rss_ratio, "x"),
        f"<= {GOAL_RSS}×",
        None if rss_ratio is None else rss_ratio <= GOAL_RSS,
    )
    rep.target(
        "tp_size=2 build <= 0.5x transformers' TP build",
        fmt(time_ratio, "x"),
        f"<= {GOAL_TIME}×",
        None if time_ratio is None else time_ratio <= GOAL_TIME,
    )
    rep.target(
        "405B-shaped meta build < 1 s",
        fmt(meta, "s", 3),
        f"< {GOAL_META} s",
        None if meta is None else meta < GOAL_META,
    )


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "meta405b":
        meta405b()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} worker LOADER DIR | meta405b")
