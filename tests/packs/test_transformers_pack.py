"""The transformers pack: conformance with transformers' Auto mappings (every pair, no
sampling), byte-identical regeneration, the pinned version, layering under native
entries, turning the pack off, and listing it without importing transformers."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers")

from transformers.models.auto import (
    feature_extraction_auto,
    image_processing_auto,
    modeling_auto,
    processing_auto,
    tokenization_auto,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING, CONFIG_MAPPING_NAMES
from transformers.utils.import_utils import DummyObject

import factory
from factory.packs import transformers as pack
from factory.packs.transformers import TRANSFORMERS_PACK_VERSION
from factory.registry import sources

PACK_DIR = sources.builtin_dir() / "packs" / "transformers"
KEY = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
REGENERATE = "run `factory pack transformers` (or `python -m factory pack transformers`) and commit registry.d/packs/transformers"

COMPONENT_AUTO_CLASSES = {
    "config": "AutoConfig",
    "tokenizer": "AutoTokenizer",
    "image-processor": "AutoImageProcessor",
    "feature-extractor": "AutoFeatureExtractor",
    "processor": "AutoProcessor",
    "video-processor": "AutoVideoProcessor",
}


# --- what transformers' Auto machinery resolves ------------------------------------
def lazy_mapping(table: dict) -> Any:
    """The ``_LazyAutoMapping`` an Auto class uses for a ``*_NAMES`` table."""
    for value in vars(modeling_auto).values():
        if isinstance(value, modeling_auto._LazyAutoMapping) and value._model_mapping is table:
            return value
    raise AssertionError("no lazy mapping for table")


def via_config(mapping: Any, model_type: str) -> Any:
    """What ``mapping[config class of model_type]`` gives (the Auto classes' lookup), or None."""
    if model_type not in CONFIG_MAPPING_NAMES:
        return None
    try:
        value = mapping[CONFIG_MAPPING[model_type]]
    except Exception:
        return None
    return value[0] if isinstance(value, tuple) else value  # a tuple's first class is the default


def backend_choice(classes: dict | None) -> Any:
    """The documented choice for backend-keyed processors: torchvision, else pil."""
    if not classes:
        return None
    return classes.get("torchvision") or classes.get("pil")


def video_mapping() -> Any:
    """transformers' own lazy mapping over the video processor names (the live table lacks
    them without torchvision; the names are read from the sources)."""
    return modeling_auto._LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict(pack.video_processor_names()))


def expected_class(kind: str, name: str, model_type: str) -> Any:
    """The class transformers resolves for (task or component, model_type), or None."""
    if kind == "model":
        return via_config(lazy_mapping(getattr(modeling_auto, name)), model_type)
    if kind == "config":
        return CONFIG_MAPPING[model_type]
    if name == "tokenizer":
        if model_type in CONFIG_MAPPING_NAMES:
            return via_config(tokenization_auto.TOKENIZER_MAPPING, model_type)
        class_name = tokenization_auto.TOKENIZER_MAPPING_NAMES[model_type]
        return tokenization_auto.tokenizer_class_from_name(class_name) if class_name else None
    if name == "feature-extractor":
        return via_config(feature_extraction_auto.FEATURE_EXTRACTOR_MAPPING, model_type)
    if name == "processor":
        return via_config(processing_auto.PROCESSOR_MAPPING, model_type)
    if name == "image-processor":
        return backend_choice(via_config(image_processing_auto.IMAGE_PROCESSOR_MAPPING, model_type))
    if name == "video-processor":
        return backend_choice(via_config(VIDEO_MAPPING, model_type))
    raise AssertionError(kind)


def reachable(table: dict) -> list[str]:
    """The table's model types plus those sharing a config class with one (the Auto classes
    look tables up by config class)."""
    configs = {CONFIG_MAPPING_NAMES[mt] for mt in table if mt in CONFIG_MAPPING_NAMES}
    return sorted(set(table) | {mt for mt, config in CONFIG_MAPPING_NAMES.items() if config in configs})


def cases() -> list[tuple[str, str, str, str]]:
    """(kind, table or component, factory task, model_type) for every entry of every table."""
    out = [("config", "CONFIG_MAPPING_NAMES", "config", mt) for mt in CONFIG_MAPPING_NAMES]
    for table_name, task in sorted(pack.MODEL_TASKS.items()):
        out += [("model", table_name, task, mt) for mt in reachable(getattr(modeling_auto, table_name))]
    for component in sorted(pack.COMPONENT_TABLES):
        out += [("component", component, component, mt) for mt in reachable(pack.component_table(component))]
    return out


VIDEO_MAPPING = video_mapping()
CASES = cases()


@pytest.fixture(scope="module")
def table():
    return factory.load_registry()


