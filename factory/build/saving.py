"""Writing a checkpoint directory atomically.

``save(model, directory)`` writes ``config.json`` and ``model.safetensors`` (or shards
plus ``model.safetensors.index.json`` above ``max_shard_size``) in the layout
transformers writes, so transformers and ``factory.build`` both load it. Tensors that
share memory (tied weights) are stored once, under the tie's source name.

Everything is written into a temporary directory next to the target, flushed to disk,
then swapped into place in one rename: a failure leaves no partial checkpoint and an
existing target untouched. Files of an existing target that the save does not replace
(a tokenizer next to the weights, say) are carried over (hard links).

torch is imported only when a torch model is saved.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from factory.errors import FactoryError, SaveError

DEFAULT_MAX_SHARD_SIZE = "5GB"
CONFIG_FILE = "config.json"
WEIGHTS_PATTERN = "model{suffix}.safetensors"
INDEX_FILE = "model.safetensors.index.json"

#: Files of an existing target that a model save makes stale (old weights in any layout).
_STALE_MODEL_FILES = re.compile(
    r"^(config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json"
    r"|pytorch_model(-\d+-of-\d+)?\.bin|pytorch_model\.bin\.index\.json)$"
)
_NOTHING = re.compile(r"(?!)")


def save(obj: Any, directory: str | Path, *, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> Path:
    """Save a model, a config or a component (tokenizer, processor) into ``directory``; returns its path.

    * a ``torch.nn.Module`` with a ``config``: ``config.json`` + safetensors weights;
    * an object with ``save(directory)`` (factory components) or ``save_pretrained(directory)``: delegated;
    * a config object (``to_dict()``): ``config.json`` alone.
    """
    write, stale = _writer(obj, max_shard_size)
    target = Path(directory).expanduser().absolute()
    if target.is_symlink():
        target = target.resolve()
    cwd = Path.cwd()
    if target.is_dir() and (target == cwd or target in cwd.parents):
        raise SaveError(
            "refusing to replace the current working directory (or one above it) with a checkpoint",
            file=target,
            hint="save into a new or dedicated subdirectory, e.g. save(model, 'checkpoints/my-model')",
        )
    with _atomic_directory(target, stale) as tmp:
        write(tmp)
    return target


def _writer(obj: Any, max_shard_size: int | str) -> tuple[Callable[[Path], None], re.Pattern[str]]:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        return (lambda tmp: _save_model(obj, tmp, max_shard_size)), _STALE_MODEL_FILES
    if type(obj).__module__.split(".")[0] == "tokenizers" and callable(getattr(obj, "save", None)):
        return (lambda tmp: obj.save(str(tmp / "tokenizer.json"))), _NOTHING
    if callable(getattr(obj, "save", None)):
        return (lambda tmp: obj.save(tmp)), _NOTHING
    if callable(getattr(obj, "save_pretrained", None)):
        return (lambda tmp: obj.save_pretrained(tmp)), _NOTHING
    if callable(getattr(obj, "to_dict", None)):
        return (lambda tmp: _write_config(obj.to_dict(), tmp)), _NOTHING
    raise SaveError(
        f"do not know how to save a {type(obj).__module__}.{type(obj).__qualname__}",
        hint="factory.save takes a model (torch.nn.Module with .config), a config (to_dict()), "
        "or a component with save(directory) / save_pretrained(directory)",
    )


# --- models ---------------------------------------------------------------------
def _save_model(model: Any, directory: Path, max_shard_size: int | str) -> None:
    import safetensors.torch
    from huggingface_hub import split_state_dict_into_shards_factory

    config = getattr(model, "config", None)
    if not callable(getattr(config, "to_dict", None)):
        raise SaveError(
            f"{type(model).__name__} has no config with to_dict(); factory.save needs it to write config.json",
            hint="give the model a .config (a factory.models.configuration.Config) or save its state_dict yourself",
        )
    state = _unique_state(model)
    try:
        split = split_state_dict_into_shards_factory(
            state,
            get_storage_size=lambda t: t.numel() * t.element_size(),
            filename_pattern=WEIGHTS_PATTERN,
            max_shard_size=max_shard_size,
        )
    except ValueError as exc:
        raise SaveError(
            f"max_shard_size {max_shard_size!r} is not a size: {exc}",
            hint="use bytes (int) or a string like '500MB' or '5GB'",
        ) from None
    for filename, keys in split.filename_to_tensors.items():
        shard = {k: state[k].detach().to("cpu").contiguous() for k in keys}
        safetensors.torch.save_file(shard, str(directory / filename), metadata={"format": "pt"})
        del shard
    if split.is_sharded:
        index = {"metadata": dict(split.metadata), "weight_map": dict(sorted(split.tensor_to_filename.items()))}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")

    data = config.to_dict()
    data["architectures"] = [type(model).__name__]
    dtype = _dominant_dtype(model)
    data["dtype"] = data["torch_dtype"] = dtype
    _write_config(data, directory)


def _unique_state(model: Any) -> dict[str, Any]:
    """``state_dict()`` with each shared tensor once, kept under the tie's source name."""
    state = model.state_dict()
    declared = getattr(model, "tied_weights", None) or getattr(model, "_tied_weights_keys", None) or ()
    dests = set(declared)
    out: dict[str, Any] = {}
    seen: dict[tuple, str] = {}
    for key, tensor in state.items():
        if tensor.is_meta:
            raise SaveError(
                f"{type(model).__name__}: tensor {key} is on the meta device (never loaded or initialised)",
                hint="load weights (or build with weights=False) before saving",
            )
        ident = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        if tensor.numel() == 0 or ident not in seen:
            seen[ident] = key
            out[key] = tensor
        elif seen[ident] in dests and key not in dests:
            del out[seen[ident]]
            seen[ident] = key
            out[key] = tensor
    return out


