"""Generating the transformers registration pack: ``factory pack transformers``.

Reads the installed transformers' Auto mapping tables (configs, every
``MODEL_FOR_*`` task table, tokenizers, image/video processors, feature
extractors, processors) and writes one architecture YAML per ``model_type``
into ``registry.d/packs/transformers/``. Targets are the real defining module
of each class (``cls.__module__:cls.__qualname__``); transformers is imported
here only, never when the pack is listed or validated.

Choices the tables leave open, made the way transformers' Auto classes make them:

- a table is looked up by config class, as the Auto classes do: a model type
  sharing its config class with another (``gpt-sw3`` and ``gpt2``: GPT2Config)
  gets the row transformers would use for that class (``auto_rows``);
- a task table value that is a tuple (``funnel``: model and base model; ``deit``:
  with and without teacher) registers its first class, the Auto classes' default;
- an image processor dict (``{"torchvision": A, "pil": B}``) registers the
  ``torchvision`` class, the default of a full install (the builder falls back
  to the ``pil`` class when torchvision is missing, like AutoImageProcessor);
  video processors (torchvision only) are read from the sources, since
  transformers blanks them in the live table when torchvision is missing;
- tokenizers are transformers 5's single tokenizers-backed class per model type;
  entries that transformers sets to ``None`` (sentencepiece / g2p-en not
  installed) are left out. Those tables depend on optional packages, so the
  checked-in pack is generated in the reference environment (``pip install -e
  .[test]``: none of ``REFERENCE_ABSENT_BACKENDS`` installed); the generator
  refuses to run elsewhere rather than write a different pack.

Where transformers itself breaks a rule that ``factory lint --import`` checks (a
config whose ``model_type`` is another key: F002; a class configured by another
config class: F003; one class serving several model types: F005), the file says so
(``lint:`` with the reason, ``shares_targets_with``). Output is deterministic:
sorted, stable text, no timestamps; stale files are removed. ``--check`` exits 1
when regenerating would change anything.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.errors import FactoryError, MissingDependencyError

#: transformers version the checked-in pack was generated from.
TRANSFORMERS_PACK_VERSION = "5.23.0"
PACK_NAME = "transformers"
SCHEMA_LINE = "# yaml-language-server: $schema=../../../schemas/architecture.schema.json"

#: ``MODEL_FOR_*`` table (in ``transformers.models.auto.modeling_auto``) -> factory task.
#: Every table of the module must appear here or in EXCLUDED_TABLES (a test checks it).
MODEL_TASKS: dict[str, str] = {
    # the seed page
    "MODEL_MAPPING_NAMES": "model",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": "pretraining",
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES": "causal-lm",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "masked-lm",
    "MODEL_FOR_MASK_GENERATION_MAPPING_NAMES": "mask-generation",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES": "seq2seq-lm",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "sequence-classification",
    "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES": "multiple-choice",
    "MODEL_FOR_NEXT_SENTENCE_PREDICTION_MAPPING_NAMES": "next-sentence-prediction",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "token-classification",
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES": "question-answering",
    "MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES": "text-encoding",
    "MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES": "depth-estimation",
    "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES": "image-classification",
    "MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES": "video-classification",
    "MODEL_FOR_MASKED_IMAGE_MODELING_MAPPING_NAMES": "masked-image-modeling",
    "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES": "object-detection",
    "MODEL_FOR_IMAGE_SEGMENTATION_MAPPING_NAMES": "image-segmentation",
    "MODEL_FOR_IMAGE_TO_IMAGE_MAPPING_NAMES": "image-to-image",
    "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES": "semantic-segmentation",
    "MODEL_FOR_INSTANCE_SEGMENTATION_MAPPING_NAMES": "instance-segmentation",
    "MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES": "universal-segmentation",
    "MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES": "zero-shot-image-classification",
    "MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES": "zero-shot-object-detection",
    "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES": "audio-classification",
    "MODEL_FOR_AUDIO_FRAME_CLASSIFICATION_MAPPING_NAMES": "audio-frame-classification",
    "MODEL_FOR_CTC_MAPPING_NAMES": "ctc",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES": "speech-seq2seq",
    "MODEL_FOR_AUDIO_XVECTOR_MAPPING_NAMES": "audio-xvector",
    "MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES": "text-to-spectrogram",
    "MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES": "text-to-waveform",
    "MODEL_FOR_TABLE_QUESTION_ANSWERING_MAPPING_NAMES": "table-question-answering",
    "MODEL_FOR_DOCUMENT_QUESTION_ANSWERING_MAPPING_NAMES": "document-question-answering",
    "MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES": "visual-question-answering",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES": "image-text-to-text",
    "MODEL_FOR_TIME_SERIES_PREDICTION_MAPPING_NAMES": "time-series-prediction",
    # beyond the seed page (tasks.yaml section "beyond the seed page (from transformers)")
    "MODEL_FOR_BACKBONE_MAPPING_NAMES": "backbone",
    "MODEL_FOR_KEYPOINT_DETECTION_MAPPING_NAMES": "keypoint-detection",
    "MODEL_FOR_KEYPOINT_MATCHING_MAPPING_NAMES": "keypoint-matching",
    "MODEL_FOR_POSE_ESTIMATION_MAPPING_NAMES": "pose-estimation",
    "MODEL_FOR_IMAGE_MATTING_MAPPING_NAMES": "image-matting",
    "MODEL_FOR_NORMAL_ESTIMATION_MAPPING_NAMES": "normal-estimation",
    "MODEL_FOR_POINTMAP_ESTIMATION_MAPPING_NAMES": "pointmap-estimation",
    "MODEL_FOR_TEXT_RECOGNITION_MAPPING_NAMES": "text-recognition",
    "MODEL_FOR_TABLE_RECOGNITION_MAPPING_NAMES": "table-recognition",
    "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES": "multimodal-lm",
    "MODEL_FOR_RNNT_MAPPING_NAMES": "rnnt",
    "MODEL_FOR_TDT_MAPPING_NAMES": "tdt",
    "MODEL_FOR_AUDIO_TOKENIZATION_NAMES": "audio-tokenization",
    "MODEL_FOR_DECISION_MAPPING_NAMES": "decision",
}

#: Tables no Auto class serves: there is no transformers class choice to mirror
#: and the task table requires an ``auto_class``. Reviewed, with the reason.
EXCLUDED_TABLES: dict[str, str] = {
    "MODEL_FOR_IMAGE_MAPPING_NAMES": "no Auto class; vision sub-models of AutoModel architectures",
    "MODEL_FOR_CAUSAL_IMAGE_MODELING_MAPPING_NAMES": "no Auto class (imagegpt only)",
    "MODEL_FOR_RETRIEVAL_MAPPING_NAMES": "no Auto class (colpali-style retrieval)",
    "MODEL_FOR_TIME_SERIES_CLASSIFICATION_MAPPING_NAMES": "no Auto class",
    "MODEL_FOR_TIME_SERIES_REGRESSION_MAPPING_NAMES": "no Auto class",
}

#: component table: (module under transformers.models.auto, table name) -> component task.
COMPONENT_TABLES: dict[str, tuple[str, str]] = {
    "tokenizer": ("tokenization_auto", "TOKENIZER_MAPPING_NAMES"),
    "image-processor": ("image_processing_auto", "IMAGE_PROCESSOR_MAPPING_NAMES"),
    "feature-extractor": ("feature_extraction_auto", "FEATURE_EXTRACTOR_MAPPING_NAMES"),
    "processor": ("processing_auto", "PROCESSOR_MAPPING_NAMES"),
    "video-processor": ("video_processing_auto", "VIDEO_PROCESSOR_MAPPING_NAMES"),
}

#: Backend preference for processor tables keyed by backend.
BACKEND_ORDER = ("torchvision", "pil")

#: Optional packages that change transformers' tokenizer table when installed.
REFERENCE_ABSENT_BACKENDS = ("sentencepiece", "mistral_common", "g2p_en")

#: Lint codes of `factory validate --import` suppressed, with a reason, where transformers
#: itself deviates from the rule (see factory.review.lint.check_imports).
LINT_CONFIG_MODEL_TYPE = "F002"
LINT_CONFIG_CLASS = "F003"

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]*$")
_YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}


class PackError(FactoryError):
    """The pack cannot be generated in this environment."""


#: Dispatch quirks transformers hard-codes in Python, written out as declarative rules.
#: model_type -> [(condition, dispatch_as, reason)]; the reason cites where transformers does it.
DISPATCH_RULES: dict[str, list[tuple[dict[str, str], str, str]]] = {
    "mistral": [
        (
            {"has_key": "layer_types"},
            "ministral",
            "transformers' AutoConfig (models/auto/configuration_auto.py) treats a mistral config that "
            "carries layer_types as ministral, for alternating attention",
        )
    ],
}


@dataclass
class ArchitectureEntry:
    """Everything the pack says about one model_type."""

    name: str
    summary: str
    config: str | None = None
    tasks: dict[str, str] = field(default_factory=dict)
    components: dict[str, str] = field(default_factory=dict)
    component_classes: dict[str, list[str]] = field(default_factory=dict)  # component -> class names it owns
    lint: dict[str, dict[str, str]] = field(default_factory=dict)  # "config" | task -> {code: reason}
    shares_targets_with: list[str] = field(default_factory=list)
    tp: dict[str, str] = field(default_factory=dict)  # transformers' tensor-parallel plan: path -> style
    divisible: list[str] = field(default_factory=list)  # config keys that must divide by tp


@dataclass
class PackContents:
    version: str
    architectures: dict[str, ArchitectureEntry]
    skipped: list[str]  # (table, model_type): why, for the report


# --- reading transformers -------------------------------------------------------
def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(
            "generating the transformers pack needs transformers",
            hint=f"pip install 'factory-registry[transformers]' "
            f"(the pack pins transformers=={TRANSFORMERS_PACK_VERSION})",
        ) from None
    return transformers


def _check_environment() -> None:
    from importlib.util import find_spec

    present = [name for name in REFERENCE_ABSENT_BACKENDS if find_spec(name) is not None]
    if present:
        raise PackError(
            f"{', '.join(present)} installed: transformers' tokenizer table differs with "
            f"{'it' if len(present) == 1 else 'them'}, so this environment would generate a different pack",
            hint="regenerate in the reference environment (`make venv`, i.e. pip install -e '.[test]'), "
            f"where none of {', '.join(REFERENCE_ABSENT_BACKENDS)} is installed",
        )


def _is_placeholder(obj: Any) -> bool:
    from transformers.utils.import_utils import DummyObject

    return isinstance(obj, DummyObject)


class _Resolver:
    """Class names of the tables -> defining ``module:qualname``, as the Auto classes find them."""

    def __init__(self) -> None:
        self.transformers = _transformers()
        from transformers.models.auto.configuration_auto import model_type_to_module_name

        self._module_name = model_type_to_module_name
        self.classes: dict[str, Any] = {}  # target -> class (None for placeholders)

    def module_name(self, model_type: str) -> str:
        """The package under ``transformers.models`` of ``model_type``."""
        name: str = self._module_name(model_type)
        return name

    def _package(self, model_type: str) -> Any:
        try:
            return importlib.import_module(f"transformers.models.{self._module_name(model_type)}")
        except ImportError:
            return None

    def resolve(self, model_type: str, name: str) -> str | None:
        """Like ``getattribute_from_module``: the model type's package first, then the top level."""
        for lazy in (self._package(model_type), self.transformers):
            if lazy is None:
                continue
            c2m = getattr(lazy, "_class_to_module", {})
            try:
                obj = getattr(lazy, name)
            except Exception:  # a missing optional backend breaking the import
                obj = None
                if name not in c2m:
                    continue
            # (the lazy module silently swaps in the Pil class when torchvision is missing: not that one)
            if obj is not None and not _is_placeholder(obj) and getattr(obj, "__name__", None) != f"{name}Pil":
                if not inspect.isclass(obj):
                    continue
                target = f"{obj.__module__}:{obj.__qualname__}"
                self.classes[target] = obj
                return target
            if name in c2m:  # exists, but its backend is not installed: where it is defined
                target = f"{lazy.__name__}.{c2m[name]}:{name}"
                self.classes[target] = None
                return target
        return None


