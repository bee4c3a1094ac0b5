"""Constructing a model without allocating anything, and giving its tensors real memory later.

``empty_model`` builds ``ModelClass(config)`` under ``torch.device("meta")``: every parameter and
buffer is a meta tensor, whatever the model's size, and no initialiser runs. Buffers a module
computes in ``__init__`` (rotary frequencies, position ids, masks) are then recreated for real by
``init_buffers``, through the model contract's ``reset_buffers()``; ``materialise`` gives chosen
parameters real memory and initialises them; ``tie_map`` / ``apply_ties`` keep tied parameters one
object; ``move_buffers`` puts buffers where the weights went; ``model_bytes`` / ``check_fits`` say
before any allocation whether the model fits where it is going.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from factory.build.placement import available_memory, format_bytes, resolve_device, resolve_dtype
from factory.errors import FactoryError, ModelTooLargeError


class ModelContractError(FactoryError):
    """A model class breaks the native model contract (e.g. a tied name that does not exist)."""


_META_LOCK = threading.RLock()


_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "zeros_",
    "ones_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
    "uniform",
    "normal",
    "constant",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
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
    """``model_cls(config)`` on the meta device: parameters and buffers allocate nothing, no init runs.

    With ``dtype``, floating tensors created without an explicit dtype (parameters and
    buffers) use it, as transformers does. Computed buffers are meta too until
    :func:`init_buffers` recreates them.
    """
    with _META_LOCK, _default_dtype(resolve_dtype(dtype)), _skip_init(), torch.device("meta"):
        return model_cls(config)


@torch.no_grad()
def init_buffers(model: nn.Module, device: torch.device, dtype: torch.dtype | None = None) -> list[str]:
    """Recreate, on ``device``, the buffers of every module that declares ``reset_buffers()``.

    The model contract: a module whose ``__init__`` computes buffers (``inv_freq``, position ids,
    masks) defines ``reset_buffers(self)``, which writes their values in place and does nothing
    while they are meta. Each meta buffer of such a module is given real, uninitialised memory of
    its shape and dtype, then the module's ``reset_buffers()`` fills it. Returns the buffers
    recreated. Nothing happens for a ``meta`` target.
    """
    if device.type == "meta":
        return []
    done: list[str] = []
    for module_name, module in model.named_modules():
        reset = getattr(module, "reset_buffers", None)
        if not callable(reset):
            continue
        names = [n for n, b in module._buffers.items() if b is not None and b.is_meta]
        if not names:
            continue
        for name in names:
            old = module._buffers[name]
            assert old is not None
            module._buffers[name] = torch.empty(old.shape, dtype=old.dtype, device=device)
        with _default_dtype(dtype):
            reset()
        done += [f"{module_name}.{n}" if module_name else n for n in names]
    return done


def meta_buffers(model: nn.Module) -> list[str]:
    """Names of the buffers still on the meta device."""
    return [n for n, b in model.named_buffers(remove_duplicate=False) if b.is_meta]


def check_no_meta(model: nn.Module, device: torch.device) -> None:
    """:class:`ModelContractError` for parameters or buffers left on meta when ``device`` is real."""
    if device.type == "meta":
        return
    params = [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if params:
        raise ModelContractError(
            f"{type(model).__name__}: parameters left on the meta device after loading: {', '.join(params[:10])}",
            hint="a tied or aliased parameter name does not match the model's parameters",
        )
    buffers = meta_buffers(model)
    if buffers:
        owner = buffers[0].rpartition(".")[0] or "the model"
        raise ModelContractError(
            f"{type(model).__name__}: buffers computed in __init__ have no value after meta construction: "
            f"{', '.join(buffers[:10])}",
            hint=f"give {owner}'s class a reset_buffers() method that fills them in place (see README: "
            "'Registering your own model'), or make them persistent so that checkpoints carry them",
        )


def model_bytes(model: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes the model's parameters and buffers take once real (tied parameters counted once);
    floating tensors in ``dtype`` when given. Reads shapes only: works on the meta device."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        itemsize = (dtype or tensor.dtype).itemsize if tensor.dtype.is_floating_point else tensor.dtype.itemsize
        total += tensor.numel() * itemsize
    return total


def check_fits(nbytes: int, device: torch.device, *, what: str, per_rank: bool = False) -> None:
    """:class:`ModelTooLargeError` when ``nbytes`` exceed the free memory of ``device`` (RAM for the CPU)."""
    if device.type == "meta":
        return
    free = available_memory(device)
    if free is None or nbytes <= free:
        return
    where = "available RAM" if device.type == "cpu" else f"free memory of {device}"
    raise ModelTooLargeError(
        f"{what} needs {format_bytes(nbytes)}{' per rank' if per_rank else ''}, more than the "
        f"{format_bytes(free)} of {where}; nothing was allocated",
        hint="split it over ranks with tp_size=N under torchrun (factory explain TASK NAME --tp N shows what each "
        "rank holds), build in a smaller dtype (dtype='bfloat16'), or pass device='meta' for a model without memory",
        needed=nbytes,
        available=free,
        device=str(device),
    )


def fresh_model(
    model_cls: type[nn.Module],
    config: Any,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """A freshly initialised model (``_init_weights`` or ``reset_parameters``), tied, on ``device``.

    On the ``meta`` device nothing is allocated or initialised. Elsewhere the model's size is
    checked against the device's free memory before anything is allocated.
    """
    dtype = resolve_dtype(dtype)
    target = resolve_device(device)
    model = empty_model(model_cls, config, dtype=dtype)
    ties = tie_map(model)
    apply_ties(model, ties)
    if target.type == "meta":
        return model
    check_fits(model_bytes(model, dtype), target, what=f"{type(model).__name__} ({_count(model)} parameters)")
    names = [n for n, p in model.named_parameters() if p.is_meta and n not in ties]
    init_buffers(model, target, dtype)
    materialise(model, names, dtype, target)
    apply_ties(model, ties)
    move_buffers(model, target)
    check_no_meta(model, target)
    return model


def _count(model: nn.Module) -> str:
    n = sum(p.numel() for p in model.parameters())
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def tie_map(model: nn.Module) -> dict[str, str]:
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


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, leaf = name.rpartition(".")
    return model.get_submodule(module_name), leaf


@torch.no_grad()
def materialise(model: nn.Module, names: Iterable[str], dtype: torch.dtype | None, device: torch.device) -> None:
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
        elif callable(reset := getattr(owner, "reset_parameters", None)):
            reset()
        for n, value in keep.items():
            getattr(owner, n).copy_(value)


def apply_ties(model: nn.Module, ties: Mapping[str, str]) -> None:
    for dest, source in ties.items():
        owner, leaf = _owner(model, dest)
        setattr(owner, leaf, model.get_parameter(source))


def move_buffers(model: nn.Module, device: torch.device) -> None:
    for module in model.modules():
        for name, buf in module._buffers.items():
            if buf is not None and buf.device != device and not buf.is_meta:  # meta ones: check_no_meta
                module._buffers[name] = buf.to(device)
