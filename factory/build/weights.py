"""Checkpoint weights: find the files, check their headers, load them into a meta-built model.

The loading path keeps one copy of the weights in memory:

* the model comes from :func:`factory.build.meta.empty_model`, with its *parameters* on the
  meta device, so no random initialisation runs on real memory;
* ``load_weights`` validates every safetensors header, then, where neither the
  dtype nor the device changes, makes each parameter a zero-copy view of a private
  (copy-on-write) memory map of its file; otherwise it reads each tensor once and
  casts/moves it straight to its final dtype and device;
* the tensors are assigned (``load_state_dict(assign=True)``), never copied into
  pre-allocated parameters.

Pickle files (``pytorch_model.bin``) are refused unless the caller opts in, and then
read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import re
import struct
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from factory.build.hub import PICKLE_INDEX, PICKLE_WEIGHTS, SAFE_INDEX, SAFE_WEIGHTS, read_index
from factory.build.meta import ModelContractError, apply_ties, materialise, move_buffers, tie_map
from factory.build.placement import ST_DTYPES, resolve_device, resolve_dtype
from factory.errors import (
    CheckpointError,
    PickleRefusedError,
    WeightsMismatchError,
)

#: Other pickle names recognised (and refused) in a checkpoint directory.
PICKLE_SINGLE_NAMES = (PICKLE_WEIGHTS, "model.pt", "model.pth")

_MAX_LISTED = 20  # entries per category in a mismatch message


class WeightsMismatchWarning(UserWarning):
    """Non-strict loading found missing, unexpected or wrongly shaped tensors."""


# --- finding the files --------------------------------------------------------
def find_weight_files(directory: str | Path, *, allow_pickle: bool = False) -> list[Path]:
    """The weight files of a checkpoint directory, in load order.

    ``model.safetensors``, else every shard named by ``model.safetensors.index.json``;
    pickle weights (``pytorch_model.bin`` or its index) only when ``allow_pickle``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            "checkpoint directory does not exist or is not a directory",
            file=directory,
        )
    if (directory / SAFE_WEIGHTS).is_file():
        return [directory / SAFE_WEIGHTS]
    if (directory / SAFE_INDEX).is_file():
        return _shards_from_index(directory / SAFE_INDEX)

    pickles = [name for name in (PICKLE_INDEX, *PICKLE_SINGLE_NAMES) if (directory / name).is_file()]
    if pickles:
        if not allow_pickle:
            raise PickleRefusedError(
                f"this checkpoint has only pickle weights ({', '.join(pickles)}); pickle files can run "
                "arbitrary code and are refused by default",
                file=directory / pickles[0],
                hint="convert the checkpoint to safetensors, or pass allow_pickle=True to load it with "
                "torch.load(weights_only=True)",
            )
        if pickles[0] == PICKLE_INDEX:
            return _shards_from_index(directory / PICKLE_INDEX)
        return [directory / pickles[0]]

    present = sorted(p.name for p in directory.iterdir())
    shown = ", ".join(present[:15]) + (" ..." if len(present) > 15 else "") if present else "nothing"
    raise CheckpointError(
        f"no weights in this checkpoint directory: looked for {SAFE_WEIGHTS}, {SAFE_INDEX}"
        f"{', ' + ', '.join((PICKLE_INDEX, *PICKLE_SINGLE_NAMES)) if allow_pickle else ''}; found {shown}",
        file=directory,
        hint="point at a directory written by save_pretrained()/factory.save(), or build with weights=False",
    )


def _shards_from_index(index: Path) -> list[Path]:
    shards = []
    for name in read_index(index):
        shard = index.parent / name
        if not shard.is_file():
            raise CheckpointError(
                f"the index names shard {name}, which is missing from {index.parent}",
                file=index,
                shard=name,
                hint="the download or copy is incomplete: fetch the missing shard (or the whole checkpoint) again",
            )
        shards.append(shard)
    return shards


# --- reading tensors ----------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Entry:
    """One tensor of a checkpoint: where its bytes are, or (pickle) the tensor itself."""

    key: str
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int = 0  # absolute byte offsets in the file (safetensors)
    end: int = 0
    tensor: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return self.end - self.start if self.tensor is None else self.tensor.numel() * self.tensor.element_size()


