"""One benchmark sample, run in a fresh process: ``python bench/probe.py KIND 'JSON-ARGS'``.

Prints one line ``BENCH-RESULT {json}`` on stdout. Times are ``time.perf_counter``
seconds taken inside this process, starting before any third-party import (the
interpreter's own start-up is the same for every side and is left out). Memory:
``rss_base`` is the resident set right after the imports (read from
``/proc/self/statm``), ``rss_peak`` is ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end.
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def emit(**result) -> None:
    print("BENCH-RESULT " + json.dumps(result), flush=True)


# --- start-up and registry -------------------------------------------------------


def probe_import_factory(args: dict) -> None:
    import factory  # noqa: F401

    t = time.perf_counter() - T0
    emit(seconds=t, torch_imported="torch" in sys.modules, modules=len(sys.modules))


def probe_table(args: dict) -> None:
    """``factory.load_registry()`` in a fresh process; the cache mode comes from the environment."""
    import factory

    t_import = time.perf_counter()
    import factory.registry.cache
    import factory.registry.loader

    t_modules = time.perf_counter()
    table = factory.load_registry()
    t_end = time.perf_counter()
    t = t_end - t_import
    cache_dir = os.environ.get("FACTORY_CACHE_DIR")
    cache_files = sum(len(files) for _, _, files in os.walk(cache_dir)) if cache_dir else 0
    emit(
        seconds=t,
        import_seconds=t_import - T0,
        modules_seconds=t_modules - t_import,
        table_seconds=t_end - t_modules,
        architectures=len(table.architectures),
        registrations=len(table.registrations),
        checkpoints=len(table.checkpoints),
        cache_files_after=cache_files,
        torch_imported="torch" in sys.modules,
    )


def probe_transformers_auto(args: dict) -> None:
    """transformers' equivalent of the table: import the auto modules and touch their name mappings."""
    from transformers.models.auto import configuration_auto, modeling_auto

    mods = [modeling_auto, configuration_auto]
    for extra in ("tokenization_auto", "image_processing_auto", "feature_extraction_auto", "processing_auto"):
        try:
            mods.append(__import__(f"transformers.models.auto.{extra}", fromlist=["x"]))
        except ImportError:
            pass
    entries = sum(
        len(v) for m in mods for k, v in vars(m).items() if k.endswith("_MAPPING_NAMES") and isinstance(v, dict)
    )
    from transformers import AutoModel

    lazy = len(AutoModel._model_mapping)
    emit(
        seconds=time.perf_counter() - T0,
        mapping_entries=entries,
        automodel_entries=lazy,
        architectures=len(configuration_auto.CONFIG_MAPPING_NAMES),
    )


# --- cold build --------------------------------------------------------------------


def _touch(model) -> int:
    """Read one element per 4 KiB page of every parameter and buffer, so lazily mapped weights count."""
    import torch

    seen, total = set(), 0
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.device.type != "cpu" or t.numel() == 0:
                continue
            key = (t.data_ptr(), t.numel())
            if key in seen:
                continue
            seen.add(key)
            flat = t.detach().reshape(-1)
            step = max(1, 4096 // flat.element_size())
            flat[::step].float().sum().item()
            total += t.numel() * t.element_size()
    return total


def _finish_build(model, t_imports: float, rss_base: int, t_built: float) -> None:
    weight_bytes = _touch(model)
    t_end = time.perf_counter()
    emit(
        import_seconds=t_imports - T0,
        build_seconds=t_built - t_imports,
        touch_seconds=t_end - t_built,
        total_seconds=t_end - T0,
        rss_base=rss_base,
        rss_peak=rss_peak(),
        weight_bytes=weight_bytes,
        model_class=type(model).__name__,
        dtype=str(next(model.parameters()).dtype),
    )


def probe_build_factory(args: dict) -> None:
    import torch

    import factory

    t_imports, base = time.perf_counter(), rss_now()
    model = factory.build(args["task"], args["name"], dtype=torch.float32)
    _finish_build(model, t_imports, base, time.perf_counter())


def probe_build_transformers(args: dict) -> None:
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    auto = getattr(transformers, args["auto"])
    t_imports, base = time.perf_counter(), rss_now()
    model = auto.from_pretrained(args["path"], dtype=torch.float32)
    model.eval()
    _finish_build(model, t_imports, base, time.perf_counter())


class _SkipInit:
    """``torch.nn.init`` functions as no-ops: meta tensors need no initialisation (``normal_`` on a
    meta tensor would even import ``torch._dynamo``, seconds in a cold process)."""

    def __enter__(self):
        import torch.nn.init as init

        self.saved = {
            n: getattr(init, n)
            for n in dir(init)
            if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))
        }
        for name in self.saved:
            setattr(init, name, lambda tensor, *a, **k: tensor)

    def __exit__(self, *exc):
        import torch.nn.init as init

        for name, fn in self.saved.items():
            setattr(init, name, fn)


