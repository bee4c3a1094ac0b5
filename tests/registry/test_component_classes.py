"""``component_classes:``: class names a checkpoint's own files give, declared per architecture, merged like
registrations (conflicts, overrides, the pack yielding to native), checked against the registrations, cached,
pickled and part of the digest."""

from __future__ import annotations

import pickle

import pytest

from factory.errors import ConflictError, OverrideError, RegistryError, SchemaError, UnknownTaskError
from factory.registry import cache, schemas
from factory.registry.table import ComponentClass

VIT = """\
schema_version: 1
kind: architecture
architecture: vit
tasks: {}
components:
  image-processor: pkg.vision:ViTImageProcessor
  processor: pkg.vision:ViTProcessor
component_classes:
  image-processor: [ViTImageProcessor, ViTFeatureExtractor]
  processor: [ViTProcessor]
"""

PACK_VIT = """\
schema_version: 1
kind: architecture
architecture: vit
layer: pack
builder: transformers
tasks: {}
components:
  image-processor: transformers.vit:ViTImageProcessor
component_classes:
  image-processor: [ViTImageProcessor]
"""

DEIT = """\
schema_version: 1
kind: architecture
architecture: deit
tasks: {}
components:
  image-processor: pkg.vision:DeiTImageProcessor
component_classes:
  image-processor: [CLAIM]
"""


def problems(reg_env, *paths):
    result = reg_env.collect(*paths)
    assert result.table is None and result.errors
    return result.errors


def test_declarations_become_table_entries(reg_env):
    path = reg_env.write("models/vit.yaml", VIT)
    table = reg_env.load()
    claim = table.component_class("image-processor", "ViTFeatureExtractor")
    assert isinstance(claim, ComponentClass)
    assert (claim.architecture, claim.layer, claim.provenance.file, claim.provenance.line) == (
        "vit",
        "native",
        str(path),
        9,
    )
    assert claim.describe() == "image-processor class ViTFeatureExtractor -> vit"
    assert sorted(table.component_classes) == [
        ("image-processor", "ViTFeatureExtractor"),
        ("image-processor", "ViTImageProcessor"),
        ("processor", "ViTProcessor"),
    ]
    assert table.component_class("image-processor", "CLIPImageProcessor") is None
    assert [c.name for c in table.architecture("vit").component_classes] == [
        "ViTImageProcessor",
        "ViTFeatureExtractor",
        "ViTProcessor",
    ]


def test_the_pack_yields_to_native(reg_env):
    reg_env.write("models/vit.yaml", VIT)
    pack = reg_env.write("packs/transformers/vit.yaml", PACK_VIT)
    claim = reg_env.load().component_class("image-processor", "ViTImageProcessor")
    assert claim.layer == "native"
    [shadow] = claim.shadows
    assert (shadow.layer, shadow.provenance.file) == ("pack", str(pack))


def test_one_class_name_two_architectures_is_a_conflict(reg_env):
    vit = reg_env.write("models/vit.yaml", VIT)
    deit = reg_env.write("models/deit.yaml", DEIT.replace("CLAIM", "ViTImageProcessor"))
    [err] = problems(reg_env)  # files are read in sorted order: deit.yaml first
    assert isinstance(err, ConflictError)
    assert "component class 'image-processor / ViTImageProcessor' is defined twice" in err.message
    assert (err.file, err.line) == (str(vit), 9) and f"{deit}:8" in err.message


def test_a_later_source_takes_a_class_over_with_a_reason(reg_env):
    reg_env.write("models/vit.yaml", VIT)
    extra = reg_env.tmp / "extra"
    reg_env.write(
        "deit.yaml", DEIT.replace("CLAIM", "{name: ViTImageProcessor, override: our DeiT files say ViT}"), root=extra
    )
    claim = reg_env.load(extra).component_class("image-processor", "ViTImageProcessor")
    assert (claim.architecture, claim.override) == ("deit", "our DeiT files say ViT")
    assert [s.architecture for s in claim.shadows] == ["vit"]


def test_a_stale_component_class_override(reg_env):
    extra = reg_env.tmp / "extra"
    reg_env.write("deit.yaml", DEIT.replace("CLAIM", "{name: NoSuchProcessor, override: why}"), root=extra)
    [err] = problems(reg_env, extra)
    assert isinstance(err, OverrideError) and "overrides nothing" in err.message


def test_a_class_of_a_component_the_architecture_does_not_register(reg_env):
    path = reg_env.write("models/vit.yaml", VIT.replace("  processor: pkg.vision:ViTProcessor\n", ""))
    [err] = problems(reg_env)
    assert (
        "component class ViTProcessor is declared for architecture 'vit', which registers no processor" in err.message
    )
    assert (err.file, err.line) == (str(path), 9)


@pytest.mark.parametrize(
    "section, error, message",
    [
        ("image-procesor: [X]", UnknownTaskError, "unknown task 'image-procesor'"),
        ("causal-lm: [X]", RegistryError, "'causal-lm' is not a component built from its own files"),
        ("config: [X]", RegistryError, "'config' is not a component"),
    ],
)
def test_only_component_tasks(reg_env, section, error, message):
    text = VIT.replace("  processor: [ViTProcessor]\n", f"  {section}\n")
    reg_env.write("models/vit.yaml", text)
    errors = problems(reg_env)
    assert any(isinstance(e, error) and message in e.message for e in errors), errors


@pytest.mark.parametrize(
    "section",
    [
        "image-processor: ViTImageProcessor",
        "image-processor: []",
        "image-processor: [vit image processor]",
        "image-processor: [{name: X, why: y}]",
    ],
)
def test_the_schema_checks_declarations(tmp_path, section):
    from factory.registry.yamlio import load_document

    path = tmp_path / "vit.yaml"
    path.write_text(VIT.replace("  image-processor: [ViTImageProcessor, ViTFeatureExtractor]", f"  {section}"))
    found = schemas.validate(load_document(path))
    assert found and all(isinstance(e, SchemaError) for e in found)


def test_cache_pickle_and_digest(reg_env, tmp_path, monkeypatch):
    reg_env.write("models/vit.yaml", VIT)
    reg_env.write("packs/transformers/vit.yaml", PACK_VIT)
    table = reg_env.load()
    warm = cache.from_state(cache.to_state(table))
    assert warm.digest == table.digest and warm.component_classes.keys() == table.component_classes.keys()
    assert warm.component_class("image-processor", "ViTImageProcessor") == table.component_class(
        "image-processor", "ViTImageProcessor"
    )
    assert warm.architecture("vit").component_classes == table.architecture("vit").component_classes
    copy = pickle.loads(pickle.dumps(table))
    assert copy.digest == table.digest and dict(copy.component_classes) == dict(table.component_classes)
    reg_env.write("models/vit.yaml", VIT.replace("ViTFeatureExtractor", "ViTFeatureExtractorV2"))
    assert reg_env.load().digest != table.digest