def _pick(value: Any) -> str | None:
    """One class name from a table value (tuple: the default first; dict: by backend)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return value[0] if value else None
    if isinstance(value, dict):
        for backend in BACKEND_ORDER:
            if value.get(backend):
                return str(value[backend])
        return next((value[k] for k in sorted(value) if value[k]), None)
    return None


def _literal_table(module: Any, name: str) -> dict[str, Any]:
    """A table as written in a module's source (before transformers blanks unavailable backends)."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            call = node.value
            if isinstance(call, ast.Call) and call.args:
                return dict(ast.literal_eval(call.args[0]))
    return {}


def video_processor_names() -> dict[str, Any]:
    """VIDEO_PROCESSOR_MAPPING_NAMES with its class names even without torchvision.

    transformers replaces the torchvision class by ``None`` in the live table
    when torchvision is missing; the names are read from the sources instead.
    """
    from transformers.models.auto import auto_mappings, video_processing_auto

    table = _literal_table(auto_mappings, "VIDEO_PROCESSOR_MAPPING_NAMES")
    table.update(_literal_table(video_processing_auto, "MISSING_VIDEO_PROCESSOR_MAPPING_NAMES"))
    live = video_processing_auto.VIDEO_PROCESSOR_MAPPING_NAMES  # type: ignore[attr-defined]
    if set(table) != set(live):
        raise PackError(
            "video processor table read from the transformers sources does not match the live table "
            f"(only in sources: {sorted(set(table) - set(live))}; only live: {sorted(set(live) - set(table))})",
            hint="this transformers version changed how it builds the table: update factory/pack.py",
        )
    return table


