"""Parity of factory's native ViT with transformers, head by head."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.errors import ConfigError, ModelInputError
from factory.models import vit as native
from tests.models.parity import (
    assert_builds_without_transformers,
    assert_config_defaults,
    assert_same,
    build_native,
    perturb_and_save,
)

# odd shapes: 3 heads of 10, a 30-pixel image of 6-pixel patches (a 5 x 5 grid), an MLP of 37
TINY = dict(
    hidden_size=30,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=37,
    image_size=30,
    patch_size=6,
    encoder_stride=6,
    num_channels=3,
)
HEADS = {
    "model": ("ViTModel", native.ViTModel, {}),
    "image-classification": ("ViTForImageClassification", native.ViTForImageClassification, {"num_labels": 5}),
    "masked-image-modeling": ("ViTForMaskedImageModeling", native.ViTForMaskedImageModeling, {}),
}


def _save(directory: Path, hf_class: str, seed: int = 0, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = getattr(transformers, hf_class)(transformers.ViTConfig(**{**TINY, **config}))
    return perturb_and_save(model, directory)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return {
        task: (d := tmp_path_factory.mktemp(task), _save(d, hf_class, seed=i, **extra))
        for i, (task, (hf_class, _, extra)) in enumerate(HEADS.items())
    }


def _pixels(batch=3, height=30, width=30, seed=1):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _masked_positions(batch=3, patches=25, seed=2):
    return torch.rand(batch, patches, generator=torch.Generator().manual_seed(seed)) < 0.4


def _labelled(task):
    inputs = {"pixel_values": _pixels()}
    if task == "image-classification":
        inputs["labels"] = torch.tensor([4, 0, 2])
    if task == "masked-image-modeling":
        inputs["bool_masked_pos"] = _masked_positions()
    return inputs


# --- parity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", list(HEADS))
def test_outputs_and_losses_match_transformers(checkpoints, task):
    directory, reference = checkpoints[task]
    model = build_native(task, directory, HEADS[task][1])
    for inputs in ({"pixel_values": _pixels()}, _labelled(task)):
        with torch.no_grad():
            ours, theirs = model(**inputs), reference(**inputs)
        assert_same(ours, theirs, task)
        assert (getattr(ours, "loss", None) is None) == (len(inputs) == 1)


def test_mask_tokens_without_loss_on_the_trunk(checkpoints):
    """The masked-image-modeling trunk replaces masked patches by the mask token."""
    directory, reference = checkpoints["masked-image-modeling"]
    model = build_native("masked-image-modeling", directory, native.ViTForMaskedImageModeling)
    inputs = {"pixel_values": _pixels(), "bool_masked_pos": _masked_positions()}
    with torch.no_grad():
        assert_same(model.vit(**inputs), reference.vit(**inputs), "vit with mask tokens")


@pytest.mark.parametrize("task", list(HEADS))
def test_hidden_states_and_positional_call(checkpoints, task):
    directory, reference = checkpoints[task]
    model = build_native(task, directory, HEADS[task][1])
    pixels = _pixels()
    with torch.no_grad():
        ours, theirs = model(pixels, output_hidden_states=True), reference(pixels, output_hidden_states=True)
    assert len(ours.hidden_states) == TINY["num_hidden_layers"] + 1
    assert_same(ours, theirs, task)


def test_attentions_match_eager(checkpoints):
    directory, _ = checkpoints["model"]
    reference = transformers.ViTModel.from_pretrained(directory, attn_implementation="eager").eval()
    model = build_native("model", directory, native.ViTModel)
    with torch.no_grad():
        ours, theirs = model(_pixels(), output_attentions=True), reference(_pixels(), output_attentions=True)
    assert len(ours.attentions) == 2 and ours.attentions[0].shape == (3, 3, 26, 26)
    assert_same(ours, theirs, "attentions")


@pytest.mark.parametrize(("height", "width"), [(42, 42), (42, 36), (24, 30)])
@pytest.mark.parametrize("task", ["model", "image-classification"])
def test_interpolated_positions_match(checkpoints, task, height, width):
    directory, reference = checkpoints[task]
    model = build_native(task, directory, HEADS[task][1])
    pixels = _pixels(2, height, width)
    with torch.no_grad():
        ours = model(pixels, interpolate_pos_encoding=True)
        theirs = reference(pixels, interpolate_pos_encoding=True)
    assert_same(ours, theirs, f"{task} at {height}x{width}")


def test_masked_image_modeling_on_a_non_square_image(checkpoints):
    """The reconstruction follows the image's patch grid (transformers assumes a square one and fails here)."""
    directory, _ = checkpoints["masked-image-modeling"]
    model = build_native("masked-image-modeling", directory, native.ViTForMaskedImageModeling)
    with torch.no_grad():
        out = model(_pixels(2, 42, 36), interpolate_pos_encoding=True)
    assert out.reconstruction.shape == (2, 3, 42, 36)