def _dominant_dtype(model: Any) -> str:
    counts = Counter(p.dtype for p in model.parameters() if p.dtype.is_floating_point)
    return str(counts.most_common(1)[0][0]).removeprefix("torch.") if counts else "float32"


def _write_config(data: dict[str, Any], directory: Path) -> None:
    try:
        text = json.dumps(data, indent=2, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise SaveError(
            f"config cannot be written as JSON: {exc}",
            hint="config values must be JSON types (str, int, float, bool, list, dict, None)",
        ) from None
    (directory / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")


def _json_default(value: Any) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} value {value!r} is not JSON serializable")


# --- atomic directory replacement ---------------------------------------------
@contextmanager
def _atomic_directory(target: Path, stale: re.Pattern[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes ``target`` in one rename."""
    if target.exists() and not target.is_dir():
        raise SaveError("cannot save here: it exists and is not a directory", file=target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".saving", dir=target.parent))
    except OSError as exc:
        raise SaveError(f"cannot create a temporary directory next to the target: {exc}", file=target) from None
    try:
        yield tmp
        if target.is_dir():
            _carry_over(target, tmp, stale)
        _fsync_tree(tmp)
        _replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, FactoryError) or not isinstance(exc, Exception):
            raise
        raise SaveError(
            f"save failed: {type(exc).__name__}: {exc}",
            file=target,
            hint="nothing was written: the target directory is as it was before",
        ) from exc


def _carry_over(old: Path, new: Path, stale: re.Pattern[str]) -> None:
    """Hard-link (or copy) into ``new`` what ``old`` has that the save neither wrote nor made stale."""
    for entry in old.iterdir():
        dest = new / entry.name
        if os.path.lexists(dest) or stale.match(entry.name):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), dest)
        elif entry.is_dir():
            shutil.copytree(entry, dest, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, dest)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported for directories on this platform
    finally:
        os.close(fd)


def _replace(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous checkpoint
    else:
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = ctypes.c_int(-100), ctypes.c_uint(2)
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))