def _read_safetensors_header(path: Path) -> dict[str, _Entry]:
    from safetensors import safe_open

    try:  # the library validates the header: sizes, offsets, coverage, dtypes
        with safe_open(str(path), framework="pt"):
            pass
    except FileNotFoundError:
        raise CheckpointError("weights file does not exist", file=path) from None
    except Exception as exc:  # SafetensorError, OSError
        raise CheckpointError(
            f"not a valid safetensors file: {exc}",
            file=path,
            hint="the file is truncated or corrupt (interrupted download or copy?): delete it and fetch it again",
        ) from None
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    base = 8 + size
    entries: dict[str, _Entry] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        dtype = ST_DTYPES.get(info["dtype"])
        if dtype is None:
            raise CheckpointError(
                f"tensor {key} has dtype {info['dtype']}, which this torch ({torch.__version__}) cannot hold",
                file=path,
            )
        begin, end = info["data_offsets"]
        entries[key] = _Entry(key, path, dtype, tuple(info["shape"]), base + begin, base + end)
    return entries


def _read_pickle(path: Path) -> dict[str, _Entry]:
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except FileNotFoundError:
        raise CheckpointError("weights file does not exist", file=path) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"could not be loaded with torch.load(weights_only=True): {str(exc).splitlines()[0]}",
            file=path,
            hint="the file is corrupt, or it contains objects other than tensors (code) and is refused",
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            "does not hold a flat state dict (tensor name -> tensor)",
            file=path,
        )
    return {k: _Entry(k, path, v.dtype, tuple(v.shape), tensor=v) for k, v in state.items()}


def _is_pickle(path: Path) -> bool:
    return path.suffix in (".bin", ".pt", ".pth")


class _Reader:
    """Turns entries into tensors: zero-copy views of private memory maps, or one read + cast."""

    def __init__(self, stack: ExitStack, *, mmap: bool) -> None:
        self._stack = stack
        self._mmap = mmap
        self._maps: dict[Path, torch.Tensor] = {}
        self._handles: dict[Path, io.BufferedReader] = {}
        self.zero_copy = 0

    def tensor(self, entry: _Entry, dtype: torch.dtype | None, device: torch.device | None) -> torch.Tensor:
        target = dtype if dtype is not None and entry.dtype.is_floating_point else entry.dtype
        on_cpu = device is None or device.type == "cpu"
        if entry.tensor is not None:
            return entry.tensor.to(device=device, dtype=target)
        if self._mmap and on_cpu and target == entry.dtype and entry.start % entry.dtype.itemsize == 0:
            self.zero_copy += 1
            flat = self._map(entry.file)[entry.start : entry.end]
            return flat.view(entry.dtype).view(entry.shape)
        data = self._read(entry)
        if target != entry.dtype or not on_cpu:
            data = data.to(device=device, dtype=target)
        return data

    def _map(self, path: Path) -> torch.Tensor:
        if path not in self._maps:
            nbytes = path.stat().st_size
            storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=nbytes)
            self._maps[path] = torch.empty(0, dtype=torch.uint8).set_(storage)  # type: ignore[arg-type]
        return self._maps[path]

    def _read(self, entry: _Entry) -> torch.Tensor:
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        if entry.file not in self._handles:
            self._handles[entry.file] = self._stack.enter_context(open(entry.file, "rb"))  # noqa: SIM115
        fh = self._handles[entry.file]
        buf = bytearray(entry.nbytes)
        fh.seek(entry.start)
        if fh.readinto(buf) != entry.nbytes:
            raise CheckpointError(f"file ended before the data of tensor {entry.key}", file=entry.file)
        return torch.frombuffer(buf, dtype=entry.dtype).view(entry.shape)


# --- the load -----------------------------------------------------------------
@dataclass(frozen=True)
class LoadReport:
    """What ``load_weights`` did."""

    files: tuple[Path, ...]
    missing: tuple[str, ...]  # model tensors absent from the checkpoint (initialised when strict=False)
    unexpected: tuple[str, ...]  # checkpoint tensors the model has no place for (skipped)
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (name, checkpoint, model shape)
    ignored: tuple[str, ...]  # checkpoint tensors skipped by design (head of a trunk load, non-persistent buffers)
    tied: tuple[tuple[str, str], ...]  # (dest, source): dest is the same Parameter as source
    dtype: torch.dtype | None
    device: torch.device
    bytes: int
    zero_copy: int  # tensors that are views of the memory-mapped file
    seconds: float

    def __str__(self) -> str:
        return (
            f"loaded {self.bytes / 2**20:.1f} MiB from {len(self.files)} file(s) in {self.seconds:.3f}s "
            f"({self.dtype}, {self.device}; {self.zero_copy} zero-copy); missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, mismatched {len(self.mismatched)}, tied {len(self.tied)}"
        )


