"""Checkpoint weights: find the files, check their headers, load them into a meta-built model.

The loading path keeps one copy of the weights in memory:

* the model comes from :func:`factory.build.meta.empty_model`, entirely on the meta device, so
  nothing is allocated or randomly initialised; computed buffers are recreated by ``reset_buffers``;
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
import os
import re
import struct
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from factory.build import progress
from factory.build.hub import PICKLE_INDEX, PICKLE_WEIGHTS, SAFE_INDEX, SAFE_WEIGHTS, read_index
from factory.build.meta import apply_ties, check_no_meta, init_buffers, materialise, move_buffers, tie_map
from factory.build.placement import ST_DTYPES, resolve_device, resolve_dtype
from factory.errors import (
    CheckpointError,
    PickleRefusedError,
    WeightsMismatchError,
)
from factory.untrusted import check_file, loads_json

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
    # lexists, not is_file: a FIFO or a directory in a weights file's place is reported as such when read
    if os.path.lexists(directory / SAFE_WEIGHTS):
        return [directory / SAFE_WEIGHTS]
    if os.path.lexists(directory / SAFE_INDEX):
        return _shards_from_index(directory / SAFE_INDEX)

    pickles = [name for name in (PICKLE_INDEX, *PICKLE_SINGLE_NAMES) if os.path.lexists(directory / name)]
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
        if not os.path.lexists(shard):
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

    check_file(path, max_bytes=None, error=CheckpointError, what="a weights file")  # never open a FIFO
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
        header = loads_json(fh.read(size), path, error=CheckpointError)
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

    check_file(path, max_bytes=None, error=CheckpointError, what="a weights file")
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
        self.direct = 0  # tensors copied from the map straight to a device

    def tensor(self, entry: _Entry, dtype: torch.dtype | None, device: torch.device | None) -> torch.Tensor:
        """The tensor of ``entry`` in ``dtype`` (floating tensors only) on ``device``.

        CPU without a cast: a zero-copy view of the file's private map. Another device: the
        map's pages go straight to the device (no intermediate CPU copy) and are cast there.
        ``meta``: nothing is read. A CPU cast reads the bytes once and casts them.
        """
        target = dtype if dtype is not None and entry.dtype.is_floating_point else entry.dtype
        if device is not None and device.type == "meta":  # names, shapes and dtypes checked; nothing to read
            return torch.empty(entry.shape, dtype=target, device=device)
        on_cpu = device is None or device.type == "cpu"
        if entry.tensor is not None:
            return entry.tensor.to(device=device, dtype=target)
        if device is not None and device.type == "meta":
            return torch.empty(entry.shape, dtype=target, device=device)
        mapped = self._mmap and entry.start % entry.dtype.itemsize == 0 and entry.nbytes > 0
        if mapped and (not on_cpu or target == entry.dtype):
            view = self._map(entry.file)[entry.start : entry.end].view(entry.dtype).view(entry.shape)
            if on_cpu:
                self.zero_copy += 1
                return view
            self.direct += 1
            return view.to(device=device).to(dtype=target)
        data = self._read(entry)
        if target != entry.dtype or not on_cpu:
            data = data.to(device=device, dtype=target)
        return data

    def release(self, path: Path) -> None:
        """Drop the map of ``path`` (its pages stay only where views of it still live)."""
        self._maps.pop(path, None)

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


def read_entries(paths: Sequence[Path], *, allow_pickle: bool = False) -> dict[str, _Entry]:
    """Every tensor of the checkpoint ``paths``: safetensors headers (validated, no tensor read), or
    pickle files (only with ``allow_pickle``)."""
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
    return entries


def match_checkpoint(
    model: nn.Module, files: Sequence[str | Path], *, strict: bool = True, allow_pickle: bool = False
) -> CheckpointMatch:
    """Match the checkpoint's tensors (headers only) to ``model``'s: raises
    :class:`WeightsMismatchError` under ``strict``, else warns, when they do not fit."""
    paths = [Path(f) for f in files]
    if not paths:
        raise CheckpointError(f"no weight files given to load into {type(model).__name__}")
    plan = _plan(model, split_fused(model, read_entries(paths, allow_pickle=allow_pickle)))
    where = paths[0].parent if len({p.parent for p in paths}) == 1 else paths[0]
    if plan.missing or plan.unexpected or plan.mismatched or plan.wrong_dtype:
        message = _mismatch_message(model, plan)
        if strict:
            raise WeightsMismatchError(
                message,
                file=where,
                missing=plan.missing,
                unexpected=plan.unexpected,
                mismatched=plan.mismatched,
                wrong_dtype=plan.wrong_dtype,
                hint="check that config.json matches this architecture; pass strict=False to initialise the "
                "missing tensors and skip the others",
            )
        warnings.warn(
            message + "\nmissing and wrongly shaped tensors were initialised; unexpected ones skipped",
            WeightsMismatchWarning,
            stacklevel=3,
        )
    return plan


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
    wrong_dtype: tuple[tuple[str, torch.dtype, torch.dtype], ...] = ()  # (name, checkpoint, model dtype)

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

    plan = match_checkpoint(model, paths, strict=strict, allow_pickle=allow_pickle)
    bad_shape = {name for name, _, _ in (*plan.mismatched, *plan.wrong_dtype)}
    init_buffers(model, target_device, dtype)
    with ExitStack() as stack, torch.no_grad():
        reader = _Reader(stack, mmap=mmap)
        _untie_differing(plan, reader)
        tensors = {}
        ordered = sorted((e.file, e.start, k) for k, e in plan.mapped.items() if k not in bad_shape)
        for i, (file, _, key) in enumerate(progress.track(ordered, _size_of(plan), "loading")):
            tensors[key] = reader.tensor(plan.mapped[key], dtype, target_device)
            if i + 1 == len(ordered) or ordered[i + 1][0] != file:
                reader.release(file)  # a device load keeps no file pages mapped once a file is done
        model.load_state_dict(tensors, strict=False, assign=True)
        loaded_bytes = sum(e.nbytes for k, e in plan.mapped.items() if k not in bad_shape)
        floating = Counter(t.dtype for t in tensors.values() if t.dtype.is_floating_point)
        del tensors
    params = dict(model.named_parameters(remove_duplicate=False))
    to_init = [n for n in (*plan.missing, *bad_shape) if n in params and params[n].is_meta and n not in plan.ties]
    materialise(model, to_init, dtype, target_device)
    apply_ties(model, plan.ties)
    move_buffers(model, target_device)
    check_no_meta(model, target_device)
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
        wrong_dtype=plan.wrong_dtype,
    )


def _size_of(plan: CheckpointMatch) -> Callable[[tuple[Path, int, str]], int]:
    """The bytes of an ``(file, start, key)`` item of the load order, for the progress bar."""
    return lambda item: plan.mapped[item[2]].nbytes


def _dtype_kind(dtype: torch.dtype) -> str:
    """What a dtype holds: a tensor may be cast within its kind (float16 -> float32), not across."""
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating point" if dtype.is_floating_point else "integer"


def split_fused(model: nn.Module, entries: dict[str, _Entry]) -> dict[str, _Entry]:
    """Checkpoint tensors that hold several of the model's parameters, split into one entry each.

    A model declares ``split_checkpoint_tensor(key, shape)``: for a fused tensor (transformers'
    3-d MoE experts, say) the ``(name, first row, end row, shape)`` of each parameter it holds, rows
    counted over its last dimension; ``None`` for any other tensor. Each part is a contiguous byte
    range of the file, so it loads like any stored tensor (zero-copy where nothing is cast).
    """
    split = getattr(model, "split_checkpoint_tensor", None)
    if split is None:
        return entries
    out: dict[str, _Entry] = {}
    for key, entry in entries.items():
        for name, part in _parts(entry, split(key, entry.shape)):
            if name in out:
                raise CheckpointError(
                    f"tensor {name} is stored twice: on its own and inside a fused tensor",
                    file=entry.file,
                    hint="the checkpoint mixes the per-expert and the fused layout: save it again in one",
                )
            out[name] = part
    return out


def _parts(entry: _Entry, parts: Sequence[tuple[str, int, int, Sequence[int]]] | None) -> list[tuple[str, _Entry]]:
    if not parts:
        return [(entry.key, entry)]
    width = entry.shape[-1] if entry.shape else 1
    rows = torch.Size(entry.shape).numel() // max(width, 1)
    out = []
    for name, first, end, shape in parts:
        if not 0 <= first < end <= rows or torch.Size(shape).numel() != (end - first) * width:
            raise CheckpointError(
                f"tensor {entry.key} {list(entry.shape)} cannot hold {name} (rows {first}:{end}, {list(shape)})",
                file=entry.file,
                hint="the fused tensor does not fit the config (number or size of experts): check config.json",
            )
        if entry.tensor is not None:
            tensor = entry.tensor.reshape(-1, width)[first:end].reshape(tuple(shape))
            out.append((name, _Entry(name, entry.file, entry.dtype, tuple(shape), tensor=tensor)))
        else:
            row = width * entry.dtype.itemsize
            begin = entry.start + first * row
            out.append((name, _Entry(name, entry.file, entry.dtype, tuple(shape), begin, begin + (end - first) * row)))
    return out


@dataclass
class CheckpointMatch:
    """How a checkpoint's tensors map onto a model's (see :func:`match_checkpoint`)."""

    mapped: dict[str, _Entry]  # model key -> checkpoint entry
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    ignored: tuple[str, ...]
    ties: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    entries: dict[str, _Entry]
    wrong_dtype: tuple[tuple[str, torch.dtype, torch.dtype], ...] = ()  # (name, checkpoint, model dtype)
    both_held: tuple[str, ...] = ()  # declared tie destinations the checkpoint holds next to their source


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


def _plan(model: nn.Module, entries: dict[str, _Entry]) -> CheckpointMatch:
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
    declared = set(getattr(model, "tied_weights", None) or ())
    both_held = []
    for dest, source in ties.items():
        if dest in mapped:
            if dest in declared and source in mapped:
                both_held.append(dest)  # compared when loading: different values keep both (as transformers)
                continue
            entry = mapped.pop(dest)
            if source not in mapped:  # the checkpoint kept the other name of the pair
                mapped[source] = entry
    missing = tuple(
        k for k in shapes if k not in mapped and k not in ties and not any(p.search(k) for p in skip_missing)
    )
    mismatched = tuple((k, e.shape, shapes[k]) for k, e in mapped.items() if e.shape != shapes[k])
    wrong_dtype = tuple(
        (k, e.dtype, state[k].dtype)
        for k, e in mapped.items()
        if e.shape == shapes[k] and _dtype_kind(e.dtype) != _dtype_kind(state[k].dtype)
    )
    return CheckpointMatch(
        mapped,
        missing,
        tuple(unexpected),
        mismatched,
        tuple(ignored),
        ties,
        shapes,
        entries,
        wrong_dtype,
        tuple(both_held),
    )


def _untie_differing(plan: CheckpointMatch, reader: _Reader) -> None:
    """A declared tie whose two tensors the checkpoint holds with different values is not applied (both load):
    transformers 5 does the same, e.g. for T5 v1.1 / Flan-T5 checkpoints saved with ``tie_word_embeddings``
    forced on. Equal values keep the tie, and the destination's copy is not read."""
    zero_copy = reader.zero_copy  # the comparisons' views are not part of the model
    for dest in plan.both_held:
        a, b = plan.mapped[dest], plan.mapped[plan.ties[dest]]
        same = (
            a.shape == b.shape
            and a.dtype == b.dtype
            and torch.equal(reader.tensor(a, None, None), reader.tensor(b, None, None))
        )
        if same:
            del plan.mapped[dest]
        else:
            del plan.ties[dest]
    reader.zero_copy = zero_copy