def test_patch_attention_mask_matches(checkpoints):
    directory, reference = checkpoints["model"]
    model = build_native("model", directory, native.ViTModel)
    mask = torch.ones(3, 26, dtype=torch.long)
    mask[1, 20:] = 0
    with torch.no_grad():
        ours = model(_pixels(), attention_mask=mask)
        theirs = reference(_pixels(), attention_mask=mask)
    assert_same(ours, theirs, "attention_mask")


@pytest.mark.parametrize(
    "config",
    [
        {"qkv_bias": False, "hidden_act": "gelu_new"},
        {"image_size": [30, 24], "patch_size": [6, 4]},  # rectangular images and patches
        {"pooler_output_size": 7, "pooler_act": "relu", "hidden_size": 28, "num_attention_heads": 4},
    ],
    ids=["no-qkv-bias", "rectangular", "pooler"],
)
def test_config_variants_match(tmp_path, config):
    reference = _save(tmp_path, "ViTModel", **config)
    model = build_native("model", tmp_path, native.ViTModel)
    height, width = native.pair(config.get("image_size", 30))
    with torch.no_grad():
        assert_same(model(_pixels(2, height, width)), reference(_pixels(2, height, width)), str(config))


def test_regression_and_multi_label_losses(tmp_path):
    reference = _save(tmp_path, "ViTForImageClassification", num_labels=1)
    model = build_native("image-classification", tmp_path, native.ViTForImageClassification)
    target = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        assert_same(model(_pixels(), labels=target), reference(_pixels(), labels=target), "regression")
    reference = _save(tmp_path, "ViTForImageClassification", num_labels=3)
    model = build_native("image-classification", tmp_path, native.ViTForImageClassification)
    multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    with torch.no_grad():
        assert_same(model(_pixels(), labels=multi), reference(_pixels(), labels=multi), "multi-label")


# --- checkpoints ----------------------------------------------------------------------------------
def _as_state_dict_names(directory: Path, out: Path) -> None:
    """Rewrite a checkpoint under transformers 5's in-memory names (``model.state_dict()`` saved by hand)."""
    from safetensors.torch import load_file, save_file

    new_names = [
        (r"(^|\.)encoder\.layer\.", r"\1layers."),
        (r"\.attention\.attention\.query\.", ".attention.q_proj."),
        (r"\.attention\.attention\.key\.", ".attention.k_proj."),
        (r"\.attention\.attention\.value\.", ".attention.v_proj."),
        (r"\.attention\.output\.dense\.", ".attention.o_proj."),
        (r"\.intermediate\.dense\.", ".mlp.fc1."),
        (r"\.output\.dense\.", ".mlp.fc2."),
    ]
    state = {}
    for key, tensor in load_file(str(directory / "model.safetensors")).items():
        for pattern, replacement in new_names:
            key = re.sub(pattern, replacement, key)
        state[key] = tensor
    out.mkdir()
    (out / "config.json").write_text((directory / "config.json").read_text())
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("task", list(HEADS))
def test_state_dict_names_load(checkpoints, tmp_path, task):
    """transformers saves the Hub layout; a state dict under its in-memory names loads too, in both libraries."""
    directory, reference = checkpoints[task]
    _as_state_dict_names(directory, tmp_path / "renamed")
    assert {k for k in _keys(tmp_path / "renamed") if ".attention.q_proj." in k}
    assert set(reference.state_dict()) == _keys(tmp_path / "renamed")
    model = build_native(task, tmp_path / "renamed", HEADS[task][1])
    with torch.no_grad():
        assert_same(model(**_labelled(task)), reference(**_labelled(task)), f"{task} from state-dict names")


