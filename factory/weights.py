"""Checkpoint weights: find the files, construct on the meta device, load, tie, cast.

The loading path keeps one copy of the weights in memory:

* ``empty_model`` constructs a model with its *parameters* on the meta device
  (buffers stay real), so no random initialisation runs on real memory;
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

import json
import re
import struct
import threading
import time
import warnings
import zipfile
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .errors import (
    CheckpointError,
    ConfigError,
    FactoryError,
    PickleRefusedError,
    WeightsMismatchError,
)
from .hub import PICKLE_INDEX, PICKLE_WEIGHTS, SAFE_INDEX, SAFE_WEIGHTS, read_index

#: Other pickle names recognised (and refused) in a checkpoint directory.
PICKLE_SINGLE_NAMES = (PICKLE_WEIGHTS, "model.pt", "model.pth")

_MAX_LISTED = 20  # entries per category in a mismatch message


class ModelContractError(FactoryError):
    """A model class breaks the native model contract (e.g. a tied name that does not exist)."""


class WeightsMismatchWarning(UserWarning):
    """Non-strict loading found missing, unexpected or wrongly shaped tensors."""


# --- dtypes -------------------------------------------------------------------
_DTYPE_NAMES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}


def resolve_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.bfloat16``, ``"bfloat16"``, ``"torch.bfloat16"``, ``"bf16"`` -> torch dtype; None/"auto" -> None."""
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        name = value.strip().lower().removeprefix("torch.")
        if name == "auto":
            return None
        if name in _DTYPE_NAMES:
            return _DTYPE_NAMES[name]
    raise ConfigError(
        f"dtype {value!r} is not a floating-point torch dtype",
        hint="use one of float32, float16, bfloat16, float64 (or a torch.dtype)",
    )


def _safetensors_dtypes() -> dict[str, torch.dtype]:
    names = {
        "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
        "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
        "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
        "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
        "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu",
    }
    return {code: getattr(torch, name) for code, name in names.items() if hasattr(torch, name)}


_ST_DTYPES = _safetensors_dtypes()


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


