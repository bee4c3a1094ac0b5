"""Writing a checkpoint directory atomically.

``save(model, directory)`` writes ``config.json`` and ``model.safetensors`` (or shards
plus ``model.safetensors.index.json`` above ``max_shard_size``) in the layout
transformers writes, so transformers and ``factory.build`` both load it. Tensors that
share memory (tied weights) are stored once, under the tie's source name.

Everything is written into a temporary directory next to the target (made with the
target's mode, or the umask's for a new one), flushed to disk, then swapped into place in
one rename: a failure leaves no partial checkpoint and an existing target untouched. Files
of an existing target that the save does not replace (a tokenizer next to the weights, say)
are carried over (hard links), and so are files another process writes into the target
while the save runs (moved in after the swap). A save killed before the swap leaves its
temporary directory behind; the next save into the same target removes it
(:func:`remove_stale_temporaries`).

torch is imported only when a torch model is saved.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import stat
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from factory.build import progress, records
from factory.errors import ConcurrentWriteWarning, FactoryError, SaveError

DEFAULT_MAX_SHARD_SIZE = "5GB"
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
WEIGHTS_PATTERN = "model{suffix}.safetensors"
INDEX_FILE = "model.safetensors.index.json"

#: Files of an existing target that a model save makes stale (old weights in any layout, generation defaults).
_STALE_MODEL_FILES = re.compile(
    r"^(config\.json|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json"
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

    data = records.config_dict(model)
    if data is None:
        raise SaveError(
            f"{type(model).__name__} has no config with to_dict() (neither .config nor one recorded by "
            "factory.build); factory.save needs it to write config.json",
            hint="give the model a .config (a factory.models.configuration.Config) or save its state_dict yourself",
        )
    state = _unique_state(model)
    try:
        split = split_state_dict_into_shards_factory(
            state,
            get_storage_size=_nbytes,
            filename_pattern=WEIGHTS_PATTERN,
            max_shard_size=max_shard_size,
        )
    except ValueError as exc:
        raise SaveError(
            f"max_shard_size {max_shard_size!r} is not a size: {exc}",
            hint="use bytes (int) or a string like '500MB' or '5GB'",
        ) from None
    shards = split.filename_to_tensors.items()
    for filename, keys in progress.track(shards, lambda shard: sum(_nbytes(state[k]) for k in shard[1]), "saving"):
        shard = {k: state[k].detach().to("cpu").contiguous() for k in keys}
        safetensors.torch.save_file(shard, str(directory / filename), metadata={"format": "pt"})
        del shard
    if split.is_sharded:
        index = {"metadata": dict(split.metadata), "weight_map": dict(sorted(split.tensor_to_filename.items()))}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")

    data["architectures"] = [type(model).__name__]
    dtype = _dominant_dtype(model)
    data["dtype"] = data["torch_dtype"] = dtype
    _write_config(data, directory)
    generation = records.generation_dict(model)
    if generation:
        _write_config(generation, directory, GENERATION_CONFIG_FILE)


def _nbytes(tensor: Any) -> int:
    return int(tensor.numel() * tensor.element_size())


def _unique_state(model: Any) -> dict[str, Any]:
    """``state_dict()`` with each shared tensor once, kept under the tie's source name."""
    state = model.state_dict()
    declared = getattr(model, "tied_weights", None) or getattr(model, "_tied_weights_keys", None) or ()
    dests = set(declared)
    out: dict[str, Any] = {}
    seen: dict[tuple[Any, ...], str] = {}
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


