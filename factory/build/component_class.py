"""Which architecture builds a component, read from the component's own files.

``factory.build("image-processor", DIR)`` (and ``feature-extractor``, ``processor``, ``tokenizer``,
``video-processor``) works on a directory holding only the component's files, as transformers'
``AutoImageProcessor`` & co. do: the class name a file gives (``image_processor_type`` in
``preprocessor_config.json``, ``processor_class``, ``tokenizer_class``, ...) is looked up in the table's
``component_classes`` (declared per architecture file, reviewed like every registration), and that
architecture's registration for the component is built. The class name is data: it is looked up, never
imported, and ``auto_map`` is never followed.

The order in which files and keys are read is transformers' (``models/auto/*_auto.py``):

- image-processor: ``image_processor_type`` in the ``image_processor`` section of ``processor_config.json``
  (what transformers 5 saves for a processor), in ``preprocessor_config.json``, then its
  ``feature_extractor_type`` with ``FeatureExtractor`` read as ``ImageProcessor`` (the legacy spelling), then
  ``config.json`` ``image_processor_type``;
- feature-extractor: ``feature_extractor_type`` in the ``feature_extractor`` (or ``audio_processor``) section
  of ``processor_config.json``, in ``preprocessor_config.json``, then ``config.json``;
- processor: ``processor_class`` in ``processor_config.json``, ``preprocessor_config.json``,
  ``video_preprocessor_config.json``, ``tokenizer_config.json``, then ``config.json``;
- tokenizer: ``tokenizer_class`` in ``tokenizer_config.json``, then ``config.json``;
- video-processor: ``video_processor_type`` in ``video_preprocessor_config.json``, the ``video_processor``
  section of ``processor_config.json``, then ``config.json``.

One addition: without config.json, an image processor or feature extractor whose own file names no class
of its kind but a ``processor_class`` is found through the processor's architecture (transformers would
need config.json there).
A trailing ``Fast`` (transformers 4's fast classes) or ``Pil`` (transformers 5's Pillow twins) is dropped
before the lookup. When no file names a declared class, the caller dispatches on ``config.json``'s
``model_type``, as the Auto classes do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.components.files import read_json_object
from factory.errors import ConfigError, PreprocessorFileError, TokenizerFileError
from factory.registry.table import Table, suggest

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class Lookup:
    """Where a checkpoint may name its component class."""

    file: str
    keys: tuple[str, ...]  # the path to the class name inside the file's JSON object
    declared_as: str  # the component task whose component_classes are searched
    legacy: tuple[str, str] | None = None  # (old, new): transformers' renaming of a legacy class name

    @property
    def where(self) -> str:
        return f"{self.file} {'.'.join(self.keys)}"


def _own(task: str, *where: tuple[str, tuple[str, ...]]) -> tuple[Lookup, ...]:
    return tuple(Lookup(file, keys, task) for file, keys in where)


#: component task -> where its class name is read, in order (config.json keys last).
LOOKUPS: dict[str, tuple[Lookup, ...]] = {
    "image-processor": (
        Lookup("processor_config.json", ("image_processor", "image_processor_type"), "image-processor"),
        Lookup("preprocessor_config.json", ("image_processor_type",), "image-processor"),
        Lookup(
            "preprocessor_config.json",
            ("feature_extractor_type",),
            "image-processor",
            legacy=("FeatureExtractor", "ImageProcessor"),
        ),
        Lookup(CONFIG_FILE, ("image_processor_type",), "image-processor"),
    ),
    "feature-extractor": _own(
        "feature-extractor",
        ("processor_config.json", ("feature_extractor", "feature_extractor_type")),
        ("processor_config.json", ("audio_processor", "feature_extractor_type")),
        ("preprocessor_config.json", ("feature_extractor_type",)),
        (CONFIG_FILE, ("feature_extractor_type",)),
    ),
    "processor": _own(
        "processor",
        ("processor_config.json", ("processor_class",)),
        ("preprocessor_config.json", ("processor_class",)),
        ("video_preprocessor_config.json", ("processor_class",)),
        ("tokenizer_config.json", ("processor_class",)),
        (CONFIG_FILE, ("processor_class",)),
    ),
    "tokenizer": _own(
        "tokenizer",
        ("tokenizer_config.json", ("tokenizer_class",)),
        (CONFIG_FILE, ("tokenizer_class",)),
    ),
    "video-processor": _own(
        "video-processor",
        ("video_preprocessor_config.json", ("video_processor_type",)),
        ("processor_config.json", ("video_processor", "video_processor_type")),
        (CONFIG_FILE, ("video_processor_type",)),
    ),
}

#: Without config.json, an image processor or feature extractor whose files name no class of its own kind
#: is found through the processor class its file names (transformers would need config.json).
WITHOUT_CONFIG: dict[str, tuple[Lookup, ...]] = {
    task: (
        Lookup("preprocessor_config.json", ("processor_class",), "processor"),
        Lookup("processor_config.json", ("processor_class",), "processor"),
    )
    for task in ("image-processor", "feature-extractor")
}

#: Suffixes transformers' Auto classes drop from a class name before looking it up.
DROPPED_SUFFIXES = ("Fast", "Pil")


def class_name(written: str, lookup: Lookup) -> str:
    """The name to look up for a class name as a file writes it."""
    name = written
    for suffix in DROPPED_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    if lookup.legacy is not None:
        name = name.replace(*lookup.legacy)
    return name


@dataclass
class Decision:
    """What the component's files say: the architecture (or ``None``: dispatch on config.json) and why."""

    architecture: str | None = None
    steps: list[tuple[str, str, str | None]] = field(default_factory=list)  # (step, result, provenance)
    undeclared: list[str] = field(default_factory=list)  # "file key = 'Name'" found but declared nowhere
    read: list[str] = field(default_factory=list)  # the files that were read

    def no_config_error(self, task: str, directory: Path) -> ConfigError:
        """The error for a directory whose component files name no declared class, without config.json."""
        if self.undeclared:
            said = "; ".join(self.undeclared)
            return ConfigError(
                f"cannot tell which architecture builds this {task}: {said}, which no architecture declares "
                f"(component_classes), and there is no {CONFIG_FILE} to read a model_type from",
                file=directory,
                hint="add config.json with a model_type, or declare the class under `component_classes:` "
                "in an architecture file (see README: 'Components from their own files')",
            )
        looked = ", ".join(sorted({lk.where for lk in LOOKUPS.get(task, ()) if lk.file != CONFIG_FILE}))
        return ConfigError(
            f"no {CONFIG_FILE} and no component file names the {task}'s class "
            f"(looked for {looked or 'nothing'}; read: {', '.join(self.read) or 'none of those files exist'})",
            file=directory,
            hint="pass a directory saved with save_pretrained (preprocessor_config.json, tokenizer_config.json, "
            "...) or one with config.json",
        )