# --- construction on the meta device ------------------------------------------
_META_LOCK = threading.RLock()


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter registered by *this thread* goes to the meta device; buffers stay real."""
    original = nn.Module.register_parameter
    owner = threading.get_ident()

    def register_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta" and threading.get_ident() == owner:
            meta = type(param)(param.detach().to("meta"), requires_grad=param.requires_grad)
            meta.__dict__.update(param.__dict__)
            param = meta
        original(module, name, param)

    with _META_LOCK, _skip_init():
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        try:
            yield
        finally:
            nn.Module.register_parameter = original  # type: ignore[method-assign]


_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
    "uniform", "normal", "constant", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
)


@contextmanager
def _skip_init() -> Iterator[None]:
    """``torch.nn.init`` functions do nothing (as transformers' ``no_init_weights``).

    Initialising meta parameters computes nothing, but still dispatches through torch's
    meta kernels, which import torch._dynamo on first use: about a second and 80 MB of RSS.
    Only called under ``_META_LOCK``.
    """
    def skip(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS if hasattr(nn.init, name)}
    for name in saved:
        setattr(nn.init, name, skip)
    try:
        yield
    finally:
        for name, func in saved.items():
            setattr(nn.init, name, func)


@contextmanager
def _default_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None or not dtype.is_floating_point:
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def empty_model(model_cls: type[nn.Module], config: Any, *, dtype: torch.dtype | str | None = None) -> nn.Module:
    """``model_cls(config)`` with parameters on the meta device and real buffers: no weight init runs.

    With ``dtype``, floating tensors created without an explicit dtype (parameters and
    buffers) use it, as transformers does.
    """
    with _default_dtype(resolve_dtype(dtype)), _parameters_on_meta():
        return model_cls(config)


def fresh_model(
    model_cls: type[nn.Module],
    config: Any,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """A freshly initialised model (``_init_weights`` or ``reset_parameters``), tied, on ``device``."""
    dtype = resolve_dtype(dtype)
    model = empty_model(model_cls, config, dtype=dtype)
    ties = _tie_map(model)
    names = [n for n, p in model.named_parameters() if p.is_meta and n not in ties]
    _materialise(model, names, dtype, resolve_device(device))
    _apply_ties(model, ties)
    _move_buffers(model, resolve_device(device))
    return model


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
        dtype = _ST_DTYPES.get(info["dtype"])
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
            "does not hold a flat state dict (tensor name -> tensor)", file=path,
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
        self._handles: dict[Path, BinaryIO] = {}
        self.zero_copy = 0

    def tensor(self, entry: _Entry, dtype: torch.dtype | None, device: torch.device | None) -> torch.Tensor:
        target = dtype if dtype is not None and entry.dtype.is_floating_point else entry.dtype
        on_cpu = device is None or device.type == "cpu"
        if entry.tensor is not None:
            return entry.tensor.to(device=device, dtype=target)
        if self._mmap and on_cpu and target == entry.dtype and entry.start % entry.dtype.itemsize == 0:
            self.zero_copy += 1
            flat = self._map(entry.file)[entry.start:entry.end]
            return flat.view(entry.dtype).view(entry.shape)
        data = self._read(entry)
        if target != entry.dtype or not on_cpu:
            data = data.to(device=device, dtype=target)
        return data

    def _map(self, path: Path) -> torch.Tensor:
        if path not in self._maps:
            nbytes = path.stat().st_size
            storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=nbytes)
            self._maps[path] = torch.empty(0, dtype=torch.uint8).set_(storage)
        return self._maps[path]

    def _read(self, entry: _Entry) -> torch.Tensor:
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        if entry.file not in self._handles:
            self._handles[entry.file] = self._stack.enter_context(open(entry.file, "rb"))
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
                    file=path, hint="use safetensors weights, or pass allow_pickle=True",
                )
            found = _read_pickle(path)
        else:
            found = _read_safetensors_header(path)
        for key, entry in found.items():
            if key in entries:
                raise CheckpointError(
                    f"tensor {key} appears in both {entries[key].file} and {path}", file=path,
                    hint="the shards of this checkpoint are inconsistent; download it again",
                )
            entries[key] = entry

    plan = _plan(model, entries)
    where = paths[0].parent if len({p.parent for p in paths}) == 1 else paths[0]
    if plan.missing or plan.unexpected or plan.mismatched:
        message = _mismatch_message(model, plan)
        if strict:
            raise WeightsMismatchError(
                message, file=where, missing=plan.missing, unexpected=plan.unexpected, mismatched=plan.mismatched,
                hint="check that config.json matches this architecture; pass strict=False to initialise the "
                "missing tensors and skip the others",
            )
        warnings.warn(message + "\nmissing and wrongly shaped tensors were initialised; unexpected ones skipped",
                      WeightsMismatchWarning, stacklevel=2)

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
    _materialise(model, to_init, dtype, target_device)
    _apply_ties(model, plan.ties)
    _move_buffers(model, target_device)
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


def _legacy(key: str) -> str:
    for old, new in _LEGACY_NAMES:
        if old in key:
            key = key.replace(old, new)
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
    model_has = bool(prefix) and any(k.startswith(dot) for k in shapes)
    ckpt_has = bool(prefix) and any(_legacy(k).startswith(dot) for k in entries)
    mode = "add" if model_has and not ckpt_has else "strip" if ckpt_has and not model_has else None
    skip_unexpected = _patterns(model, "_keys_to_ignore_on_load_unexpected")
    skip_missing = _patterns(model, "_keys_to_ignore_on_load_missing")

    mapped: dict[str, _Entry] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    for key, entry in entries.items():
        name = key if key in shapes else _legacy(key)
        if mode == "add" and name not in shapes and dot + name in shapes:
            name = dot + name
        elif mode == "strip":
            if not name.startswith(dot):
                ignored.append(key)  # a head's tensor; the trunk alone was asked for
                continue
            name = name[len(dot):]
        if name in non_persistent or any(p.search(key) for p in skip_unexpected):
            ignored.append(key)
        elif name in shapes and name not in mapped:
            mapped[name] = entry
        else:
            unexpected.append(key)

    ties = _tie_map(model)
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


def _tie_map(model: nn.Module) -> dict[str, str]:
    """{dest: source}: the model's declared ``tied_weights`` plus parameters aliased at construction."""
    params = dict(model.named_parameters(remove_duplicate=False))
    ties: dict[str, str] = {}
    first: dict[int, str] = {}
    for name, param in params.items():
        if id(param) in first:
            ties[name] = first[id(param)]
        else:
            first[id(param)] = name
    declared = getattr(model, "tied_weights", None) or {}
    if not isinstance(declared, Mapping):
        raise ModelContractError(
            f"{type(model).__name__}.tied_weights must be a mapping {{dest_param: source_param}}, "
            f"got {type(declared).__name__}"
        )
    for dest, source in declared.items():
        for name in (dest, source):
            if name not in params:
                raise ModelContractError(
                    f"{type(model).__name__}.tied_weights names {name!r}, which is not a parameter of the model",
                    hint="tied_weights maps parameter names as in model.named_parameters()",
                )
        if params[dest].shape != params[source].shape:
            raise ModelContractError(
                f"{type(model).__name__}.tied_weights ties {dest} {list(params[dest].shape)} to {source} "
                f"{list(params[source].shape)}: shapes differ"
            )
        ties.pop(source, None)  # an alias recorded the other way round
        ties[dest] = source
    return ties


def _mismatch_message(model: nn.Module, plan: _Plan) -> str:
    def listing(title: str, lines: list[str]) -> list[str]:
        if not lines:
            return []
        more = [f"    ... and {len(lines) - _MAX_LISTED} more"] if len(lines) > _MAX_LISTED else []
        return [f"  {title}:"] + [f"    - {line}" for line in lines[:_MAX_LISTED]] + more

    parts = [
        f"checkpoint weights do not match {type(model).__name__}: {len(plan.missing)} missing, "
        f"{len(plan.unexpected)} unexpected, {len(plan.mismatched)} with the wrong shape",
        *listing("missing (in the model, not in the checkpoint)",
                 [f"{k} {list(plan.shapes[k])}" for k in plan.missing]),
        *listing("unexpected (in the checkpoint, not in the model)",
                 [f"{k} {list(plan.entries[k].shape)} ({plan.entries[k].file.name})" for k in plan.unexpected]),
        *listing("wrong shape", [f"{k}: checkpoint {list(c)} vs model {list(m)}" for k, c, m in plan.mismatched]),
    ]
    return "\n".join(parts)


# --- materialising, tying, moving -----------------------------------------------
def resolve_device(device: torch.device | str | None) -> torch.device:
    try:
        result = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device: {exc}",
                          hint="use 'cpu', 'cuda', 'cuda:1', 'mps', ...") from None
    backend = getattr(torch, result.type, None) if result.type not in ("cpu", "meta") else None
    available = getattr(backend, "is_available", None)
    if callable(available) and not available():
        raise ConfigError(f"device {str(result)!r} is not available in this process "
                          f"(torch {torch.__version__} sees no {result.type} device)",
                          hint="build on 'cpu', or install a torch build for this accelerator")
    count = getattr(backend, "device_count", None)
    if result.index is not None and callable(count) and result.index >= count():
        raise ConfigError(f"device {str(result)!r} does not exist: {count()} {result.type} device(s) visible",
                          hint=f"use an index below {count()}")
    return result


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, leaf = name.rpartition(".")
    return model.get_submodule(module_name), leaf


