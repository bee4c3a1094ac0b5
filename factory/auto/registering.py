"""``register()`` of the Auto classes: the seed page's API onto the ``runtime`` registry source.

``AutoConfig.register("new-model", NewModelConfig)`` registers a config class under an architecture
key; ``AutoModel.register(NewModelConfig, NewModel)`` registers a class for a task of the
architecture that config is registered under. Both take transformers ``PretrainedConfig`` /
``PreTrainedModel`` subclasses, factory :class:`~factory.models.configuration.Config` subclasses and
plain ``torch.nn.Module`` classes alike (all built by the native builder), and check the seed's two
rules (:mod:`factory.build.contract`) before anything is registered. Each entry's provenance is the
``file:line`` of the ``register()`` call.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from factory.build import contract
from factory.errors import RegistrationError
from factory.registry import loader, runtime
from factory.registry.table import Architecture, Provenance, Registration, Table

#: An architecture key, as the architecture schema allows it.
KEY = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def caller() -> Provenance:
    """Where the user's ``register()`` call is: the first frame outside this package."""
    frame = sys._getframe(1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
    file = frame.f_code.co_filename
    if os.path.exists(file):  # not "<stdin>", "<string>" or another name given to exec'd code
        file = os.path.abspath(file)
    return Provenance(file, frame.f_lineno, runtime.SOURCE)


def target_of(obj: Any) -> str:
    """The target string naming ``obj``: ``module:QualifiedName``."""
    return f"{obj.__module__}:{obj.__qualname__}"


def _name(cls: Any) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_class(value: Any, what: str, where: Provenance) -> None:
    if not isinstance(value, type):
        raise RegistrationError(
            f"{what} must be a class, found {type(value).__name__} {value!r}",
            file=where.file,
            line=where.line,
            hint="pass the class itself, not an instance or a name",
        )


def _architecture(name: str, where: Provenance) -> Architecture:
    return Architecture(name=name, summary=f"registered at runtime ({where.file}:{where.line})", files=(where,))


def config_entry(model_type: Any, config_cls: Any, where: Provenance) -> Registration:
    """The registration ``AutoConfig.register(model_type, config_cls)`` makes, after the seed's first rule."""
    if not isinstance(model_type, str) or not KEY.match(model_type):
        raise RegistrationError(
            f"model_type {model_type!r} is not an architecture key",
            file=where.file,
            line=where.line,
            hint="use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit (e.g. 'new-model')",
        )
    _check_class(config_cls, "the config", where)
    declared = contract.model_type_of(config_cls)
    if declared is not None and declared != model_type:
        raise RegistrationError(
            f"the config {_name(config_cls)} has model_type {declared!r}, but is registered as {model_type!r}: "
            "a config's model_type must equal the key it is registered under",
            file=where.file,
            line=where.line,
            hint=f"set {config_cls.__qualname__}.model_type = {model_type!r}"
            + (f", or register it as {declared!r}" if declared else ""),
        )
    return Registration("config", model_type, target_of(config_cls), where)


def register_config(model_type: Any, config_cls: Any, *, exist_ok: bool, where: Provenance) -> None:
    """``AutoConfig.register(model_type, config_cls)``."""
    reg = config_entry(model_type, config_cls, where)
    runtime.add(
        loader.base_registry(), [reg], [_architecture(model_type, where)], {reg.target: config_cls}, exist_ok=exist_ok
    )


def _registered_architecture(table: Table, config_cls: type, where: Provenance) -> str | None:
    """The architecture ``config_cls`` is the config of in ``table``; ``None`` when it is not registered.

    A config that an architecture's entry shadows (a transformers config under a native one) is refused:
    that architecture is built with the winning config.
    """
    source = runtime.current()
    target = target_of(config_cls).replace(":", ".")
    for (task, arch), reg in table.registrations.items():
        if task != "config" or reg.target.replace(":", ".") != target:
            continue
        if reg.provenance.source == runtime.SOURCE and source.lookup(reg.target) is not config_cls:
            continue  # another class of the same name (redefined since)
        return arch
    model_type = contract.model_type_of(config_cls)
    winner = table.registrations.get(("config", model_type)) if model_type else None
    if winner is not None:
        raise RegistrationError(
            f"{_name(config_cls)} is not the config of architecture {model_type!r}: that is built with "
            f"{winner.target} ({winner.provenance.file}:{winner.provenance.line})",
            file=where.file,
            line=where.line,
            hint=f"register the config first: AutoConfig.register({model_type!r}, {config_cls.__qualname__}, "
            "exist_ok=True)",
        )
    return None


def register_class(
    task: str, config_cls: Any, cls: Any, *, exist_ok: bool, where: Provenance, check_config_class: bool
) -> None:
    """``AutoModelFor<Task>.register(config_cls, cls)`` (and the components' ``register``).

    The architecture is the one ``config_cls`` is registered under; a config not registered yet whose
    ``model_type`` names no architecture is registered with it, as transformers accepts it.
    """
    _check_class(config_cls, "the config class", where)
    _check_class(cls, "the registered class", where)
    if check_config_class:
        declared = contract.conflicting_config_class(cls, config_cls)
        if declared is not None:
            raise RegistrationError(
                f"the model {_name(cls)} has config_class {_name(declared)}, but is registered with the config "
                f"{_name(config_cls)}: a model's config_class must equal the config it is registered with",
                file=where.file,
                line=where.line,
                hint=f"set {cls.__qualname__}.config_class = {config_cls.__qualname__}, or register it with "
                f"{declared.__qualname__}",
            )
    table = loader.registry()
    arch = _registered_architecture(table, config_cls, where)
    entries: list[Registration] = []
    if arch is None:
        model_type = contract.model_type_of(config_cls)
        if not model_type:
            raise RegistrationError(
                f"the config {_name(config_cls)} is not registered under an architecture",
                file=where.file,
                line=where.line,
                hint=f"register it first: AutoConfig.register('<model_type>', {config_cls.__qualname__})",
            )
        entries.append(config_entry(model_type, config_cls, where))
        arch = model_type
    entries.append(Registration(task, arch, target_of(cls), where))
    objects = {reg.target: config_cls if reg.task == "config" else cls for reg in entries}
    runtime.add(loader.base_registry(), entries, [_architecture(arch, where)], objects, exist_ok=exist_ok)


__all__ = ["caller", "config_entry", "register_class", "register_config", "target_of"]