def _mismatch_message(model: nn.Module, plan: CheckpointMatch) -> str:
    def listing(title: str, lines: list[str]) -> list[str]:
        if not lines:
            return []
        more = [f"    ... and {len(lines) - _MAX_LISTED} more"] if len(lines) > _MAX_LISTED else []
        return [f"  {title}:"] + [f"    - {line}" for line in lines[:_MAX_LISTED]] + more

    parts = [
        f"checkpoint weights do not match {type(model).__name__}: {len(plan.missing)} missing, "
        f"{len(plan.unexpected)} unexpected, {len(plan.mismatched)} with the wrong shape"
        + (f", {len(plan.wrong_dtype)} of the wrong kind of dtype" if plan.wrong_dtype else ""),
        *listing(
            "missing (in the model, not in the checkpoint)", [f"{k} {list(plan.shapes[k])}" for k in plan.missing]
        ),
        *listing(
            "unexpected (in the checkpoint, not in the model)",
            [f"{k} {list(plan.entries[k].shape)} ({plan.entries[k].file.name})" for k in plan.unexpected],
        ),
        *listing("wrong shape", [f"{k}: checkpoint {list(c)} vs model {list(m)}" for k, c, m in plan.mismatched]),
        *listing(
            "wrong dtype (a cast would change what the values mean)",
            [
                f"{k}: checkpoint {str(c).removeprefix('torch.')} ({_dtype_kind(c)}) vs model "
                f"{str(m).removeprefix('torch.')} ({_dtype_kind(m)}), in {plan.mapped[k].file.name}"
                for k, c, m in plan.wrong_dtype
            ],
        ),
    ]
    return "\n".join(parts)
