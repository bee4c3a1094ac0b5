"""Preprocessing throughput: factory's native components against transformers' on the same inputs.

``bench/run.py --only preprocessing`` (part of ``make bench``). Each sample is one fresh process that loads
both sides from the same directory (saved by transformers): factory through ``factory.build`` (the native
component the registry resolves from the directory's own files, no config.json), transformers through its
Auto class (the Pillow backend for images: torchvision is not installed). Both get the same inputs and the
same ``torch.set_num_threads``; after a warm-up the calls alternate sides, and the sample reports each side's
median call time and the largest absolute difference of the outputs.

* images/s for a batch of 32 RGB Pillow images of mixed sizes (160 to 900 pixels a side), ViT and CLIP;
* seconds of audio per second for 8 clips of 2 to 30 s at 16 kHz: Whisper log-mel features (padded to 30 s),
  wav2vec2 normalised input values (padded to the longest).

Run as ``python bench/preprocessing.py '{json args}'`` it is the child of one sample.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / ".bench" / "preprocessing"

#: name -> (factory task, transformers Auto class, what the figure counts)
COMPONENTS = {
    "ViT": ("image-processor", "AutoImageProcessor", "images"),
    "CLIP": ("image-processor", "AutoImageProcessor", "images"),
    "Whisper": ("feature-extractor", "AutoFeatureExtractor", "audio"),
    "wav2vec2": ("feature-extractor", "AutoFeatureExtractor", "audio"),
}
IMAGES, IMAGE_SIDES = 32, (160, 900)
CLIPS, CLIP_SECONDS, RATE = 8, (2.0, 30.0), 16000


def directories() -> dict[str, Path]:
    """One directory per component, as transformers' save_pretrained writes it (only preprocessor_config.json)."""
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    makers = {
        "ViT": ViTImageProcessorPil,
        "CLIP": CLIPImageProcessorPil,
        "Whisper": WhisperFeatureExtractor,
        "wav2vec2": Wav2Vec2FeatureExtractor,
    }
    out = {}
    for name, make in makers.items():
        path = DATA / name
        if not (path / "preprocessor_config.json").is_file():
            make().save_pretrained(path)
        out[name] = path
    return out


def inputs(kind: str) -> tuple[Any, float]:
    """The batch both sides get, and how many units (images, seconds of audio) it holds."""
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "images":
        from PIL import Image

        sides = rng.integers(*IMAGE_SIDES, size=(IMAGES, 2))
        batch = [Image.fromarray(rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)) for h, w in sides]
        return batch, float(IMAGES)
    seconds = rng.uniform(*CLIP_SECONDS, size=CLIPS)
    clips = [(rng.standard_normal(int(s * RATE)) * 0.1).astype(np.float32) for s in seconds]
    return clips, float(sum(len(c) for c in clips)) / RATE


def child(args: dict[str, Any]) -> dict[str, Any]:
    """One sample, both sides in this process."""
    import torch

    torch.set_num_threads(args["threads"])
    task, auto, kind = COMPONENTS[args["name"]]
    import transformers

    import factory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sides = {
            "factory": factory.build(task, args["path"]),
            "transformers": getattr(transformers, auto).from_pretrained(args["path"]),
        }
    batch, units = inputs(kind)
    extra: dict[str, Any] = {"return_tensors": "pt"}
    if kind == "audio":
        extra["sampling_rate"] = RATE
        if args["name"] == "wav2vec2":
            extra["padding"] = True
    key = {"ViT": "pixel_values", "CLIP": "pixel_values", "Whisper": "input_features", "wav2vec2": "input_values"}[
        args["name"]
    ]

    def run(side: str) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sides[side](batch, **extra)[key]

    outs = {side: run(side) for side in sides}
    diff = (outs["factory"].double() - outs["transformers"].double()).abs().max().item()
    for _ in range(args["warmup"]):
        for side in sides:
            run(side)
    times: dict[str, list[float]] = {side: [] for side in sides}
    for i in range(args["repeats"]):
        for side in list(sides) if i % 2 == 0 else list(sides)[::-1]:
            t = time.perf_counter()
            run(side)
            times[side].append(time.perf_counter() - t)
    return {
        "seconds": {side: statistics.median(v) for side, v in times.items()},
        "units": units,
        "max_abs_diff": diff,
        "threads": torch.get_num_threads(),
        "built": type(sides["factory"]).__module__ + "." + type(sides["factory"]).__qualname__,
    }


def bench(
    res: Any, n: int, quick: bool, threads: int, env: Callable[..., dict[str, str]], log: Callable[[str], None]
) -> None:
    """``n`` fresh processes per component, in rotating order (``res``: run.py's Results)."""
    paths = directories()
    reps = {"warmup": 1, "repeats": 2} if quick else {"warmup": 1, "repeats": 5}

    def sample(name: str) -> dict[str, Any]:
        payload = json.dumps({"name": name, "path": str(paths[name]), "threads": threads, **reps})
        proc = subprocess.run([sys.executable, __file__, payload], capture_output=True, text=True, env=env(), cwd=ROOT)
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith("BENCH-RESULT "):
                return dict(json.loads(line.removeprefix("BENCH-RESULT ")))
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": f"exit {proc.returncode}: " + (tail[-1] if tail else "no output")[:400]}

    log(f"preprocessing: {n} processes per component, {threads} threads")
    res.sample_all({f"preprocessing {name}": (sample, name) for name in COMPONENTS}, n, warm=False)


def report(rep: Any) -> None:
    """The table of throughputs (run.py's Report)."""
    res = rep.res
    rows = []
    for name, (_, _, kind) in COMPONENTS.items():
        key = f"preprocessing {name}"
        if key in res.errors:
            rows.append([name, f"error: {res.errors[key]}".replace("|", "/"), "", "", "", "", "", ""])
            continue
        samples = res.samples.get(key, [])
        if not samples:
            continue
        unit = "images/s" if kind == "images" else "audio s/s"
        rate = {
            side: statistics.median(s["units"] / s["seconds"][side] for s in samples)
            for side in ("factory", "transformers")
        }
        ratio = statistics.median(s["seconds"]["transformers"] / s["seconds"]["factory"] for s in samples)
        what = (
            f"{IMAGES} images, {IMAGE_SIDES[0]}–{IMAGE_SIDES[1]} px"
            if kind == "images"
            else f"{CLIPS} clips, {samples[0]['units']:.0f} s in all"
        )
        goal = ">= 1.0×"
        met = rep.target(f"{name} preprocessing >= 1.0x transformers", f"{ratio:.2f}×", goal, ratio >= 1.0)
        diff = max(s["max_abs_diff"] for s in samples)
        rows.append(
            [
                name,
                what,
                f"{rate['factory']:.1f} {unit}",
                f"{rate['transformers']:.1f} {unit}",
                f"{ratio:.2f}×",
                goal,
                met,
                f"{diff:.1e}",
            ]
        )
    rep.lines.append(
        "### Preprocessing throughput (same inputs and threads; median of processes, each a median of "
        "alternating calls; ratio = throughput factory / transformers)\n"
    )
    rep.table(
        ["component", "batch", "factory", "transformers", "factory/transformers", "target", "met", "max |Δ| output"],
        rows,
    )


if __name__ == "__main__":
    print("BENCH-RESULT " + json.dumps(child(json.loads(sys.argv[1]))), flush=True)