def load_weights(
    model: nn.Module,
    files: Sequence[str | Path],
    *,
    strict: bool = True,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    allow_pickle: bool = False,
    mmap: bool = True,
) -> LoadReport:
    """Load checkpoint ``files`` into ``model`` (built by ``empty_model``), tie, cast, move.

    ``dtype`` casts floating tensors (None keeps the checkpoint's); ``device`` defaults to CPU.
    With ``mmap`` (default) tensors that need no cast on CPU are copy-on-write views of the
    file: nothing is copied until written.
    """
    started = time.perf_counter()
    dtype = resolve_dtype(dtype)
    target_device = resolve_device(device)
    paths = [Path(f) for f in files]
    if not paths:
        raise CheckpointError(f"no weight files given to load into {type(model).__name__}")

    entries: dict[str, _Entry] = {}
    for path in paths:
        if _is_pickle(path):
            if not allow_pickle:
                raise PickleRefusedError(
                    "pickle weights file refused by default (pickle can run arbitrary code)",
                    file=path,
                    hint="use safetensors weights, or pass allow_pickle=True",
                )
            found = _read_pickle(path)
        else:
            found = _read_safetensors_header(path)
        for key, entry in found.items():
            if key in entries:
                raise CheckpointError(
                    f"tensor {key} appears in both {entries[key].file} and {path}",
                    file=path,
                    hint="the shards of this checkpoint are inconsistent; download it again",
                )
            entries[key] = entry

    plan = _plan(model, entries)
    where = paths[0].parent if len({p.parent for p in paths}) == 1 else paths[0]
    if plan.missing or plan.unexpected or plan.mismatched:
        message = _mismatch_message(model, plan)
        if strict:
            raise WeightsMismatchError(
                message,
                file=where,
                missing=plan.missing,
                unexpected=plan.unexpected,
                mismatched=plan.mismatched,
                hint="check that config.json matches this architecture; pass strict=False to initialise the "
                "missing tensors and skip the others",
            )
        warnings.warn(
            message + "\nmissing and wrongly shaped tensors were initialised; unexpected ones skipped",
            WeightsMismatchWarning,
            stacklevel=2,
        )

    bad_shape = {name for name, _, _ in plan.mismatched}
    with ExitStack() as stack, torch.no_grad():
        reader = _Reader(stack, mmap=mmap)
        tensors = {k: reader.tensor(e, dtype, target_device) for k, e in plan.mapped.items() if k not in bad_shape}
        model.load_state_dict(tensors, strict=False, assign=True)
        loaded_bytes = sum(e.nbytes for k, e in plan.mapped.items() if k not in bad_shape)
        floating = Counter(t.dtype for t in tensors.values() if t.dtype.is_floating_point)
        del tensors
    params = dict(model.named_parameters(remove_duplicate=False))
    to_init = [n for n in (*plan.missing, *bad_shape) if n in params and params[n].is_meta and n not in plan.ties]
    materialise(model, to_init, dtype, target_device)
    apply_ties(model, plan.ties)
    move_buffers(model, target_device)
    left = [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if left:
        raise ModelContractError(
            f"{type(model).__name__}: parameters left on the meta device after loading: {', '.join(left[:10])}",
            hint="a tied or aliased parameter name does not match the model's parameters",
        )
    return LoadReport(
        files=tuple(paths),
        missing=plan.missing,
        unexpected=plan.unexpected,
        mismatched=plan.mismatched,
        ignored=plan.ignored,
        tied=tuple(plan.ties.items()),
        dtype=dtype or (floating.most_common(1)[0][0] if floating else None),
        device=target_device,
        bytes=loaded_bytes,
        zero_copy=reader.zero_copy,
        seconds=time.perf_counter() - started,
    )


@dataclass
class _Plan:
    mapped: dict[str, _Entry]  # model key -> checkpoint entry
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    ignored: tuple[str, ...]
    ties: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    entries: dict[str, _Entry]


_LEGACY_NAMES = (("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias"))
#: torch's legacy ``weight_norm`` names (wav2vec2 and HuBERT Hub checkpoints) -> its parametrizations' names.
_LEGACY_SUFFIXES = (
    (".weight_g", ".parametrizations.weight.original0"),
    (".weight_v", ".parametrizations.weight.original1"),
)


def _renames(model: nn.Module) -> list[tuple[re.Pattern[str], str]]:
    """The model's ``_checkpoint_conversion_mapping`` ({regex: replacement}, applied in order)."""
    mapping: Mapping[str, str] = getattr(model, "_checkpoint_conversion_mapping", None) or {}
    return [(re.compile(pattern), replacement) for pattern, replacement in mapping.items()]


def _legacy(key: str, renames: Sequence[tuple[re.Pattern[str], str]] = ()) -> str:
    """A checkpoint key under the name the model uses: legacy norm names, then the model's own renames."""
    for old, new in _LEGACY_NAMES:
        if old in key:
            key = key.replace(old, new)
    for old, new in _LEGACY_SUFFIXES:
        if key.endswith(old):
            key = key[: -len(old)] + new
    for pattern, replacement in renames:
        key = pattern.sub(replacement, key)
    return key


def _patterns(model: nn.Module, attr: str) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in (getattr(model, attr, None) or ())]


