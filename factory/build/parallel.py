"""Splitting a meta-built model over ranks: tensor parallel on DTensor, FSDP2 on a 2-D mesh, shard-on-read.

The one place where models are split, apart from the models (like torchtitan's ``parallelize.py``):

1. :func:`resolve_mesh` — a 1-D ``tp`` mesh over the initialised default process group, or the
   caller's ``DeviceMesh`` (1-D: tensor parallel; 2-D named ``("dp_shard", "tp")``: FSDP2 over
   ``dp_shard`` with tensor parallel inside). The device follows the backend: ``cuda:LOCAL_RANK``
   for nccl, the CPU for gloo.
2. :func:`apply_tensor_parallel` — on the meta model, every tensor the :class:`~factory.build.plan.ShardPlan`
   shards becomes a DTensor on the ``tp`` mesh (its local shard still meta); the modules the plan
   styles get a forward that runs on their local shards and does the style's collective
   (gather the outputs, sum the partial products, mask the vocabulary); tied parameters are tied
   again, so a tied, vocabulary-sharded embedding and head stay one tensor.
3. :func:`apply_fsdp` — ``fully_shard`` on the plan's FSDP units (innermost first) and the root.
4. :func:`load_shards` — each rank reads only its own boxes of the memory-mapped safetensors
   (``safe_open(...).get_slice``, at the offsets DTensor computes for its placements) and assigns
   them as the local shards: no copy when the dtype matches, straight to the rank's device.

The forward of a styled module swaps its DTensor parameters for their local tensors (no copy)
while it runs, and the collectives go through DTensor redistribution, so they are autograd-aware
and handle uneven shards (an odd vocabulary).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import DTensor, Partial, Placement, Replicate, Shard
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
from torch.distributed.tensor.placement_types import _StridedShard

from factory.build import plan as P
from factory.build.meta import apply_ties, tie_map
from factory.build.placement import resolve_device
from factory.errors import CheckpointError, ParallelError


def require_checkpoint(directory: Path | None, weights: bool, what: str) -> Path:
    """The checkpoint directory a parallel build reads its shards from; a fresh model is refused."""
    if directory is None or not weights:
        raise ParallelError(
            f"a tensor-parallel build reads each rank's shards from a checkpoint; {what} would be a fresh model "
            "(an architecture name or weights=False)",
            hint="save a checkpoint once (factory.save) and build that directory, or build without tp_size/mesh",
        )
    return Path(directory)


# --- the mesh ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mesh:
    """Where a parallel build runs: the whole mesh, its ``tp`` and ``dp_shard`` parts, the device."""

    mesh: DeviceMesh
    tp: DeviceMesh
    dp: DeviceMesh | None
    device: torch.device

    @property
    def tp_size(self) -> int:
        return self.tp.size()

    @property
    def tp_rank(self) -> int:
        return self.tp.get_local_rank()

    @property
    def dp_size(self) -> int:
        return self.dp.size() if self.dp is not None else 1

    @property
    def dp_rank(self) -> int:
        return self.dp.get_local_rank() if self.dp is not None else 0


def _backend_device() -> torch.device:
    backend = str(dist.get_backend())
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank() % max(torch.cuda.device_count(), 1)))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        return device
    if backend == "gloo":
        return torch.device("cpu")
    raise ParallelError(
        f"the default process group uses the {backend} backend; factory splits models over nccl (cuda:LOCAL_RANK) "
        "or gloo (the CPU)",
        hint="init_process_group('nccl') on GPUs, init_process_group('gloo') on CPUs",
    )


def resolve_mesh(tp_size: int | None, mesh: DeviceMesh | None, device: Any = None) -> Mesh:
    """The mesh of a parallel build (see the module docstring)."""
    if not dist.is_available() or not dist.is_initialized():
        raise ParallelError(
            "a tensor-parallel build needs torch.distributed: no default process group is initialised",
            hint="run under torchrun (torchrun --nproc-per-node N script.py) and call "
            "torch.distributed.init_process_group() before factory.build(..., tp_size=N)",
        )
    target = _backend_device()
    if device is not None and resolve_device(device) != target:
        raise ParallelError(
            f"device={device!r} conflicts with the {dist.get_backend()} process group, whose ranks build on "
            f"{target.type}" + (":LOCAL_RANK" if target.type == "cuda" else ""),
            hint="leave device unset under tensor parallelism: it follows the backend",
        )
    if tp_size is not None and (isinstance(tp_size, bool) or not isinstance(tp_size, int) or tp_size < 1):
        raise ParallelError(f"tp_size must be a positive integer, got {tp_size!r}")
    if mesh is None:
        world = dist.get_world_size()
        assert tp_size is not None
        if tp_size != world:
            raise ParallelError(
                f"tp_size={tp_size}, but the default process group has {world} ranks",
                hint="start torchrun with --nproc-per-node equal to tp_size, or pass "
                "mesh=init_device_mesh(device_type, (dp, tp), mesh_dim_names=('dp_shard', 'tp')) for FSDP2 with "
                "tensor parallel inside",
            )
        mesh = init_device_mesh(target.type, (tp_size,), mesh_dim_names=("tp",))
    if not isinstance(mesh, DeviceMesh):
        raise ParallelError(f"mesh must be a torch.distributed DeviceMesh, got {type(mesh).__name__}")
    names = tuple(mesh.mesh_dim_names or ())
    if mesh.ndim == 1:
        tp, dp = mesh, None
    elif mesh.ndim == 2 and names == ("dp_shard", "tp"):
        tp, dp = mesh["tp"], mesh["dp_shard"]
    else:
        raise ParallelError(
            f"mesh has {mesh.ndim} dimension(s) named {names or 'nothing'}: factory takes a 1-D mesh (tensor "
            "parallel) or a 2-D mesh named ('dp_shard', 'tp') (FSDP2 over dp_shard, tensor parallel inside)",
            hint="init_device_mesh(device_type, (dp, tp), mesh_dim_names=('dp_shard', 'tp'))",
        )
    if tp_size is not None and tp.size() != tp_size:
        raise ParallelError(
            f"tp_size={tp_size} but the mesh's tp dimension has {tp.size()} ranks",
            hint="pass one of them, or make them agree",
        )
    if mesh.device_type != target.type:
        raise ParallelError(f"the mesh is on {mesh.device_type}, the process group's ranks build on {target.type}")
    return Mesh(mesh, tp, dp, target)


# --- DTensor placements of the plan -------------------------------------------------------------
def dtensor_placement(placement: P.Placement) -> Placement:
    """The DTensor placement of a sharded plan placement (``group`` tensors stay plain)."""
    if placement.kind == "shard":
        return Shard(placement.dim)
    if placement.kind == "packed":
        return _StridedShard(placement.dim, split_factor=placement.parts)
    if placement.kind == "replicate":
        return Replicate()
    raise AssertionError(placement.kind)


def _contiguous_stride(shape: Sequence[int]) -> tuple[int, ...]:
    stride, out = 1, []
    for n in reversed(shape):
        out.append(stride)
        stride *= max(n, 1)
    return tuple(reversed(out))


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, leaf = name.rpartition(".")
    return model.get_submodule(module_name), leaf


@torch.no_grad()
def apply_tensor_parallel(model: nn.Module, sp: P.ShardPlan, mesh: Mesh) -> None:
    """Turn the meta model's sharded tensors into DTensors and install the styles' forwards."""
    ties = tie_map(model)
    tp = mesh.tp_size
    for t in sp.tensors:
        if t.placement.kind == "replicate":
            continue
        owner, leaf = _owner(model, t.name)
        old = owner._parameters[leaf]
        assert old is not None
        local = torch.empty(P.local_shape(t.shape, t.placement, tp, mesh.tp_rank), dtype=old.dtype, device="meta")
        if t.placement.kind == "group":
            value: torch.Tensor = local  # each rank its own kv heads: a plain tensor
        else:
            value = DTensor.from_local(
                local,
                mesh.tp,
                [dtensor_placement(t.placement)],
                run_check=False,
                shape=torch.Size(t.shape),
                stride=_contiguous_stride(t.shape),
            )
        owner._parameters[leaf] = nn.Parameter(value, requires_grad=old.requires_grad)
    apply_ties(model, ties)
    for name, entry in sp.module_styles.items():
        _install(model.get_submodule(name), entry, mesh)
    for t in sp.tensors:  # a parameter styled on its own, outside a styled module: run its owner on locals
        owner_name = t.name.rpartition(".")[0]
        if t.placement.kind != "replicate" and owner_name not in sp.module_styles:
            _install_local(model.get_submodule(owner_name))


def _unit_groups(mesh: Mesh, units: int) -> Any:
    """The process group of the ranks that keep the same kv unit as this rank (created on every rank)."""
    rows = mesh.mesh.mesh.reshape(-1, mesh.tp_size).tolist()  # one row of global ranks per tp group
    per_unit = mesh.tp_size // units
    mine = None
    for row in rows:
        for u in range(units):
            ranks = row[u * per_unit : (u + 1) * per_unit]
            group = dist.new_group(ranks)
            if dist.get_rank() in ranks:
                mine = group
    return mine


def add_grad_hooks(model: nn.Module, sp: P.ShardPlan, mesh: Mesh) -> None:
    """Gradients a rank computes only part of, summed on the loaded parameters: a
    ``replicated_with_grad_allreduce`` parameter (a per-head norm: each rank's gradient covers its own
    heads) over the ``tp`` ranks, a replicated kv head over the ranks that share it."""

    def hook(group: Any) -> Callable[[torch.Tensor], None]:
        return lambda p: dist.all_reduce(p.grad, group=group)

    groups: dict[int, Any] = {}
    for t in sp.tensors:
        if t.style == "replicated_with_grad_allreduce" and t.placement.kind == "replicate":
            group = mesh.tp.get_group()
        elif t.placement.kind == "group":
            if t.placement.units not in groups:
                groups[t.placement.units] = _unit_groups(mesh, t.placement.units)
            group = groups[t.placement.units]
        else:
            continue
        model.get_parameter(t.name).register_post_accumulate_grad_hook(hook(group))  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _local_params(module: nn.Module, params: Mapping[str, torch.Tensor] | None = None, **attrs: Any) -> Iterator[None]:
    """While the module runs: its DTensor parameters replaced by their local shards (no copy), the
    given ``params`` and attributes swapped in; all restored afterwards."""
    saved_params = dict(module._parameters)
    saved_attrs = {k: getattr(module, k) for k in attrs}
    for name, param in saved_params.items():
        if isinstance(param, DTensor):
            module._parameters[name] = param.to_local()
    for name, value in (params or {}).items():
        module._parameters[name] = value  # type: ignore[assignment]
    for key, value in attrs.items():
        setattr(module, key, value)
    try:
        yield
    finally:
        module._parameters.update(saved_params)
        for key, value in saved_attrs.items():
            setattr(module, key, value)


class _SumGradients(torch.autograd.Function):
    """Identity forward; the backward sums the input's gradient over the ranks. A colwise layer's
    replicated input gets only this rank's share of its gradient (Megatron's ``f``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def _replicated_input(x: torch.Tensor, mesh: DeviceMesh) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _SumGradients.apply(x, mesh.get_group())  # type: ignore[no-untyped-call,no-any-return]
    return x