def component_table(component: str) -> dict[str, Any]:
    """A component table of the installed transformers, keyed by model type."""
    if component == "video-processor":
        return video_processor_names()
    module_name, table = COMPONENT_TABLES[component]
    module = importlib.import_module(f"transformers.models.auto.{module_name}")
    return dict(getattr(module, table))


def model_tables() -> dict[str, dict[str, Any]]:
    """Every ``*_NAMES`` table of ``modeling_auto``, by table name."""
    from transformers.models.auto import modeling_auto

    return {
        name: dict(value)
        for name, value in vars(modeling_auto).items()
        if name.startswith("MODEL") and name.endswith("_NAMES") and isinstance(value, dict)
    }


def read_pack() -> PackContents:
    """Read the installed transformers' tables into pack contents (imports transformers)."""
    transformers = _transformers()
    _check_environment()
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES  # type: ignore[attr-defined]

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        return _read(transformers, CONFIG_MAPPING_NAMES)
    finally:
        transformers.logging.set_verbosity(verbosity)


def _read(transformers: Any, config_names: dict[str, str]) -> PackContents:
    resolver = _Resolver()
    archs: dict[str, ArchitectureEntry] = {}
    skipped: list[str] = []

    def entry(model_type: str, table: str) -> ArchitectureEntry | None:
        if not _KEY.match(model_type):
            skipped.append(f"{table} / {model_type}: not a valid architecture key (schema pattern {_KEY.pattern})")
            return None
        return archs.setdefault(model_type, ArchitectureEntry(model_type, ""))

    config_classes: dict[str, Any] = {}
    for model_type, name in config_names.items():
        arch = entry(model_type, "CONFIG_MAPPING_NAMES")
        target = resolver.resolve(model_type, name) if arch else None
        if arch is None:
            continue
        if target is None:
            skipped.append(f"CONFIG_MAPPING_NAMES / {model_type}: {name} not found in transformers")
            continue
        arch.config = target
        cls = resolver.classes[target]
        config_classes[model_type] = cls
        arch.summary = f"{name.removesuffix('Config')} (from transformers)"
        declared = getattr(cls, "model_type", None) if cls is not None else None
        if isinstance(declared, str) and declared and declared != model_type:
            arch.lint["config"] = {
                LINT_CONFIG_MODEL_TYPE: (
                    f"transformers {transformers.__version__} maps model_type {model_type!r} to {name}, "
                    f"whose model_type is {declared!r}"
                )
            }

    tables = model_tables()
    unknown = sorted(set(tables) - set(MODEL_TASKS) - set(EXCLUDED_TABLES))
    if unknown:
        raise PackError(
            f"transformers {transformers.__version__} has task tables factory/packs/transformers.py does not map: "
            f"{', '.join(unknown)}",
            hint="add each to MODEL_TASKS (and its task to registry.d/tasks.yaml) or to EXCLUDED_TABLES with a reason",
        )
    for table_name in sorted(MODEL_TASKS):
        task = MODEL_TASKS[table_name]
        for model_type in tables.get(table_name, {}):
            if model_type not in config_names:
                skipped.append(f"{table_name} / {model_type}: no config class, the Auto class cannot reach it")
        for model_type, (row, value) in auto_rows(tables.get(table_name, {}), config_names).items():
            if model_type not in config_names:
                continue
            arch = entry(model_type, table_name)
            picked = _pick(value)
            target = resolver.resolve(row, picked) if arch and picked else None
            if arch is None:
                continue
            if target is None:
                skipped.append(f"{table_name} / {model_type}: {picked} not found in transformers")
                continue
            arch.tasks[task] = target
            reason = _config_class_mismatch(
                resolver.classes[target], config_classes.get(model_type), model_type, transformers.__version__
            )
            if reason:
                arch.lint[task] = {LINT_CONFIG_CLASS: reason}

    for model_type, arch in archs.items():
        arch.tp, arch.divisible = tp_plan(arch, config_classes.get(model_type), resolver.classes, skipped)

    for component in sorted(COMPONENT_TABLES):
        for model_type, (row, value) in auto_rows(component_table(component), config_names).items():
            picked = _pick(value)
            if picked is None:
                skipped.append(f"{component} / {model_type}: transformers lists no class in this environment")
                continue
            arch = entry(model_type, component)
            target = resolver.resolve(row, picked) if arch else None
            if arch is None:
                continue
            if target is None:
                skipped.append(f"{component} / {model_type}: {picked} not found in transformers")
                continue
            arch.components[component] = target

    for arch in archs.values():
        if not arch.summary:
            arch.summary = f"{arch.name}: components only, no config of its own (from transformers)"
    _declare_shared_targets(archs)
    _declare_component_classes(archs, resolver)
    return PackContents(transformers.__version__, dict(sorted(archs.items())), skipped)