def _plan(model: nn.Module, entries: dict[str, _Entry]) -> _Plan:
    """Match checkpoint keys to model keys: base_model_prefix both ways, ties, ignores, shapes."""
    state = model.state_dict(keep_vars=True)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    non_persistent = {n for n, _ in model.named_buffers(remove_duplicate=False)} - set(state)
    prefix = getattr(model, "base_model_prefix", "") or ""
    dot = prefix + "."
    renames = _renames(model)
    model_has = bool(prefix) and any(k.startswith(dot) for k in shapes)
    ckpt_has = bool(prefix) and any(_legacy(k, renames).startswith(dot) for k in entries)
    mode = "add" if model_has and not ckpt_has else "strip" if ckpt_has and not model_has else None
    skip_unexpected = _patterns(model, "_keys_to_ignore_on_load_unexpected")
    skip_missing = _patterns(model, "_keys_to_ignore_on_load_missing")

    mapped: dict[str, _Entry] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    for key, entry in entries.items():
        name = key if key in shapes else _legacy(key, renames)
        if mode == "add" and name not in shapes and dot + name in shapes:
            name = dot + name
        elif mode == "strip":
            if not name.startswith(dot):
                ignored.append(key)  # a head's tensor; the trunk alone was asked for
                continue
            name = name[len(dot) :]
        if name in non_persistent or any(p.search(key) for p in skip_unexpected):
            ignored.append(key)
        elif name in shapes and name not in mapped:
            mapped[name] = entry
        else:
            unexpected.append(key)

    ties = tie_map(model)
    for dest, source in ties.items():
        if dest in mapped:
            entry = mapped.pop(dest)
            if source not in mapped:  # the checkpoint kept the other name of the pair
                mapped[source] = entry
    missing = tuple(
        k for k in shapes if k not in mapped and k not in ties and not any(p.search(k) for p in skip_missing)
    )
    mismatched = tuple((k, e.shape, shapes[k]) for k, e in mapped.items() if e.shape != shapes[k])
    return _Plan(mapped, missing, tuple(unexpected), mismatched, tuple(ignored), ties, shapes, entries)


def _mismatch_message(model: nn.Module, plan: _Plan) -> str:
    def listing(title: str, lines: list[str]) -> list[str]:
        if not lines:
            return []
        more = [f"    ... and {len(lines) - _MAX_LISTED} more"] if len(lines) > _MAX_LISTED else []
        return [f"  {title}:"] + [f"    - {line}" for line in lines[:_MAX_LISTED]] + more

    parts = [
        f"checkpoint weights do not match {type(model).__name__}: {len(plan.missing)} missing, "
        f"{len(plan.unexpected)} unexpected, {len(plan.mismatched)} with the wrong shape",
        *listing(
            "missing (in the model, not in the checkpoint)", [f"{k} {list(plan.shapes[k])}" for k in plan.missing]
        ),
        *listing(
            "unexpected (in the checkpoint, not in the model)",
            [f"{k} {list(plan.entries[k].shape)} ({plan.entries[k].file.name})" for k in plan.unexpected],
        ),
        *listing("wrong shape", [f"{k}: checkpoint {list(c)} vs model {list(m)}" for k, c, m in plan.mismatched]),
    ]
    return "\n".join(parts)