def pack_registration(table: Any, task: str, model_type: str) -> Any:
    """The pack's entry for (task, model_type): the winner, or what a native winner shadows."""
    if model_type not in table.architectures:
        return None
    reg = table.registrations.get((task, model_type))
    if reg is None or reg.layer == "pack":
        return reg
    shadowed = [s for s in reg.shadows if s.layer == "pack"]
    assert len(shadowed) <= 1, shadowed
    return shadowed[0] if shadowed else None


def same_class(target: str, cls: Any) -> bool:
    module_name, _, qualname = target.partition(":")
    if getattr(cls, "__name__", None) == f"{qualname}Pil":
        # Pillow installed, torchvision not: transformers hands out the Pillow twin, as the builder does
        return cls.__module__.rpartition(".")[0] == module_name.rpartition(".")[0]
    if isinstance(cls, DummyObject):  # an optional backend is missing here: compare where it is defined
        return (
            qualname == cls.__name__
            and module_name.rsplit(".", 1)[-1] == cls.__module__.rsplit(".", 1)[-1]
            and importlib.util.find_spec(module_name) is not None
        )
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj is cls


@pytest.mark.parametrize("kind,name,task,model_type", CASES, ids=[f"{c[2]}/{c[3]}" for c in CASES])
def test_conformance_with_transformers(kind, name, task, model_type, table):
    expected = expected_class(kind, name, model_type)
    reg = pack_registration(table, task, model_type)
    if expected is None or not KEY.match(model_type):
        assert reg is None, f"transformers resolves nothing for {task} / {model_type}, the pack has {reg.target}"
        return
    assert reg is not None, f"transformers resolves {task} / {model_type} to {expected}, the pack has no entry"
    assert reg.builder == "transformers" and reg.provenance.file.startswith(str(PACK_DIR))
    assert same_class(reg.target, expected), f"{task} / {model_type}: pack {reg.target}, transformers {expected}"
    winner = table.registrations[(task, model_type)]
    if winner.layer == "native":
        assert reg in winner.shadows


def test_only_invalid_keys_are_left_out(table):
    left_out = sorted(mt for mt in CONFIG_MAPPING_NAMES if mt not in table.architectures)
    assert left_out == ["EvollaModel"]  # not a valid architecture key; "evolla" has the same config


# --- the mapping of tables onto tasks ------------------------------------------------
def test_every_model_table_is_mapped_or_excluded():
    tables = set(pack.model_tables())
    assert not set(pack.MODEL_TASKS) & set(pack.EXCLUDED_TABLES)
    assert tables == set(pack.MODEL_TASKS) | set(pack.EXCLUDED_TABLES), (
        f"unreviewed tables: {sorted(tables - set(pack.MODEL_TASKS) - set(pack.EXCLUDED_TABLES))}"
    )


def test_excluded_tables_have_no_auto_class():
    for table_name in pack.EXCLUDED_TABLES:
        mapping = lazy_mapping(getattr(modeling_auto, table_name))
        users = [
            n
            for n, v in vars(modeling_auto).items()
            if isinstance(v, type) and getattr(v, "_model_mapping", None) is mapping
        ]
        assert not users, f"{table_name} is served by {users}: map it to a task"


def test_task_table_names_the_auto_class_of_each_table(table):
    for table_name, task in pack.MODEL_TASKS.items():
        mapping = lazy_mapping(getattr(modeling_auto, table_name))
        autos = sorted(
            n
            for n, v in vars(modeling_auto).items()
            if n.startswith("Auto") and getattr(v, "_model_mapping", None) is mapping
        )
        assert table.tasks[task].auto_class in autos, (task, autos)
    for component, auto_class in COMPONENT_AUTO_CLASSES.items():
        assert table.tasks[component].auto_class == auto_class
        assert table.tasks[component].group == "component"


# --- regeneration ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def contents():
    return pack.read_pack()


@pytest.fixture(scope="module")
def generated(contents):
    return pack.render_pack(contents)


def test_pinned_transformers_version():
    assert transformers.__version__ == TRANSFORMERS_PACK_VERSION, (
        f"installed transformers {transformers.__version__}, the pack was generated from {TRANSFORMERS_PACK_VERSION}: "
        f"install transformers=={TRANSFORMERS_PACK_VERSION} (pip install -e '.[test]'), or upgrade on purpose: "
        f"set TRANSFORMERS_PACK_VERSION in factory/pack.py and the test extra in pyproject.toml, then {REGENERATE}"
    )


