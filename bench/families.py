"""The ``families`` section of ``make bench``: one mid-size checkpoint per native family, side by side with
transformers.

A family is one line of :data:`FAMILIES`: a random checkpoint spec of :data:`checkpoints.SPECS` (written by
transformers' ``save_pretrained``, 100-300 MB), the task and Auto class that build it, and the inputs its
forward takes (a kind of :data:`probe.INPUTS`). Per family:

* **cold build** (``factory.build`` vs ``AutoX.from_pretrained``, fresh processes, rotating order): total
  time and peak RSS above the post-import baseline (goals: <= 0.4x time, <= 1.0x RSS);
* **forward latency** on the same inputs and threads (goal <= 1.0x), with the largest output difference;
* **greedy generation** tokens/s for the generative ones (goal >= 1.0x transformers' tokens/s) and
  whether the tokens agree.

``python bench/run.py --only families [--families t5,bart]`` runs some of them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    label: str  # shown in the tables
    spec: str  # a key of checkpoints.SPECS
    task: str  # factory task
    auto: str  # transformers Auto class
    inputs: str  # a key of probe.INPUTS
    generate: bool = False
    forward: dict[str, Any] = field(default_factory=dict)  # extra probe arguments (batch, seq, ...)


#: Native families with a benchmark row. Add one line per family (and its spec in checkpoints.SPECS).
FAMILIES: tuple[Family, ...] = (
    Family("gemma", "gemma-200m", "causal-lm", "AutoModelForCausalLM", "decoder", generate=True),
    Family("gemma2", "gemma2-200m", "causal-lm", "AutoModelForCausalLM", "decoder", generate=True),
    Family("phi3", "phi3-200m", "causal-lm", "AutoModelForCausalLM", "decoder", generate=True),
    Family("mixtral", "mixtral-250m", "causal-lm", "AutoModelForCausalLM", "decoder", generate=True),
    Family("qwen3_moe", "qwen3moe-250m", "causal-lm", "AutoModelForCausalLM", "decoder", generate=True),
    Family("roberta", "roberta-fwd", "model", "AutoModel", "encoder", forward={"seq": 128, "pad_rows": 1}),
    Family("distilbert", "distilbert-fwd", "model", "AutoModel", "text", forward={"seq": 128, "pad_rows": 1}),
    Family("mpnet", "mpnet-fwd", "model", "AutoModel", "text", forward={"seq": 128, "pad_rows": 1}),
    Family("modernbert", "modernbert-fwd", "model", "AutoModel", "text", forward={"seq": 256, "pad_rows": 1}),
    Family("t5", "t5-150m", "seq2seq-lm", "AutoModelForSeq2SeqLM", "seq2seq", generate=True),
    Family("bart", "bart-150m", "seq2seq-lm", "AutoModelForSeq2SeqLM", "seq2seq", generate=True),
    Family("whisper", "whisper-150m", "speech-seq2seq", "AutoModelForSpeechSeq2Seq", "speech", generate=True),
    Family("vit", "vit-fwd", "image-classification", "AutoModelForImageClassification", "vision"),
    Family("clip", "clip-fwd", "zero-shot-image-classification", "AutoModelForZeroShotImageClassification", "clip"),
    Family("siglip", "siglip-fwd", "zero-shot-image-classification", "AutoModelForZeroShotImageClassification", "clip"),
    Family("wav2vec2", "wav2vec2-fwd", "ctc", "AutoModelForCTC", "audio", forward={"seq": 32000}),
)

BUILD_TIME_GOAL, BUILD_RSS_GOAL, FORWARD_GOAL, GENERATE_GOAL = 0.4, 1.0, 1.0, 1.0


def selected(names: str | None) -> list[Family]:
    """The families named (comma-separated labels or specs), or all."""
    if not names:
        return list(FAMILIES)
    wanted = {n.strip().lower() for n in names.split(",") if n.strip()}
    return [f for f in FAMILIES if f.label.lower() in wanted or f.spec.lower() in wanted]


def bench(run: Any, res: Any, families: list[Family], n: int, threads: int, quick: bool) -> None:
    """Sample every family; ``run`` is bench/run.py (its probe, random_checkpoint and log helpers)."""
    reps = dict(warmup=1 if quick else 2, repeats=3 if quick else 10)
    for fam in families:
        path = run.random_checkpoint(fam.spec)
        run.prewarm_page_cache(path)
        run.log(f"family {fam.label}: cold build and forward, {n} processes each")
        jobs: dict[str, tuple[Any, ...]] = {
            f"family {fam.label} build factory": (run.probe, "build_factory", {"task": fam.task, "name": str(path)}),
            f"family {fam.label} build transformers": (
                run.probe,
                "build_transformers",
                {"path": str(path), "auto": fam.auto},
            ),
        }
        res.sample_all(jobs, n)
        args = dict(path=str(path), task=fam.task, auto=fam.auto, kind=fam.inputs, threads=threads, **reps)
        args.update({"batch": 2, "seq": 64, **fam.forward})
        if fam.generate:
            args.update(generate=32, prompt=16, gen_repeats=1 if quick else 3)
        res.sample_all({f"family {fam.label} forward": (run.probe, "forward", args)}, n, warm=False)


def report(run: Any, rep: Any, families: list[Family]) -> None:
    res, fmt, ratio = rep.res, run.fmt, run.ratio
    builds, forwards, gens = [], [], []
    for fam in families:
        fk, tk = f"family {fam.label} build factory", f"family {fam.label} build transformers"
        ft, tt = res.median(fk, "total_seconds"), res.median(tk, "total_seconds")
        fr, tr = _rss_above(res, fk), _rss_above(res, tk)
        weights = res.first(fk, "weight_bytes")
        rt, rr = ratio(ft, tt), ratio(fr, tr)
        builds.append(
            [
                fam.label,
                fmt(weights, "MB") if weights else rep.err(fk),
                fmt(ft, "s"),
                fmt(tt, "s"),
                fmt(rt, "x"),
                rep.target(
                    f"{fam.label} cold build <= {BUILD_TIME_GOAL}x transformers",
                    fmt(rt, "x"),
                    f"<= {BUILD_TIME_GOAL}×",
                    None if rt is None else rt <= BUILD_TIME_GOAL,
                ),
                fmt(fr, "MB"),
                fmt(tr, "MB"),
                fmt(rr, "x"),
                rep.target(
                    f"{fam.label} build RSS <= {BUILD_RSS_GOAL}x transformers",
                    fmt(rr, "x"),
                    f"<= {BUILD_RSS_GOAL}×",
                    None if rr is None else rr <= BUILD_RSS_GOAL,
                ),
            ]
        )
        key = f"family {fam.label} forward"
        samples = res.samples.get(key, [])
        if not samples:
            forwards.append([fam.label, rep.err(key), "", "", "", "", ""])
            continue
        r = statistics.median(s["forward"]["factory"] / s["forward"]["transformers"] for s in samples)
        forwards.append(
            [
                fam.label,
                fmt(res.median(key, "forward", "factory"), "ms"),
                fmt(res.median(key, "forward", "transformers"), "ms"),
                fmt(r, "x"),
                rep.target(
                    f"{fam.label} forward <= {FORWARD_GOAL}x transformers",
                    fmt(r, "x"),
                    f"<= {FORWARD_GOAL}×",
                    r <= FORWARD_GOAL,
                ),
                f"{max(s['max_abs_diff'] for s in samples):.1e}",
                "×".join(str(d) for d in res.first(key, "input") or ()),
            ]
        )
        gen = [s["generate"] for s in samples if "generate" in s]
        if gen:
            speed = statistics.median(g["tokens_per_s"]["factory"] / g["tokens_per_s"]["transformers"] for g in gen)
            gens.append(
                [
                    fam.label,
                    f"{statistics.median(g['tokens_per_s']['factory'] for g in gen):.1f}",
                    f"{statistics.median(g['tokens_per_s']['transformers'] for g in gen):.1f}",
                    fmt(speed, "x"),
                    rep.target(
                        f"{fam.label} generation >= {GENERATE_GOAL}x transformers tok/s",
                        fmt(speed, "x"),
                        f">= {GENERATE_GOAL}×",
                        speed >= GENERATE_GOAL,
                    ),
                    "yes" if all(g["same_tokens"] for g in gen) else "**no**",
                ]
            )
    rep.lines.append("### Native families: cold build (fresh processes; RSS = peak above the post-import baseline)\n")
    rep.table(
        [
            "family",
            "weights",
            "factory",
            "transformers",
            "time f/t",
            "met",
            "factory RSS",
            "transformers RSS",
            "RSS f/t",
            "met",
        ],
        builds,
    )
    rep.lines.append("### Native families: forward latency (fp32, same inputs and threads)\n")
    rep.table(["family", "factory", "transformers", "f/t", "met", "max |Δ| output", "input"], forwards)
    if gens:
        rep.lines.append("### Native families: greedy generation, 32 new tokens, batch 1\n")
        rep.table(["family", "factory tok/s", "transformers tok/s", "speed f/t", "met", "same tokens"], gens)


def _rss_above(res: Any, key: str) -> float | None:
    values = [s["rss_peak"] - s["rss_base"] for s in res.samples.get(key, []) if "rss_peak" in s]
    return statistics.median(values) if values else None