def _keys(directory: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("task", list(HEADS))
def test_parameter_names_are_the_checkpoint_keys(checkpoints, task):
    directory, _ = checkpoints[task]
    model_cls = HEADS[task][1]
    config = model_cls.config_class.from_dict(json.loads((directory / "config.json").read_text()))
    with torch.device("meta"):
        model = model_cls(config)
    assert set(model.state_dict()) ^ _keys(directory) == set()


def test_trunk_from_head_checkpoint_and_head_from_trunk(checkpoints):
    directory, reference = checkpoints["image-classification"]
    model = factory.build("model", directory, strict=False)
    with torch.no_grad():
        assert_same(model(_pixels()).last_hidden_state, reference.vit(_pixels()).last_hidden_state, "trunk")
    directory, reference = checkpoints["model"]
    with pytest.warns(UserWarning, match="classifier"):
        head = factory.build("image-classification", directory, strict=False)
    with torch.no_grad():
        assert_same(head.vit(_pixels()), reference(_pixels()), "trunk in the head", skip=("pooler_output",))


@pytest.mark.parametrize("task", list(HEADS))
def test_saved_by_factory_loads_in_transformers(checkpoints, tmp_path, task):
    directory, reference = checkpoints[task]
    model = build_native(task, directory, HEADS[task][1])
    factory.save(model, tmp_path / "saved")
    again = getattr(transformers, HEADS[task][0]).from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert_same(again(**_labelled(task)), reference(**_labelled(task)), task)


def test_fresh_model(checkpoints):
    directory, _ = checkpoints["image-classification"]
    model = factory.build("image-classification", directory, weights=False)
    std = model.vit.embeddings.position_embeddings.std().item()
    assert 0.01 < std < 0.03 and torch.all(model.vit.layernorm.weight == 1)
    with torch.no_grad():
        assert torch.isfinite(model(_pixels()).logits).all()


def test_builds_without_transformers(checkpoints):
    assert_builds_without_transformers([(t, checkpoints[t][0], c.__name__) for t, (_, c, _) in HEADS.items()])


# --- config and errors ------------------------------------------------------------------------------
def test_config_defaults_match_transformers():
    assert_config_defaults(native.ViTConfig, transformers.ViTConfig, derived={"pooler_output_size": 768})


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"hidden_act": "swiglu"}, "hidden_act 'swiglu' is not supported"),
        ({"pooler_act": "mish"}, "pooler_act 'mish' is not supported"),
        ({"patch_size": 0}, "patch_size must be a positive integer"),
        ({"image_size": [30, 30, 30]}, r"image_size must be a positive integer or \[height, width\]"),
    ],
)
def test_unsupported_configs_are_refused(config, match):
    with pytest.raises(ConfigError, match=match) as err:
        native.ViTModel(native.ViTConfig(**{**TINY, **config}))
    assert err.value.hint


@pytest.fixture(scope="module")
def tiny(checkpoints):
    return build_native(
        "masked-image-modeling", checkpoints["masked-image-modeling"][0], native.ViTForMaskedImageModeling
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m(), "pixel_values are required"),
        (lambda m: m(_pixels()[0]), r"must have shape \(batch, 3, height, width\), found \(3, 30, 30\)"),
        (lambda m: m(torch.zeros(1, 4, 30, 30)), r"found \(1, 4, 30, 30\)"),
        (lambda m: m(_pixels(1, 36, 36)), r"input image size \(36\*36\) doesn't match the model \(30\*30\)"),
    ],
)
def test_bad_inputs(tiny, call, match):
    with pytest.raises(ModelInputError, match=match):
        call(tiny)


def test_mask_positions_need_a_mask_token(checkpoints):
    model = build_native("model", checkpoints["model"][0], native.ViTModel)
    with pytest.raises(ModelInputError, match="bool_masked_pos needs a model with a mask token"):
        model(_pixels(), bool_masked_pos=_masked_positions())


def test_masked_image_modeling_loss_needs_patch_size_equal_to_stride(tmp_path):
    model = native.ViTForMaskedImageModeling(native.ViTConfig(**{**TINY, "encoder_stride": 3})).eval()
    with pytest.raises(ConfigError, match=r"patch_size \(6\) must equal encoder_stride \(3\)"):
        model(_pixels(), bool_masked_pos=_masked_positions())