def _declare_shared_targets(archs: dict[str, ArchitectureEntry]) -> None:
    """transformers knowingly serves several model types with one class: say so (lint F005)."""
    users: dict[str, set[str]] = {}
    for arch in archs.values():
        for target in [arch.config, *arch.tasks.values()]:
            if target:
                users.setdefault(target, set()).add(arch.name)
    for arch in archs.values():
        shared = set().union(*(users.get(t, set()) for t in [arch.config, *arch.tasks.values()] if t))
        arch.shares_targets_with = sorted(shared - {arch.name})


#: Key projections whose colwise split shards the key/value heads (transformers' ``get_kv_heads_per_rank``).
KEY_PROJECTIONS = ("k_proj", "qkv_proj", "query_key_value")


def tp_plan(
    arch: ArchitectureEntry, config_cls: Any, classes: dict[str, Any], skipped: list[str]
) -> tuple[dict[str, str], list[str]]:
    """transformers' tensor-parallel plan of one architecture, as the pack writes it, and its divisibility keys.

    The plan is the config class's ``base_model_tp_plan`` (paths relative to the base model, which
    the builder prefixes with ``base_model_prefix`` in a head model), preceded by the
    ``embed_tokens: embedding_rowwise`` rule transformers adds to every base model with an
    ``embed_tokens`` embedding (``distributed/mixin.py``), then every task class's own ``_tp_plan``
    (``lm_head``, ...; relative to that class). Plans that transformers assembles from sub-models
    at construction (multimodal models) are not in the config classes and not extracted. A key
    projection split colwise shards the heads: ``num_attention_heads`` and ``num_key_value_heads``
    (where the config has them) must then divide by tp.
    """
    base = dict(getattr(config_cls, "base_model_tp_plan", None) or {}) if config_cls is not None else {}
    plan: dict[str, str] = {}
    if base and "embed_tokens" not in base:
        plan["embed_tokens"] = "embedding_rowwise"
    plan.update(base)
    for task in sorted(arch.tasks):
        cls = classes.get(arch.tasks[task])
        for key, style in (getattr(cls, "_tp_plan", None) or {}).items():
            if plan.get(key, style) != style:
                skipped.append(
                    f"tp plan / {arch.name}: {task} says {key}: {style}, another task {plan[key]}; kept {plan[key]}"
                )
                continue
            plan[key] = style
    if not plan:
        return {}, []
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else set()
    shards_heads = any(k.rsplit(".", 1)[-1] in KEY_PROJECTIONS and v == "colwise" for k, v in plan.items())
    divisible: list[str] = [k for k in ("num_attention_heads", "num_key_value_heads") if shards_heads and k in fields]
    return plan, divisible