def _gather_last(x: torch.Tensor, mesh: DeviceMesh, size: int) -> torch.Tensor:
    """All ranks' last-dim shards of a ``size``-wide tensor, concatenated (uneven shards allowed)."""
    shape = (*x.shape[:-1], size)
    full = DTensor.from_local(
        x, mesh, [Shard(x.dim() - 1)], run_check=False, shape=torch.Size(shape), stride=_contiguous_stride(shape)
    )
    return full.redistribute(mesh, [Replicate()]).to_local()


def _sum(x: torch.Tensor, mesh: DeviceMesh) -> torch.Tensor:
    """The sum over ranks of their partial results."""
    partial = DTensor.from_local(x, mesh, [Partial()], run_check=False)
    return partial.redistribute(mesh, [Replicate()]).to_local()


def _out_features(module: nn.Module) -> int:
    for attr in ("out_features", "nf", "embedding_dim"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    raise ParallelError(f"{type(module).__name__} has no out_features: its output cannot be gathered")


def _in_features(module: nn.Module, x: torch.Tensor) -> int:
    value = getattr(module, "in_features", None)
    if isinstance(value, int):
        return value
    weight = module._parameters.get("weight")
    return int(weight.shape[0]) if weight is not None and P.module_kind(module) == "conv1d" else x.shape[-1]


def _wrap(module: nn.Module, run: Callable[..., Any]) -> None:
    original = module.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        return run(original, *args, **kwargs)

    module.forward = forward


def _install_local(module: nn.Module) -> None:
    if getattr(module, "_factory_tp", False):
        return

    def run(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with _local_params(module):
            return original(*args, **kwargs)

    _wrap(module, run)
    module._factory_tp = True  # type: ignore[assignment]


def _install(module: nn.Module, entry: Any, mesh: Mesh) -> None:
    """Wrap ``module``'s forward for the style of ``entry`` (replicating styles need no wrapper)."""
    style, tp, rank = entry.style, mesh.tp_size, mesh.tp_rank
    if style not in P.SHARDING:
        return
    kind = P.module_kind(module)
    group = mesh.tp

    if style == "embedding_rowwise" or (kind == "embedding" and style in P.ROWWISE):
        start, stop = P.shard_range(int(getattr(module, "num_embeddings")), tp, rank)  # noqa: B009
        padding = getattr(module, "padding_idx", None)
        local_padding = padding - start if padding is not None and start <= padding < stop else None

        def vocab(original: Callable[..., Any], ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            outside = (ids < start) | (ids >= stop)
            with _local_params(module, padding_idx=local_padding):
                out = original((ids - start).masked_fill(outside, 0), *args, **kwargs)
            return _sum(out.masked_fill(outside[..., None], 0), group)

        _wrap(module, vocab)
    elif style in P.COLWISE or style == "embedding_colwise":
        gather = style in ("colwise_gather_output", "colwise_rep", "embedding_colwise")
        size = _out_features(module)

        def colwise(original: Callable[..., Any], x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            with _local_params(module):
                out = original(_replicated_input(x, group), *args, **kwargs)
            return _gather_last(out, group, size) if gather else out

        _wrap(module, colwise)
    else:  # rowwise: the input's last dim is sharded; partial products are summed, the bias added once
        split = style in ("rowwise_split_input", "rowwise_rep")

        def rowwise(original: Callable[..., Any], x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if split:
                begin, end = P.shard_range(_in_features(module, x), tp, rank)
                x = _replicated_input(x, group)[..., begin:end]
            bias = module._parameters.get("bias")
            local_bias = bias.to_local() if isinstance(bias, DTensor) else bias
            swap = {"bias": torch.zeros_like(local_bias)} if local_bias is not None else None
            with _local_params(module, swap):
                out = original(x, *args, **kwargs)
            out = _sum(out, group)
            return out + local_bias if local_bias is not None else out

        _wrap(module, rowwise)
    module._factory_tp = True  # type: ignore[assignment]


# --- FSDP2 -------------------------------------------------------------------------------------
def apply_fsdp(model: nn.Module, sp: P.ShardPlan, mesh: Mesh) -> list[str]:
    """``fully_shard`` the plan's FSDP units over ``dp_shard`` (innermost first), then the root."""
    from torch.distributed.fsdp import fully_shard

    assert mesh.dp is not None
    names = [n for n, _ in model.named_modules()]
    prefix = getattr(model, "base_model_prefix", "") or ""
    units: list[str] = []
    for unit in sp.plan.fsdp if sp.plan is not None else ():
        units += [n for n in P.resolve_path(unit.path, names, prefix) if n not in units]
    for name in sorted(units, key=lambda n: n.count("."), reverse=True):
        fully_shard(model.get_submodule(name), mesh=mesh.dp)
    fully_shard(model, mesh=mesh.dp)
    return units


# --- reading the shards -----------------------------------------------------------------------
class _Slices:
    """Reads boxes of checkpoint tensors through ``safe_open(...).get_slice``.

    ``get_slice`` gives a view of the file's memory map. A box that is one contiguous run of the
    tensor (whole trailing dimensions: colwise, vocabulary rows, replicated tensors) is kept as that
    view: zero copy, and only its own pages become resident. A strided box (rowwise: part of every
    row) is copied out through a handle opened for that tensor alone and closed at once, so the
    pages the copy touched are unmapped again and do not stay counted in the process's memory.
    """

    def __init__(self) -> None:
        self._views: dict[Path, Any] = {}
        self.bytes = 0

    @staticmethod
    def _open(file: Path) -> Any:
        from safetensors import safe_open

        handle = safe_open(str(file), framework="pt")
        handle.__enter__()  # type: ignore[no-untyped-call]
        return handle

    def read(self, file: Path, key: str, box: P.Box, shape: Sequence[int]) -> torch.Tensor:
        index = tuple(slice(a, b) for a, b in box)
        contiguous = all(box[d] == (0, shape[d]) for d in range(1, len(shape)))
        try:
            if contiguous:
                if file not in self._views:
                    self._views[file] = self._open(file)
                tensor: torch.Tensor = self._views[file].get_slice(key)[index]
            else:
                handle = self._open(file)
                try:
                    tensor = handle.get_slice(key)[index].contiguous()
                finally:
                    handle.__exit__(None, None, None)
        except Exception as exc:  # SafetensorError: the file changed since its header was read
            raise CheckpointError(
                f"cannot read tensor {key}: {exc}", file=file, hint="the file is truncated or corrupt: fetch it again"
            ) from None
        self.bytes += tensor.numel() * tensor.element_size()
        return tensor

    def close(self) -> None:
        for handle in self._views.values():
            handle.__exit__(None, None, None)
        self._views.clear()


def _restrict_rows(parts: list[P.Box], concat_dim: int, start: int, stop: int) -> list[P.Box]:
    """The boxes covering rows ``[start, stop)`` of dim 0 of the local tensor the boxes make up."""
    if not parts:
        return parts
    if concat_dim != 0:
        first = parts[0][0][0]
        return [((first + start, first + stop),) + b[1:] for b in parts]
    out: list[P.Box] = []
    offset = 0
    for b in parts:
        rows = b[0][1] - b[0][0]
        lo, hi = max(start - offset, 0), min(stop - offset, rows)
        if lo < hi:
            out.append(((b[0][0] + lo, b[0][0] + hi),) + b[1:])
        offset += rows
    return out


def _local_tensor(
    reader: _Slices, t: P.TensorPlan, parts: list[P.Box], dim: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    assert t.file is not None and t.checkpoint_key is not None
    pieces = [reader.read(t.file, t.checkpoint_key, b, t.shape) for b in parts if P.box_numel(b)]
    if not pieces:
        shape = [b - a for a, b in parts[0]] if parts else [0] * len(t.shape)
        if parts and len(parts) > 1:
            shape[dim] = sum(b[dim][1] - b[dim][0] for b in parts)
        return torch.empty(shape, dtype=dtype, device=device)
    local = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=dim)
    if local.dtype != dtype and local.dtype.is_floating_point:
        local = local.to(dtype)
    return local.to(device).contiguous()  # no-op for the slices get_slice returns


@torch.no_grad()
def load_shards(model: nn.Module, sp: P.ShardPlan, mesh: Mesh, dtype: torch.dtype | None) -> int:
    """Read every rank's boxes and assign them as the local shards of ``model``'s (meta) tensors.

    Returns the bytes this rank read. Each box is read from the memory-mapped file with
    ``get_slice``; a box that needs no cast is the local shard itself. With FSDP, a rank reads
    its ``dp_shard`` chunk (dim 0) of its tensor-parallel shard, as FSDP2 lays it out.
    """
    state = model.state_dict(keep_vars=True)
    reader = _Slices()
    new: dict[str, torch.Tensor] = {}
    try:
        for t in sp.tensors:
            if t.checkpoint_key is None:
                continue
            current = state[t.name]
            want = dtype if dtype is not None and current.dtype.is_floating_point else current.dtype
            parts = t.boxes(mesh.tp_size, mesh.tp_rank)
            concat_dim = t.placement.dim if len(parts) > 1 else 0
            if isinstance(current, DTensor) and "dp_shard" in (current.device_mesh.mesh_dim_names or ()):
                rows = sum(b[0][1] - b[0][0] for b in parts) if concat_dim == 0 else parts[0][0][1] - parts[0][0][0]
                lo, hi = P.shard_range(rows, mesh.dp_size, mesh.dp_rank)
                parts = _restrict_rows(parts, concat_dim, lo, hi)
            local = _local_tensor(reader, t, parts, concat_dim, want, mesh.device)
            if isinstance(current, DTensor):
                expected, _ = compute_local_shape_and_global_offset(
                    current.shape, current.device_mesh, current.placements
                )
                if tuple(local.shape) != tuple(expected):
                    raise ParallelError(
                        f"{t.name}: read a {tuple(local.shape)} shard where DTensor expects "
                        f"{tuple(expected)} ({current.placements})"
                    )
                value: torch.Tensor = DTensor.from_local(
                    local,
                    current.device_mesh,
                    current.placements,
                    run_check=False,
                    shape=current.shape,
                    stride=current.stride(),
                )
            else:
                value = local
            new[t.name] = (
                nn.Parameter(value, requires_grad=current.requires_grad) if isinstance(current, nn.Parameter) else value
            )
    finally:
        reader.close()
    model.load_state_dict(new, strict=False, assign=True)
    return reader.bytes


def check_loaded(model: nn.Module) -> None:
    """Every parameter and buffer has data (DTensors: their local shards)."""

    def is_meta(t: torch.Tensor) -> bool:
        return (t.to_local() if isinstance(t, DTensor) else t).is_meta

    left = [n for n, p in [*model.named_parameters(remove_duplicate=False), *model.named_buffers()] if is_meta(p)]
    if left:
        raise ParallelError(
            f"{type(model).__name__}: tensors left without data after the parallel load: {', '.join(left[:10])}",
            hint="a tied or aliased name does not match the plan",
        )


def retie(model: nn.Module, ties: Mapping[str, str]) -> None:
    """Tie again after assignment replaced the sources (the destinations still point at meta)."""
    apply_ties(model, ties)


# --- the build ----------------------------------------------------------------------------------
def build_parallel(
    model_cls: type[nn.Module],
    config: Any,
    directory: Path,
    *,
    plan: Any,
    task: str,
    target: str,
    dtype: torch.dtype,
    tp_size: int | None,
    mesh: DeviceMesh | None,
    device: Any = None,
    strict: bool = True,
) -> nn.Module:
    """A native model of ``config`` split over ``mesh`` (or ``tp_size`` ranks), loaded from ``directory``.

    Everything that can refuse does so before a tensor is read: the process group and mesh, the
    plan's divisibility rules and styles, the checkpoint's names and shapes, the per-rank size.
    """
    import time

    from factory.build import meta
    from factory.build import weights as W

    started = time.perf_counter()
    where = resolve_mesh(tp_size, mesh, device)
    files = W.find_weight_files(directory)
    pickles = [f for f in files if f.suffix != ".safetensors"]
    if pickles:
        raise CheckpointError(
            "a tensor-parallel build reads slices of safetensors files; this checkpoint has pickle weights",
            file=pickles[0],
            hint="convert it to safetensors (factory.save)",
        )
    model = meta.empty_model(model_cls, config, dtype=dtype)
    ties = tie_map(model)
    apply_ties(model, ties)
    match = W.match_checkpoint(model, files, strict=strict)
    if match.missing or match.mismatched:
        raise ParallelError(
            f"{len(match.missing)} tensor(s) missing from the checkpoint and {len(match.mismatched)} wrongly shaped "
            f"({', '.join([*match.missing, *(m[0] for m in match.mismatched)][:5])}): under tensor parallelism "
            "every rank would initialise them differently",
            file=directory,
            hint="build once without tp_size (strict=False), factory.save it, and split that",
        )
    sp = P.compute(model, plan, config, where.tp_size, task=task, target=target, dtype=dtype, checkpoint=match)
    sp.raise_problems()
    held = sp.ranks()[where.tp_rank][1] // where.dp_size
    meta.check_fits(
        held, where.device, what=f"{model_cls.__qualname__} split over tp_size={where.tp_size}", per_rank=True
    )
    apply_tensor_parallel(model, sp, where)
    if where.dp is not None:
        apply_fsdp(model, sp, where)
    read = load_shards(model, sp, where, dtype)
    retie(model, ties)
    add_grad_hooks(model, sp, where)
    meta.init_buffers(model, where.device, dtype)
    meta.move_buffers(model, where.device)
    check_loaded(model)
    model.eval()
    model.factory_shard_plan = sp  # type: ignore[assignment]
    model.factory_load_report = W.LoadReport(  # type: ignore[assignment]
        files=tuple(files),
        missing=match.missing,
        unexpected=match.unexpected,
        mismatched=match.mismatched,
        ignored=match.ignored,
        tied=tuple(ties.items()),
        dtype=dtype,
        device=where.device,
        bytes=read,
        zero_copy=0,
        seconds=time.perf_counter() - started,
    )
    return model