def probe_build_floor(args: dict) -> None:
    """The physical cost: ``safetensors.torch.load_file`` + meta-device construction of the native class
    (initialisers skipped) + ``load_state_dict(assign=True)``."""
    import importlib
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    module_name, _, cls_name = args["model"].partition(":")
    module = importlib.import_module(module_name)
    model_cls, config_cls = getattr(module, cls_name), getattr(module, args["config"])
    t_imports, base = time.perf_counter(), rss_now()
    path = Path(args["path"])
    config = config_cls.from_dict(json.loads((path / "config.json").read_text()))
    with torch.device("meta"), _SkipInit():
        model = model_cls(config)
    files = sorted(path.glob("*.safetensors"))
    state: dict = {}
    for file in files:
        state.update(load_file(file))
    model.load_state_dict(state, strict=False, assign=True)
    model.eval()
    _finish_build(model, t_imports, base, time.perf_counter())


# --- forward and generation ------------------------------------------------------------


def _median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def _token_inputs(native, args: dict, gen) -> tuple[dict, object]:
    """``input_ids`` + ``attention_mask`` (the last ``pad_rows`` rows half padded); the mask of valid outputs."""
    import torch

    batch, seq = args["batch"], args["seq"]
    ids = torch.randint(3, native.config.vocab_size, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if args.get("pad_rows"):
        mask[-args["pad_rows"] :, seq // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}, mask.bool()[..., None]


def _encoder_inputs(native, args: dict, gen) -> tuple[dict, object]:
    import torch

    inputs, valid = _token_inputs(native, args, gen)
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    return inputs, valid


def _decoder_ids(native, args: dict, gen):
    """``seq // 2`` decoder tokens, the decoder start token first."""
    import torch

    config = native.config
    ids = torch.randint(3, config.vocab_size, (args["batch"], max(args["seq"] // 2, 1)), generator=gen)
    ids[:, 0] = config.decoder_start_token_id
    return ids


def _seq2seq_inputs(native, args: dict, gen) -> tuple[dict, object]:
    """Encoder ``input_ids`` + ``attention_mask`` (as ``decoder``) and ``decoder_input_ids``; all logits compared."""
    inputs, _ = _token_inputs(native, args, gen)
    inputs["decoder_input_ids"] = _decoder_ids(native, args, gen)
    return inputs, None


def _speech_inputs(native, args: dict, gen) -> tuple[dict, object]:
    """Log-mel ``input_features`` of one full window (``2 * max_source_positions`` frames) + decoder ids."""
    import torch

    config = native.config
    frames = 2 * config.max_source_positions
    features = torch.randn(args["batch"], config.num_mel_bins, frames, generator=gen)
    return {"input_features": features, "decoder_input_ids": _decoder_ids(native, args, gen)}, None


def _pixel_values(config, batch: int, gen):
    import torch

    vision = getattr(config, "vision_config", config)
    size = vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]
    return torch.randn(batch, vision.num_channels, size, size, generator=gen)


def _vision_inputs(native, args: dict, gen) -> tuple[dict, object]:
    """``pixel_values`` at the configured image size (``batch`` images)."""
    return {"pixel_values": _pixel_values(native.config, args["batch"], gen)}, None


def _clip_inputs(native, args: dict, gen) -> tuple[dict, object]:
    """``batch`` images and ``batch`` texts of ``seq`` tokens ending in the end-of-text token, the last half padded."""
    import torch

    text = native.config.text_config
    batch, seq = args["batch"], min(args["seq"], text.max_position_embeddings)
    ids = torch.randint(3, text.vocab_size - 3, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.long)
    eos = text.eos_token_id if text.eos_token_id < text.vocab_size else text.vocab_size - 1  # SigLIP's default is not
    ids[:, -1] = eos
    if batch > 1:
        ids[-1, seq // 2 :], mask[-1, seq // 2 :] = text.pad_token_id, 0
        ids[-1, seq // 2 - 1] = eos
    inputs = {"input_ids": ids, "attention_mask": mask, "pixel_values": _pixel_values(native.config, batch, gen)}
    return inputs, None


def _audio_inputs(native, args: dict, gen) -> tuple[dict, object]:
    """``batch`` clips of ``seq`` samples (16 kHz), the last one half padded."""
    import torch

    batch, samples = args["batch"], args["seq"]
    mask = torch.ones(batch, samples, dtype=torch.long)
    if batch > 1:
        mask[-1, samples // 2 :] = 0
    return {"input_values": torch.randn(batch, samples, generator=gen) * mask, "attention_mask": mask}, None


#: forward input kinds: kind -> (make inputs and the mask of outputs to compare, the output to compare).
#: A family whose forward takes other inputs (pixel values, audio, decoder ids) adds its kind here.
INPUTS = {
    "encoder": (_encoder_inputs, lambda o: o.last_hidden_state),
    "decoder": (_token_inputs, lambda o: o.logits),
    "text": (_token_inputs, lambda o: o.last_hidden_state),  # encoders without token types
    "seq2seq": (_seq2seq_inputs, lambda o: o.logits),
    "speech": (_speech_inputs, lambda o: o.logits),
    "vision": (_vision_inputs, lambda o: o.logits),
    "clip": (_clip_inputs, lambda o: o.logits_per_image),
    "audio": (_audio_inputs, lambda o: o.logits),
}


def _prompt(native, args: dict, gen, kind: str) -> tuple[dict, int]:
    """``generate``'s inputs for batch 1, and how many leading tokens of its output are not new: the prompt
    (decoders), the decoder start token (text encoder-decoders), none (Whisper returns only new tokens)."""
    import torch

    if kind == "speech":
        config = native.config
        features = torch.randn(1, config.num_mel_bins, 2 * config.max_source_positions, generator=gen)
        return {"input_features": features}, 0
    prompt = torch.randint(3, native.config.vocab_size, (1, args["prompt"]), generator=gen)
    return {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}, 1 if kind == "seq2seq" else prompt.shape[1]


def probe_forward(args: dict) -> None:
    """Native vs transformers on the same checkpoint, inputs, dtype and thread count, in one process."""
    import torch
    import transformers

    import factory

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args["threads"])
    native = factory.build(args["task"], args["path"], dtype=torch.float32).eval()
    reference = getattr(transformers, args["auto"]).from_pretrained(args["path"], dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(0)
    make_inputs, out_of = INPUTS[args["kind"]]
    inputs, valid = make_inputs(native, args, gen)
    batch, seq = args["batch"], args["seq"]

    times: dict[str, list[float]] = {"factory": [], "transformers": []}
    models = {"factory": native, "transformers": reference}
    with torch.inference_mode():
        outs = {side: out_of(m(**inputs)) for side, m in models.items()}
        delta = outs["factory"] - outs["transformers"]
        diff = (delta if valid is None else delta.masked_fill(~valid, 0)).abs().max().item()
        for _ in range(args["warmup"]):
            for m in models.values():
                m(**inputs)
        for i in range(args["repeats"]):
            order = list(models) if i % 2 == 0 else list(models)[::-1]
            for side in order:
                t = time.perf_counter()
                models[side](**inputs)
                times[side].append(time.perf_counter() - t)
    result = {
        "forward": {side: _median(v) for side, v in times.items()},
        "max_abs_diff": diff,
        "input": [batch, seq],
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in native.parameters()),
    }

    if args.get("generate"):
        prompt, offset = _prompt(native, args, gen, args["kind"])
        new = args["generate"]
        eos = native.config.eos_token_id

        def run(side):
            if side == "factory":
                return native.generate(**prompt, max_new_tokens=new, do_sample=False)
            return reference.generate(**prompt, max_new_tokens=new, do_sample=False, eos_token_id=eos, pad_token_id=eos)

        gtimes: dict[str, list[float]] = {"factory": [], "transformers": []}
        seqs = {side: run(side) for side in models}  # warm-up
        for i in range(args["gen_repeats"]):
            for side in list(models) if i % 2 == 0 else list(models)[::-1]:
                t = time.perf_counter()
                seqs[side] = run(side)
                gtimes[side].append(time.perf_counter() - t)
        tokens = {side: int(s.shape[1] - offset) for side, s in seqs.items()}
        result["generate"] = {
            "tokens": tokens,
            "same_tokens": bool(torch.equal(seqs["factory"], seqs["transformers"])),
            "tokens_per_s": {side: tokens[side] / _median(v) for side, v in gtimes.items()},
        }
    emit(**result)


PROBES = {name.removeprefix("probe_"): fn for name, fn in globals().items() if name.startswith("probe_")}

if __name__ == "__main__":
    PROBES[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