def _declare_component_classes(archs: dict[str, ArchitectureEntry], resolver: _Resolver) -> None:
    """Which architecture a component class name in a checkpoint's own file dispatches to.

    ``AutoImageProcessor`` and friends turn ``image_processor_type`` (``tokenizer_class``, ...) into a class by
    name, wherever the class is defined; the pack writes that down as ``component_classes:``. A class belongs
    to the model type of the package that defines it (``transformers.models.<package>``) among those that
    register it, else to the first such model type in sorted order. Generic classes defined outside
    ``transformers.models`` (``TokenizersBackend``) belong to no architecture: for them factory reads
    config.json, as transformers does for the model type's class.
    """
    users: dict[tuple[str, str], list[str]] = {}
    for arch in archs.values():
        for component, target in arch.components.items():
            users.setdefault((component, target), []).append(arch.name)
    for (component, target), names in sorted(users.items()):
        module, _, qualname = target.partition(":")
        parts = module.split(".")
        if len(parts) < 3 or parts[:2] != ["transformers", "models"] or "." in qualname:
            continue
        package = parts[2]
        home = [n for n in sorted(names) if resolver.module_name(n) == package]
        owner = (home or sorted(names))[0]
        archs[owner].component_classes.setdefault(component, []).append(qualname)
    for arch in archs.values():
        for names in arch.component_classes.values():
            names.sort()


