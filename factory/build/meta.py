"""Constructing a model without allocating its weights, and giving parameters real memory later.

``empty_model`` builds ``ModelClass(config)`` with its parameters on the meta device; ``materialise``
gives chosen parameters real memory and initialises them; ``tie_map`` / ``apply_ties`` keep tied
parameters one object; ``move_buffers`` puts buffers where the weights went.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn

from factory.build.placement import resolve_device, resolve_dtype
from factory.errors import FactoryError


class ModelContractError(FactoryError):
    """A model class breaks the native model contract (e.g. a tied name that does not exist)."""


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
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign,assignment]
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
    ties = tie_map(model)
    names = [n for n, p in model.named_parameters() if p.is_meta and n not in ties]
    materialise(model, names, dtype, resolve_device(device))
    apply_ties(model, ties)
    move_buffers(model, resolve_device(device))
    return model


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
            if buf is not None and buf.device != device:
                module._buffers[name] = buf.to(device)
