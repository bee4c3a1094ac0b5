"""Parity of factory's native SigLIP (the pair, the classifier and the image tower) with transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.errors import ConfigError, ModelInputError
from factory.models import siglip as native
from tests.models.parity import (
    assert_builds_without_transformers,
    assert_config_defaults,
    assert_same,
    build_native,
    perturb_and_save,
)

# odd shapes: 3 heads of 10 (text) and of 8 (image), 5 x 5 patches of 6 pixels; the text head projects onto the
# image width (24), as SigLIP compares the towers' pooled outputs directly
TEXT = dict(
    vocab_size=97,
    hidden_size=30,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=3,
    max_position_embeddings=16,
    projection_size=24,
    pad_token_id=1,
    bos_token_id=None,
    eos_token_id=2,
)
VISION = dict(
    hidden_size=24, intermediate_size=31, num_hidden_layers=2, num_attention_heads=3, image_size=30, patch_size=6
)


def _config(vision=None, **options):
    return transformers.SiglipConfig(text_config=TEXT, vision_config={**VISION, **(vision or {})}, **options)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = {}
    for i, (key, hf_class, config) in enumerate(
        [
            ("siglip", "SiglipModel", _config()),
            ("classifier", "SiglipForImageClassification", _config(num_labels=3)),
            ("vision", "SiglipVisionModel", transformers.SiglipVisionConfig(**VISION)),
            ("vision-no-head", "SiglipVisionModel", transformers.SiglipVisionConfig(**VISION, vision_use_head=False)),
        ]
    ):
        directory = tmp_path_factory.mktemp(key)
        torch.manual_seed(i)
        out[key] = (directory, perturb_and_save(getattr(transformers, hf_class)(config), directory))
    return out


def _pixels(batch=3, height=30, width=30, seed=1):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _text(seed=2):
    """Three texts of 9 tokens, the second padded (SigLIP pads to a fixed length and pools the last position)."""
    ids = torch.randint(3, TEXT["vocab_size"], (3, 9), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = TEXT["pad_token_id"], 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("task", ["model", "zero-shot-image-classification"])
def test_pair_matches_transformers(checkpoints, task):
    directory, reference = checkpoints["siglip"]
    model = build_native(task, directory, native.SiglipModel)
    for extra in ({}, {"return_loss": True}, {"output_hidden_states": True}, {"interpolate_pos_encoding": True}):
        inputs = {**_text(), "pixel_values": _pixels(), **extra}
        with torch.no_grad():
            ours, theirs = model(**inputs), reference(**inputs)
        assert_same(ours, theirs, str(extra))
        assert (ours.loss is not None) == bool(extra.get("return_loss"))


def test_without_attention_mask_and_eager_attentions(checkpoints):
    directory, _ = checkpoints["siglip"]
    reference = transformers.SiglipModel.from_pretrained(directory, attn_implementation="eager").eval()
    model = build_native("model", directory, native.SiglipModel)
    inputs = {"input_ids": _text()["input_ids"], "pixel_values": _pixels(), "output_attentions": True}
    with torch.no_grad():
        ours, theirs = model(**inputs), reference(**inputs)
    assert len(ours.vision_model_output.attentions) == 2
    assert_same(ours, theirs, "eager")


@pytest.mark.parametrize(("height", "width"), [(42, 42), (36, 24)])
def test_interpolated_positions_match(checkpoints, height, width):
    directory, reference = checkpoints["vision"]
    model = build_native("model", directory, native.SiglipVisionModel)
    pixels = _pixels(2, height, width)
    with torch.no_grad():
        ours = model(pixels, interpolate_pos_encoding=True)
        assert_same(ours, reference(pixels, interpolate_pos_encoding=True), f"{height}x{width}")


def test_features_match(checkpoints):
    directory, reference = checkpoints["siglip"]
    model = build_native("model", directory, native.SiglipModel)
    with torch.no_grad():
        assert_same(model.get_text_features(**_text()), reference.get_text_features(**_text()), "text")
        assert_same(model.get_image_features(_pixels()), reference.get_image_features(_pixels()), "image")


def test_image_classification_matches(checkpoints):
    directory, _ = checkpoints["classifier"]
    model = build_native("image-classification", directory, native.SiglipForImageClassification)
    for labels in (None, torch.tensor([2, 0, 1]), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])):
        reference = transformers.SiglipForImageClassification.from_pretrained(directory).eval()
        inputs = {"pixel_values": _pixels()} if labels is None else {"pixel_values": _pixels(), "labels": labels}
        with torch.no_grad():
            assert_same(model(**inputs), reference(**inputs), f"labels {labels}")


@pytest.mark.parametrize("key", ["vision", "vision-no-head"])
def test_vision_tower_matches(checkpoints, key):
    directory, reference = checkpoints[key]
    model = build_native("model", directory, native.SiglipVisionModel)
    with torch.no_grad():
        ours = model(_pixels(), output_hidden_states=True)
        assert_same(ours, reference(_pixels(), output_hidden_states=True), key)
    assert (ours.pooler_output is None) == (key == "vision-no-head")


def _keys(directory: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize(
    ("key", "cls"),
    [
        ("siglip", native.SiglipModel),
        ("classifier", native.SiglipForImageClassification),
        ("vision", native.SiglipVisionModel),
        ("vision-no-head", native.SiglipVisionModel),
    ],
)
def test_parameter_names_are_the_checkpoint_keys(checkpoints, key, cls):
    directory, _ = checkpoints[key]
    config = cls.config_class.from_dict(json.loads((directory / "config.json").read_text()))
    with torch.device("meta"):
        model = cls(config)
    assert set(model.state_dict()) ^ _keys(directory) == set()


def test_saved_by_factory_loads_in_transformers(checkpoints, tmp_path):
    directory, reference = checkpoints["siglip"]
    factory.save(factory.build("model", directory), tmp_path / "saved")
    again = transformers.SiglipModel.from_pretrained(tmp_path / "saved").eval()
    inputs = {**_text(), "pixel_values": _pixels(), "return_loss": True}
    with torch.no_grad():
        assert_same(again(**inputs), reference(**inputs), "round trip")


def test_fresh_model(checkpoints):
    directory, _ = checkpoints["siglip"]
    model = factory.build("model", directory, weights=False)
    assert model.logit_scale.item() == 0 and model.logit_bias.item() == 0
    with torch.no_grad():
        assert torch.isfinite(model(**_text(), pixel_values=_pixels(), return_loss=True).loss)


def test_builds_without_transformers(checkpoints):
    assert_builds_without_transformers(
        [
            ("zero-shot-image-classification", checkpoints["siglip"][0], "SiglipModel"),
            ("image-classification", checkpoints["classifier"][0], "SiglipForImageClassification"),
            ("model", checkpoints["vision"][0], "SiglipVisionModel"),
        ]
    )


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (native.SiglipConfig, "SiglipConfig"),
        (native.SiglipTextConfig, "SiglipTextConfig"),
        (native.SiglipVisionConfig, "SiglipVisionConfig"),
    ],
)
def test_config_defaults_match_transformers(ours, theirs):
    derived = {"projection_size": 768} if ours is native.SiglipTextConfig else None
    assert_config_defaults(ours, getattr(transformers, theirs), derived)


def test_mismatched_embedding_sizes_are_refused():
    config = native.SiglipConfig(text_config={**TEXT, "projection_size": 14}, vision_config=VISION)
    with pytest.raises(ConfigError, match=r"text_config.projection_size 14\) must have the image embeddings' size"):
        native.SiglipModel(config)


@pytest.fixture(scope="module")
def pair(checkpoints):
    return build_native("model", checkpoints["siglip"][0], native.SiglipModel)


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ({"pixel_values": _pixels()}, "input_ids are required"),
        ({**_text(), "pixel_values": _pixels(2), "return_loss": True}, "3 texts and 2 images"),
        ({**_text(), "pixel_values": torch.zeros(3, 1, 30, 30)}, r"found \(3, 1, 30, 30\)"),
    ],
)
def test_bad_inputs(pair, inputs, match):
    with pytest.raises(ModelInputError, match=match):
        pair(**inputs)


def test_pair_needs_the_pooling_head():
    config = native.SiglipConfig(text_config=TEXT, vision_config={**VISION, "vision_use_head": False})
    model = native.SiglipModel(config).eval()
    with pytest.raises(ModelInputError, match="has no pooling head"):
        model(**_text(), pixel_values=_pixels())