@torch.no_grad()
def _materialise(model: nn.Module, names: Iterable[str], dtype: torch.dtype | None, device: torch.device) -> None:
    """Give each named (meta or wrongly shaped) parameter real memory and initialise it.

    Per owning module: the model's ``_init_weights(module)`` if it has one, else the
    module's ``reset_parameters()``, else zeros. Tensors of that module that were
    loaded from the checkpoint are restored afterwards, so only the new ones change.
    """
    by_owner: dict[nn.Module, list[str]] = {}
    for name in names:
        owner, leaf = _owner(model, name)
        old = owner._parameters[leaf]
        assert old is not None
        target = dtype if dtype is not None and old.dtype.is_floating_point else old.dtype
        new = torch.zeros(old.shape, dtype=target, device=device)
        setattr(owner, leaf, nn.Parameter(new, requires_grad=old.requires_grad))
        by_owner.setdefault(owner, []).append(leaf)
    init_weights = getattr(model, "_init_weights", None)
    for owner, leaves in by_owner.items():
        keep = {
            n: t.detach().clone()
            for n, t in [*owner.named_parameters(recurse=False), *owner.named_buffers(recurse=False)]
            if n not in leaves and t is not None and not t.is_meta
        }
        if callable(init_weights):
            init_weights(owner)
        elif callable(getattr(owner, "reset_parameters", None)):
            owner.reset_parameters()
        for n, value in keep.items():
            getattr(owner, n).copy_(value)


def _apply_ties(model: nn.Module, ties: Mapping[str, str]) -> None:
    for dest, source in ties.items():
        owner, leaf = _owner(model, dest)
        setattr(owner, leaf, model.get_parameter(source))


def _move_buffers(model: nn.Module, device: torch.device) -> None:
    for module in model.modules():
        for name, buf in module._buffers.items():
            if buf is not None and buf.device != device:
                module._buffers[name] = buf.to(device)