def auto_rows(table: dict[str, Any], config_names: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """model_type -> (the table row the Auto classes use for it, that row's value).

    The Auto classes look a table up by config class, not by model_type: for model
    types sharing a config class (``gpt-sw3`` and ``gpt2`` share GPT2Config) that is
    the row of the model type transformers registered last for the class, else the
    first row of one sharing it (``_LazyAutoMapping.__getitem__``). Rows of model
    types without a config class are reached by class name only (tokenizers).
    """
    reverse = {config: model_type for model_type, config in config_names.items()}
    rows: dict[str, tuple[str, Any]] = {}
    for model_type, config in config_names.items():
        candidates = [reverse[config]] + [mt for mt, c in config_names.items() if c == config]
        row = next((mt for mt in candidates if mt in table), None)
        if row is not None:
            rows[model_type] = (row, table[row])
    for model_type, value in table.items():
        if model_type not in config_names:
            rows[model_type] = (model_type, value)
    return rows


def _config_class_mismatch(cls: Any, config_cls: Any, model_type: str, version: str) -> str | None:
    """Why transformers registers a class whose config_class is not the architecture's config."""
    if cls is None or config_cls is None:
        return None
    declared = getattr(cls, "config_class", None)
    if not isinstance(declared, type) or declared is config_cls or issubclass(config_cls, declared):
        return None
    return (
        f"transformers {version} maps {model_type!r} to {cls.__qualname__}, whose config_class is "
        f"{declared.__qualname__}; the Auto class passes it the {config_cls.__qualname__} instance"
    )


# --- writing --------------------------------------------------------------------
def _scalar(text: str) -> str:
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _entry_text(key: str, target: str, lint: dict[str, str] | None, indent: str) -> list[str]:
    if not lint:
        return [f"{indent}{_scalar(key)}: {target}"]
    lines = [f"{indent}{_scalar(key)}:", f"{indent}  target: {target}", f"{indent}  lint:"]
    lines += [f"{indent}    {code}: {_scalar(reason)}" for code, reason in sorted(lint.items())]
    return lines


def render(arch: ArchitectureEntry, version: str) -> str:
    """The YAML text of one architecture file (stable: fixed key order, sorted entries)."""
    lines = [
        SCHEMA_LINE,
        f"# Generated by `factory pack transformers` from transformers=={version}. Do not edit by hand; regenerate.",
        "schema_version: 1",
        "kind: architecture",
        f"architecture: {_scalar(arch.name)}",
        f"summary: {_scalar(arch.summary)}",
        "layer: pack",
        "builder: transformers",
        f"generated_from: {_scalar(f'transformers=={version}')}",
    ]
    if arch.shares_targets_with:
        lines.append(f"shares_targets_with: [{', '.join(_scalar(a) for a in arch.shares_targets_with)}]")
    if arch.config:
        lines += _entry_text("config", arch.config, arch.lint.get("config"), "")
    if arch.tasks:
        lines.append("tasks:")
        for task in sorted(arch.tasks):
            lines += _entry_text(task, arch.tasks[task], arch.lint.get(task), "  ")
    else:
        lines.append("tasks: {}")
    if arch.components:
        lines.append("components:")
        for component in sorted(arch.components):
            lines += _entry_text(component, arch.components[component], arch.lint.get(component), "  ")
    if arch.component_classes:
        lines.append("component_classes:")
        for component in sorted(arch.component_classes):
            names = ", ".join(arch.component_classes[component])
            lines.append(f"  {component}: [{names}]")
    rules = DISPATCH_RULES.get(arch.name, [])
    if rules:
        lines.append("rules:")
        for when, dispatch_as, reason in rules:
            condition = ", ".join(f"{key}: {_scalar(value)}" for key, value in when.items())
            lines += [
                f"  - when: {{{condition}}}",
                f"    dispatch_as: {_scalar(dispatch_as)}",
                f"    reason: {_scalar(reason)}",
            ]
    if arch.tp:
        lines += ["parallel:", "  tp:"]
        lines += [f"    {_scalar(path)}: {_scalar(style)}" for path, style in arch.tp.items()]
        if arch.divisible:
            lines.append("  divisible:")
            lines += [f"    {key}: tp" for key in arch.divisible]
    return "\n".join(lines) + "\n"


def render_pack(contents: PackContents) -> dict[str, str]:
    """File name -> text for every architecture."""
    return {f"{name}.yaml": render(arch, contents.version) for name, arch in contents.architectures.items()}


def default_out_dir() -> Path:
    from factory.registry.sources import builtin_dir

    return builtin_dir() / "packs" / PACK_NAME


def _existing(out_dir: Path) -> dict[str, Path]:
    if not out_dir.is_dir():
        return {}
    return {p.name: p for p in sorted(out_dir.iterdir()) if p.suffix in (".yaml", ".yml") and p.is_file()}


def write_pack(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write ``files`` into ``out_dir`` (unchanged files untouched), removing stale YAML files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, path in _existing(out_dir).items():
        if name not in files:
            path.unlink()
    written = []
    for name in sorted(files):
        path = out_dir / name
        data = files[name].encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        written.append(path)
    return written


def changes(files: dict[str, str], out_dir: Path) -> list[str]:
    """What writing ``files`` into ``out_dir`` would change, one line per file."""
    existing = _existing(out_dir)
    out = [f"stale: {existing[n]}" for n in sorted(set(existing) - set(files))]
    for name in sorted(files):
        path = out_dir / name
        if name not in existing:
            out.append(f"missing: {path}")
        elif path.read_bytes() != files[name].encode("utf-8"):
            diff = difflib.unified_diff(
                path.read_text(encoding="utf-8").splitlines(),
                files[name].splitlines(),
                str(path),
                f"{path} (regenerated)",
                lineterm="",
                n=0,
            )
            out.append(f"changed: {path}\n" + "\n".join(list(diff)[2:12]))
    return out


def generate_transformers_pack(out_dir: Path) -> list[Path]:
    """Generate the pack into ``out_dir``; the paths of every file it holds afterwards."""
    return write_pack(render_pack(read_pack()), Path(out_dir))


def main(argv: Sequence[str] | None = None) -> int:
    """``factory pack transformers [--out DIR] [--check]``; exit 0 ok, 1 check failed, 2 usage."""
    parser = argparse.ArgumentParser(prog="factory pack", description="generate a registration pack")
    parser.add_argument("name", choices=(PACK_NAME,))
    parser.add_argument("--out", type=Path, help="pack directory (default: the built-in registry.d/packs/transformers)")
    parser.add_argument("--check", action="store_true", help="exit 1 if regenerating would change anything")
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    out_dir = args.out or default_out_dir()
    try:
        contents = read_pack()
    except FactoryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    files = render_pack(contents)
    if contents.version != TRANSFORMERS_PACK_VERSION:
        print(
            f"warning: installed transformers {contents.version} differs from the pinned "
            f"TRANSFORMERS_PACK_VERSION {TRANSFORMERS_PACK_VERSION} (factory/pack.py): update the pin "
            "and the test extra together with the regenerated pack",
            file=sys.stderr,
        )
    if args.check:
        diffs = changes(files, out_dir)
        for line in diffs:
            print(line)
        if diffs:
            print(
                f"{len(diffs)} file(s) differ from transformers {contents.version}: "
                "run `factory pack transformers` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{out_dir}: {len(files)} file(s) up to date with transformers {contents.version}", file=sys.stderr)
        return 0
    write_pack(files, out_dir)
    n_regs = sum(len(a.tasks) + len(a.components) + bool(a.config) for a in contents.architectures.values())
    print(
        f"wrote {len(files)} architecture file(s), {n_regs} registration(s) to {out_dir} "
        f"(transformers {contents.version}; {len(contents.skipped)} table entr(y/ies) skipped)",
        file=sys.stderr,
    )
    for line in contents.skipped:
        print(f"  skipped {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