def _write_config(data: dict[str, Any], directory: Path, name: str = CONFIG_FILE) -> None:
    try:
        text = json.dumps(data, indent=2, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise SaveError(
            f"config cannot be written as JSON: {exc}",
            hint="config values must be JSON types (str, int, float, bool, list, dict, None)",
        ) from None
    (directory / name).write_text(text + "\n", encoding="utf-8")


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
#: A temporary directory of an earlier save that was killed is removed by a later save into the
#: same target when nothing in it changed for STALE_SECONDS, or for DEAD_SECONDS once the process
#: that made it is gone (same host; the pause guards against pid namespaces sharing a host name).
STALE_SECONDS = 24 * 3600
DEAD_SECONDS = 600
_NAME_CHARS = 100  # of the target's name kept in temporary names (NAME_MAX is 255)


def _host_tag() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _temp_name(target: Path, suffix: str) -> str:
    """``.<name>.<host>-<pid>-<random>.<suffix>``: whose it is, so that only our own leftovers are removed."""
    return f".{target.name[:_NAME_CHARS]}.{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.{suffix}"


def _own_temp(target: Path) -> re.Pattern[str]:
    name = re.escape(target.name[:_NAME_CHARS])
    return re.compile(
        rf"^\.{name}\.(?:(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)-[0-9a-f]{{8}}|[a-z0-9_]{{8}})\.(?:saving|old)$"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process (or no way to tell): assume it is alive
    return True


def _newest_change(root: Path) -> float:
    newest = os.lstat(root).st_mtime
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
            except OSError:
                pass
    return newest


def remove_stale_temporaries(target: Path, *, now: float | None = None) -> list[Path]:
    """Remove what earlier, killed saves into ``target`` left next to it; returns what was removed.

    Only directories named as :func:`save` names its own (``.<name>.<host>-<pid>-<random>.saving``
    or ``.old``; also the ``.<name>.<random>.saving`` of earlier versions) are candidates, and
    only when nothing in them changed for ``STALE_SECONDS`` (24 h), or for ``DEAD_SECONDS``
    (10 min) when the process that made them is gone.
    """
    pattern = _own_temp(target)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        found = pattern.match(entry.name)
        if found is None or entry.is_symlink() or not entry.is_dir():
            continue
        path = Path(entry.path)
        try:
            dead = found["host"] == _host_tag() and not _pid_alive(int(found["pid"]))
            idle = now - _newest_change(path)
            if idle > STALE_SECONDS or (dead and idle > DEAD_SECONDS):
                shutil.rmtree(path)
                removed.append(path)
        except OSError:
            continue  # another save is removing it, or it is not ours to remove after all
    return removed


def _make_temp(target: Path) -> Path:
    """A new directory next to ``target``: the target's mode if it exists, else the umask's (``os.mkdir``)."""
    tmp = target.parent / _temp_name(target, "saving")
    os.mkdir(tmp, 0o777)
    if target.is_dir():
        os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
    return tmp


@contextmanager
def _atomic_directory(target: Path, stale: re.Pattern[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes ``target`` in one rename.

    Files of an existing target that the save does not replace are carried over (hard links); files
    another process writes into the target while the save runs are carried over after the swap
    (moved); a file both wrote keeps the previous directory, renamed ``<name>.concurrent-<random>``,
    with a :class:`ConcurrentWriteWarning`. Nothing the save did not write is deleted.
    """
    if target.exists() and not target.is_dir():
        raise SaveError("cannot save here: it exists and is not a directory", file=target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        tmp = _make_temp(target)
    except OSError as exc:
        raise SaveError(f"cannot create a temporary directory next to the target: {exc}", file=target) from None
    before = _tree_state(target) if target.is_dir() else None  # what was there before the save began
    try:
        yield tmp
        if before is not None:
            _carry_over(target, tmp, stale)
        _fsync_tree(tmp)
        old = _replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, FactoryError) or not isinstance(exc, Exception):
            raise
        raise SaveError(
            f"save failed: {type(exc).__name__}: {exc}",
            file=target,
            hint="nothing was written: the target directory is as it was before",
        ) from exc
    if old is not None:
        try:
            _retire(old, target, before or {})
        except OSError as exc:  # the save itself succeeded: say what is left where, delete nothing more
            warnings.warn(
                f"{target} was saved, but the previous checkpoint could not be cleaned up ({exc}); it is left at {old}",
                stacklevel=3,
            )


FileState = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns


def _tree_state(root: Path) -> dict[str, FileState]:
    """Every entry below ``root`` (relative path -> identity), to tell later writes from what was there."""
    state: dict[str, FileState] = {}
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            state[os.path.relpath(path, root)] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return state


def _retire(old: Path, target: Path, before: dict[str, FileState]) -> None:
    """Delete the previous checkpoint (now at ``old``), after moving into ``target`` what others wrote into it."""
    conflicts: list[str] = []
    for folder, dirs, files in os.walk(old):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, old)
            dest = target / rel
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                if not os.path.lexists(dest):
                    os.rename(path, dest)  # a new folder: carried over whole
                    dirs.remove(name)
                continue
            ident = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if before.get(rel) == ident:
                continue  # there when the save began, and carried over or replaced by it
            if os.path.lexists(dest) and os.lstat(dest).st_ino == st.st_ino:
                continue  # written in place into a file the save carried over by a hard link
            if os.path.lexists(dest):
                conflicts.append(rel)
            else:
                os.rename(path, dest)  # written while the save ran: carried over after the swap
    if not conflicts:
        shutil.rmtree(old, ignore_errors=True)
        return
    kept = target.with_name(f"{target.name}.concurrent-{uuid.uuid4().hex[:8]}")
    os.rename(old, kept)
    warnings.warn(
        f"{target}: another process wrote {', '.join(sorted(conflicts)[:10])} into the checkpoint while it was "
        f"being saved, and the save wrote the same file(s); the previous directory, with those writes, is "
        f"kept as {kept}",
        ConcurrentWriteWarning,
        stacklevel=4,
    )


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
            if stat.S_ISREG(os.lstat(path).st_mode):  # not a link, never a FIFO (opening one blocks)
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


def _replace(tmp: Path, target: Path) -> Path | None:
    """Put ``tmp`` in ``target``'s place; returns where the previous checkpoint now is (None: there was none)."""
    if not target.exists():
        os.rename(tmp, target)
        old = None
    elif _exchange(tmp, target):
        old = tmp  # tmp now holds the previous checkpoint
    else:
        old = target.with_name(_temp_name(target, "old"))
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
    _fsync_dir(target.parent)
    return old


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