def decide(table: Table, task: str, directory: Path, config: Mapping[str, Any] | None) -> Decision:
    """Find the architecture of ``task``'s component from the files in ``directory`` (``config``: config.json)."""
    decision = Decision()
    cache: dict[str, Mapping[str, Any] | None] = {}
    lookups = LOOKUPS.get(task, ()) + (WITHOUT_CONFIG.get(task, ()) if config is None else ())
    for lookup in lookups:
        data = config if lookup.file == CONFIG_FILE else _read(directory / lookup.file, cache, decision)
        if data is None:
            continue
        value = _dig(data, lookup.keys)
        if value is None:
            continue
        origin = directory / lookup.file
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"{'.'.join(lookup.keys)} must be a class name, found {value!r}",
                file=origin,
                hint='write the component\'s class name, e.g. "ViTImageProcessor", or remove the key',
            )
        name = class_name(value, lookup)
        claim = table.component_class(lookup.declared_as, name)
        shown = value if name == value else f"{value} (read as {name})"
        if claim is None:
            decision.undeclared.append(f"{lookup.where} = {shown!r}")
            close = suggest(name, [n for t, n in table.component_classes if t == lookup.declared_as])
            decision.steps.append(
                (
                    "component class",
                    f"{lookup.where} = {shown!r}: no architecture declares this {lookup.declared_as} class"
                    + (f" (did you mean {', '.join(close)}?)" if close else "")
                    + "; reading on",
                    None,
                )
            )
            continue
        via = "" if lookup.declared_as == task else f" ({lookup.declared_as} class; its {task} is built)"
        decision.steps.append(
            (
                "component class",
                f"{lookup.where} = {shown!r} -> architecture {claim.architecture!r}{via}",
                f"{claim.provenance.file}:{claim.provenance.line}",
            )
        )
        for shadow in claim.shadows:
            decision.steps.append(
                (
                    "shadows",
                    f"{shadow.describe()} ({shadow.layer} layer)",
                    f"{shadow.provenance.file}:{shadow.provenance.line}",
                )
            )
        decision.architecture = claim.architecture
        return decision
    return decision


def _dig(data: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _read(path: Path, cache: dict[str, Mapping[str, Any] | None], decision: Decision) -> Mapping[str, Any] | None:
    """A component file as an untrusted JSON object, or ``None`` when the directory has none."""
    if path.name in cache:
        return cache[path.name]
    cache[path.name] = None
    if not path.exists():
        return None
    error = TokenizerFileError if path.name.startswith("tokenizer") else PreprocessorFileError
    data = read_json_object(path, error=error)
    cache[path.name] = data
    decision.read.append(path.name)
    return data