def test_checked_in_pack_is_byte_identical(generated):
    on_disk = {p.name: p.read_bytes() for p in PACK_DIR.glob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(generated), f"files differ: {REGENERATE}"
    changed = sorted(name for name, text in generated.items() if on_disk[name] != text.encode("utf-8"))
    assert not changed, f"{len(changed)} file(s) differ, e.g. {changed[:5]}: {REGENERATE}"


def test_every_file_names_its_origin():
    for path in sorted(PACK_DIR.glob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == pack.SCHEMA_LINE
        assert f"transformers=={TRANSFORMERS_PACK_VERSION}" in lines[1] and "Do not edit" in lines[1]
        assert f'generated_from: "transformers=={TRANSFORMERS_PACK_VERSION}"' in lines
        assert "layer: pack" in lines and "builder: transformers" in lines


def test_regenerating_twice_gives_the_same_text(contents, generated):
    assert pack.render_pack(pack.read_pack()) == generated


def test_write_pack_removes_stale_files_and_keeps_others(generated, tmp_path):
    written = pack.write_pack(generated, tmp_path)
    assert [p.name for p in written] == sorted(generated)
    assert pack.changes(generated, tmp_path) == []
    (tmp_path / "stale.yaml").write_text("kind: architecture\n")
    (tmp_path / "NOTES.txt").write_text("not YAML, not ours\n")
    (tmp_path / "bert.yaml").write_text("edited by hand\n")
    found = pack.changes(generated, tmp_path)
    assert any(line.startswith("stale:") and "stale.yaml" in line for line in found)
    assert any(line.startswith("changed:") and "bert.yaml" in line for line in found)
    pack.write_pack(generated, tmp_path)
    assert not (tmp_path / "stale.yaml").exists() and (tmp_path / "NOTES.txt").exists()
    assert (tmp_path / "bert.yaml").read_text() == generated["bert.yaml"]


def test_main_check_and_write(contents, generated, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pack, "read_pack", lambda: contents)
    out = tmp_path / "pack"
    assert pack.main(["transformers", "--out", str(out), "--check"]) == 1
    assert "missing:" in capsys.readouterr().out
    assert pack.main(["transformers", "--out", str(out)]) == 0
    assert f"wrote {len(generated)} architecture file(s)" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.yaml")) == sorted(generated)
    assert pack.main(["transformers", "--out", str(out), "--check"]) == 0
    (out / "vit.yaml").write_text("changed\n")
    assert pack.main(["transformers", "--out", str(out), "--check"]) == 1
    assert "changed:" in capsys.readouterr().out
    assert pack.main(["nonsense"]) == 2


def test_cli_verb_is_wired(contents, tmp_path, monkeypatch):
    from factory.cli import main as cli

    monkeypatch.setattr(pack, "read_pack", lambda: contents)
    assert cli.main(["pack", "transformers", "--out", str(tmp_path), "--check"]) == 1
    assert cli.main(["pack", "transformers", "--out", str(tmp_path)]) == 0
    assert cli.main(["pack", "transformers", "--out", str(tmp_path), "--check"]) == 0


def test_generation_refuses_a_non_reference_environment(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "sentencepiece" else real(name, *a)
    )
    with pytest.raises(pack.PackError, match="sentencepiece installed") as err:
        pack.read_pack()
    assert "reference environment" in err.value.hint
    assert pack.main(["transformers", "--check"]) == 1
    assert "sentencepiece installed" in capsys.readouterr().err


def test_generation_without_transformers_says_what_to_install(monkeypatch):
    for name in [n for n in sys.modules if n == "transformers" or n.startswith("transformers.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(factory.MissingDependencyError, match="needs transformers") as err:
        pack.read_pack()
    assert "pip install 'factory-registry[transformers]'" in err.value.hint


# --- layering and switching the pack off ------------------------------------------------
def test_native_registration_wins_over_the_pack(tmp_path):
    native = tmp_path / "electra.yaml"
    native.write_text(
        "schema_version: 1\nkind: architecture\narchitecture: electra\nsummary: a native electra\n"
        "tasks:\n  model: my_native_pkg.electra:ElectraModel\n",
        encoding="utf-8",
    )
    table = factory.load_registry([native])
    reg = table.resolve("model", "electra")
    assert reg.target == "my_native_pkg.electra:ElectraModel" and reg.layer == "native"
    assert [s.target for s in reg.shadows] == ["transformers.models.electra.modeling_electra:ElectraModel"]
    assert table.resolve("masked-lm", "electra").layer == "pack"  # the rest of the pack still serves
    chain = factory.explain("model", "electra", registry=table)
    assert any(step["step"] == "shadows" and "modeling_electra:ElectraModel" in step["result"] for step in chain)


def test_native_tokenizer_preferred_where_registered(table):
    natives = [r for r in table.find("tokenizer") if r.layer == "native" and r.shadows]
    for reg in natives:
        assert reg.builder == "native" and all(s.layer == "pack" for s in reg.shadows)


@pytest.mark.parametrize("how", ["env", "argument"])
def test_pack_can_be_turned_off(how, monkeypatch):
    if how == "env":
        monkeypatch.setenv("FACTORY_DISABLE_PACKS", "transformers")
        table = factory.load_registry()
    else:
        table = factory.load_registry(packs=False)
    assert "electra" not in table.architectures
    assert all(r.layer != "pack" and not r.shadows for r in table.registrations.values())
    assert not any(f.file.startswith(str(PACK_DIR)) for a in table.architectures.values() for f in a.files)


def test_seed_tasks_list_real_architectures(table):
    for task in (
        "depth-estimation",
        "object-detection",
        "image-segmentation",
        "text-to-waveform",
        "table-question-answering",
        "document-question-answering",
        "visual-question-answering",
        "image-text-to-text",
        "time-series-prediction",
        "mask-generation",
    ):
        assert table.find(task), task


def test_listing_the_pack_imports_neither_transformers_nor_torch():
    code = (
        "import sys, factory; t = factory.load_registry(); "
        "assert t.resolve('depth-estimation', 'dpt').builder == 'transformers'; "
        "bad = [m for m in ('transformers', 'torch') if m in sys.modules]; assert not bad, bad"
    )
    env = {k: v for k, v in os.environ.items() if k != "FACTORY_DISABLE_PACKS"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(Path(__file__).parent)
    )
    assert result.returncode == 0, result.stderr


def test_an_unreviewed_task_table_stops_generation(monkeypatch):
    tables = pack.model_tables()
    monkeypatch.setattr(pack, "model_tables", lambda: {**tables, "MODEL_FOR_TELEPATHY_MAPPING_NAMES": {}})
    with pytest.raises(pack.PackError, match="MODEL_FOR_TELEPATHY_MAPPING_NAMES") as err:
        pack.read_pack()
    assert "EXCLUDED_TABLES" in err.value.hint


def test_video_processor_names_are_checked_against_the_live_table(monkeypatch):
    monkeypatch.setattr(pack, "_literal_table", lambda module, name: {})
    with pytest.raises(pack.PackError, match="video processor table") as err:
        pack.video_processor_names()
    assert "update factory/pack.py" in err.value.hint


# --- component classes: the class names checkpoint files give ------------------------
def by_name(task: str, name: str) -> Any:
    """The class transformers' Auto class takes for a class name a checkpoint file gives."""
    if task == "image-processor":
        return image_processing_auto.get_image_processor_class_from_name(name)
    if task == "feature-extractor":
        return feature_extraction_auto.feature_extractor_class_from_name(name)
    if task == "processor":
        return processing_auto.processor_class_from_name(name)
    if task == "tokenizer":
        return tokenization_auto.tokenizer_class_from_name(name)
    from transformers.models.auto import video_processing_auto

    return video_processing_auto.video_processor_class_from_name(name)


def test_every_pack_component_class_builds_what_transformers_resolves_by_name(table):
    """A file naming class X: the pack entry the declaration leads to is X (or, for image processors without
    torchvision, transformers' Pillow twin of it)."""
    checked = 0
    for (task, name), claim in table.component_classes.items():
        pack_claim = claim if claim.layer == "pack" else next((s for s in claim.shadows if s.layer == "pack"), None)
        if pack_claim is None:
            continue
        reg = pack_registration(table, task, pack_claim.architecture)
        assert reg is not None, (
            f"{task} class {name} -> {pack_claim.architecture}, which registers no {task} in the pack"
        )
        assert reg.attribute == name, f"{task} class {name} -> {pack_claim.architecture}, whose {task} is {reg.target}"
        cls = by_name(task, name)
        if cls is not None and not isinstance(cls, DummyObject) and getattr(cls, "is_dummy", False) is False:
            assert same_class(reg.target, cls), f"{task} class {name}: pack {reg.target}, transformers {cls}"
        checked += 1
    assert checked > 400


def test_component_classes_belong_to_their_defining_model_type(contents):
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    owners: dict[tuple[str, str], str] = {}
    for arch in contents.architectures.values():
        for component, names in arch.component_classes.items():
            assert names == sorted(names)
            for name in names:
                assert (component, name) not in owners, (component, name, owners.get((component, name)), arch.name)
                owners[(component, name)] = arch.name
                package = arch.components[component].split(".")[2]
                if name != "LlamaTokenizer":  # registered only by idefics in transformers 5.23
                    assert model_type_to_module_name(arch.name) == package, (component, name, arch.name)
    generic = {target for a in contents.architectures.values() for target in a.components.values()}
    assert not any(name == "TokenizersBackend" for _, name in owners)  # generic classes belong to no architecture
    assert any(t.endswith(":TokenizersBackend") for t in generic)
