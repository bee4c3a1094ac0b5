"""Parity of factory's native CLIP (the pair and each tower alone) with transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.errors import ConfigError, ModelInputError
from factory.models import clip as native
from tests.models.parity import (
    assert_builds_without_transformers,
    assert_config_defaults,
    assert_same,
    build_native,
    perturb_and_save,
)

# the tokenizer's vocabulary: letters, letters ending a word, a few merges, the two special tokens
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MERGES = [("t", "h"), ("th", "e</w>"), ("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("p", "h")]
MERGES += [("o", "t"), ("ph", "ot"), ("phot", "o</w>"), ("o", "f</w>")]
VOCAB = {token: i for i, token in enumerate([*LETTERS, *(c + "</w>" for c in LETTERS), *("".join(m) for m in MERGES)])}
BOS, EOS = len(VOCAB), len(VOCAB) + 1
VOCAB.update({"<|startoftext|>": BOS, "<|endoftext|>": EOS})

# odd shapes: 3 heads of 10 (text) and 3 of 8 (image), 5 x 5 patches of 6 pixels, odd MLPs and projection
TEXT = dict(
    vocab_size=len(VOCAB),
    hidden_size=30,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=3,
    max_position_embeddings=20,
    bos_token_id=BOS,
    eos_token_id=EOS,
    pad_token_id=EOS,
)
VISION = dict(
    hidden_size=24, intermediate_size=31, num_hidden_layers=2, num_attention_heads=3, image_size=30, patch_size=6
)


def _clip_config(text=None, **options):
    return transformers.CLIPConfig(
        text_config={**TEXT, **(text or {})}, vision_config=VISION, projection_dim=14, **options
    )


def _save(directory: Path, hf_class: str, config, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return perturb_and_save(getattr(transformers, hf_class)(config), directory)


def _tokenizer():
    return transformers.CLIPTokenizer(vocab=VOCAB, merges=MERGES, model_max_length=20)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = {}
    for i, (key, hf_class, config) in enumerate(
        [
            ("clip", "CLIPModel", _clip_config()),
            ("classifier", "CLIPForImageClassification", _clip_config(num_labels=3)),
            ("legacy-eos", "CLIPModel", _clip_config({"eos_token_id": 2})),
            ("text", "CLIPTextModel", transformers.CLIPTextConfig(**TEXT)),
            ("vision", "CLIPVisionModel", transformers.CLIPVisionConfig(**VISION)),
            ("text-projection", "CLIPTextModelWithProjection", transformers.CLIPTextConfig(**TEXT)),
        ]
    ):
        directory = tmp_path_factory.mktemp(key)
        out[key] = (directory, _save(directory, hf_class, config, seed=i))
    _tokenizer().save_pretrained(out["clip"][0])
    return out


def _pixels(batch=3, height=30, width=30, seed=1):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _text(pad="right", seed=2):
    """Three texts of 7 tokens: start token, words, end token; the second padded with the end token."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(VOCAB) - 2, (3, 7), generator=g)
    ids[:, 0], ids[:, -1] = BOS, EOS
    mask = torch.ones_like(ids)
    if pad == "right":
        ids[1, 4], ids[1, 5:], mask[1, 5:] = EOS, EOS, 0
    elif pad == "left":
        ids[1, :3], mask[1, :3] = EOS, 0
        ids[1, 3] = BOS
    return {"input_ids": ids, "attention_mask": mask}


# --- the pair ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["model", "zero-shot-image-classification"])
@pytest.mark.parametrize("key", ["clip", "legacy-eos"])
def test_pair_matches_transformers(checkpoints, task, key):
    directory, reference = checkpoints[key]
    model = build_native(task, directory, native.CLIPModel)
    for extra in ({}, {"return_loss": True}, {"output_hidden_states": True}):
        inputs = {**_text(), "pixel_values": _pixels(), **extra}
        with torch.no_grad():
            ours, theirs = model(**inputs), reference(**inputs)
        assert_same(ours, theirs, f"{key} {extra}")
        assert (ours.loss is not None) == bool(extra.get("return_loss"))


def test_features_match(checkpoints):
    directory, reference = checkpoints["clip"]
    model = build_native("model", directory, native.CLIPModel)
    with torch.no_grad():
        assert_same(model.get_text_features(**_text()), reference.get_text_features(**_text()), "text features")
        assert_same(model.get_image_features(_pixels()), reference.get_image_features(_pixels()), "image features")


def test_left_padding_and_attentions_match_eager(checkpoints):
    """With left padding the padded queries see no key: both give eager attention's average (transformers' SDPA
    path differs there, at positions no output reads)."""
    directory, _ = checkpoints["clip"]
    reference = transformers.CLIPModel.from_pretrained(directory, attn_implementation="eager").eval()
    model = build_native("model", directory, native.CLIPModel)
    inputs = {**_text("left"), "pixel_values": _pixels(), "output_attentions": True, "output_hidden_states": True}
    with torch.no_grad():
        ours, theirs = model(**inputs), reference(**inputs)
    assert len(ours.text_model_output.attentions) == 2
    assert_same(ours, theirs, "left padding, eager")


@pytest.mark.parametrize(("height", "width"), [(42, 42), (36, 24)])
def test_interpolated_positions_match(checkpoints, height, width):
    directory, reference = checkpoints["clip"]
    model = build_native("model", directory, native.CLIPModel)
    inputs = {**_text(), "pixel_values": _pixels(2, height, width), "interpolate_pos_encoding": True}
    with torch.no_grad():
        assert_same(model(**inputs), reference(**inputs), f"{height}x{width}")


def test_position_ids_match(checkpoints):
    directory, reference = checkpoints["clip"]
    model = build_native("model", directory, native.CLIPModel)
    inputs = {**_text(), "pixel_values": _pixels(), "position_ids": torch.arange(2, 9)[None].expand(3, -1)}
    with torch.no_grad():
        assert_same(model(**inputs), reference(**inputs), "position_ids")


# --- the classifier ---------------------------------------------------------------------------------------
def test_image_classification_matches(checkpoints):
    directory, reference = checkpoints["classifier"]
    model = build_native("image-classification", directory, native.CLIPForImageClassification)
    for labels in (None, torch.tensor([2, 0, 1]), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])):
        inputs = {"pixel_values": _pixels()} if labels is None else {"pixel_values": _pixels(), "labels": labels}
        # fresh each time: transformers writes the problem type it infers from the labels into its config
        reference = transformers.CLIPForImageClassification.from_pretrained(directory).eval()
        with torch.no_grad():
            assert_same(model(**inputs), reference(**inputs), f"labels {labels}")
    with torch.no_grad():
        assert_same(model(_pixels(), output_hidden_states=True), reference(_pixels(), output_hidden_states=True), "hs")


# --- the towers alone ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "task", "cls"),
    [
        ("text", "model", native.CLIPTextModel),
        ("text", "text-encoding", native.CLIPTextModel),
        ("vision", "model", native.CLIPVisionModel),
    ],
)
def test_towers_match(checkpoints, key, task, cls):
    directory, reference = checkpoints[key]
    model = build_native(task, directory, cls)
    inputs = _text() if key == "text" else {"pixel_values": _pixels()}
    with torch.no_grad():
        assert_same(model(**inputs, output_hidden_states=True), reference(**inputs, output_hidden_states=True), key)


def test_text_tower_reads_a_prefixed_checkpoint(checkpoints):
    """CLIPTextModelWithProjection's checkpoint (``text_model.*`` and ``text_projection``, model_type
    clip_text_model) builds the bare tower: the prefix stripped, the projection left out."""
    directory, reference = checkpoints["text-projection"]
    model = build_native("model", directory, native.CLIPTextModel)
    with torch.no_grad():
        assert_same(model(**_text()), reference.text_model(**_text()), "tower of the projection model")


def test_tokenizer_matches_transformers(checkpoints):
    directory, _ = checkpoints["clip"]
    ours, theirs = factory.build("tokenizer", directory), _tokenizer()
    texts = ["a photo of the cat", "A  Dog", "photo of a dog, the cat!"]
    for options in ({}, {"padding": True}, {"padding": "max_length", "max_length": 12, "truncation": True}):
        assert ours(texts, **options)["input_ids"] == theirs(texts, **options)["input_ids"], options
    ids = theirs(texts, padding=True)["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=True) == theirs.batch_decode(ids, skip_special_tokens=True)
    assert ours.batch_decode(ids) == theirs.batch_decode(ids)


def test_zero_shot_with_the_tokenizer(checkpoints):
    """Tokenized labels through the pair: the probabilities per image equal transformers'."""
    directory, reference = checkpoints["clip"]
    model = build_native("zero-shot-image-classification", directory, native.CLIPModel)
    text = factory.build("tokenizer", directory)(
        ["a photo of a cat", "a photo of a dog"], padding=True, return_tensors="pt"
    )
    inputs = {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"], "pixel_values": _pixels(2)}
    with torch.no_grad():
        probs = model(**inputs).logits_per_image.softmax(dim=-1)
        expected = reference(**inputs).logits_per_image.softmax(dim=-1)
    assert probs.shape == (2, 2)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)


# --- checkpoints ---------------------------------------------------------------------------------------------
def _keys(directory: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize(
    ("key", "cls"),
    [
        ("clip", native.CLIPModel),
        ("classifier", native.CLIPForImageClassification),
        ("text", native.CLIPTextModel),
        ("vision", native.CLIPVisionModel),
    ],
)
def test_parameter_names_are_the_checkpoint_keys(checkpoints, key, cls):
    directory, _ = checkpoints[key]
    config = cls.config_class.from_dict(json.loads((directory / "config.json").read_text()))
    with torch.device("meta"):
        model = cls(config)
    assert set(model.state_dict()) ^ _keys(directory) == set()


@pytest.mark.parametrize(
    ("key", "task", "hf_class"),
    [("clip", "model", "CLIPModel"), ("classifier", "image-classification", "CLIPForImageClassification")],
)
def test_saved_by_factory_loads_in_transformers(checkpoints, tmp_path, key, task, hf_class):
    directory, reference = checkpoints[key]
    factory.save(factory.build(task, directory), tmp_path / "saved")
    again = getattr(transformers, hf_class).from_pretrained(tmp_path / "saved").eval()
    inputs = {"pixel_values": _pixels()} if key == "classifier" else {**_text(), "pixel_values": _pixels()}
    with torch.no_grad():
        assert_same(again(**inputs), reference(**inputs), key)


def test_fresh_model(checkpoints):
    directory, _ = checkpoints["clip"]
    model = factory.build("model", directory, weights=False)
    assert model.logit_scale.item() == pytest.approx(2.6592)
    with torch.no_grad():
        assert torch.isfinite(model(**_text(), pixel_values=_pixels()).logits_per_image).all()


def test_builds_without_transformers(checkpoints):
    assert_builds_without_transformers(
        [
            ("zero-shot-image-classification", checkpoints["clip"][0], "CLIPModel"),
            ("image-classification", checkpoints["classifier"][0], "CLIPForImageClassification"),
            ("text-encoding", checkpoints["text"][0], "CLIPTextModel"),
            ("model", checkpoints["vision"][0], "CLIPVisionModel"),
        ]
    )


# --- config and errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (native.CLIPConfig, "CLIPConfig"),
        (native.CLIPTextConfig, "CLIPTextConfig"),
        (native.CLIPVisionConfig, "CLIPVisionConfig"),
    ],
)
def test_config_defaults_match_transformers(ours, theirs):
    assert_config_defaults(ours, getattr(transformers, theirs))


def test_sub_configs(checkpoints):
    directory, _ = checkpoints["clip"]
    data = json.loads((directory / "config.json").read_text())
    config = native.CLIPConfig.from_dict(data)
    assert isinstance(config.text_config, native.CLIPTextConfig) and config.text_config.hidden_size == 30
    assert isinstance(config.vision_config, native.CLIPVisionConfig) and config.vision_config.patch_size == 6
    round_trip = config.to_dict()
    assert (
        round_trip["text_config"]["hidden_size"] == 30 and round_trip["text_config"]["model_type"] == "clip_text_model"
    )
    assert native.CLIPConfig.from_dict(json.loads(json.dumps(round_trip))) == config
    assert native.CLIPConfig().vision_config.image_size == 224  # defaults without the key
    with pytest.raises(ConfigError, match="text_config must be an object of CLIPTextConfig values, found 3"):
        native.CLIPConfig(text_config=3)


def test_unsupported_config_is_refused():
    with pytest.raises(ConfigError, match=r"hidden_size \(30\) is not a multiple of num_attention_heads \(4\)"):
        native.CLIPTextModel(native.CLIPTextConfig(**{**TEXT, "num_attention_heads": 4}))
    with pytest.raises(ConfigError, match="hidden_act 'swish2' is not supported"):
        native.CLIPVisionModel(native.CLIPVisionConfig(**{**VISION, "hidden_act": "swish2"}))


@pytest.fixture(scope="module")
def pair(checkpoints):
    return build_native("model", checkpoints["clip"][0], native.CLIPModel)


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ({"pixel_values": _pixels()}, "input_ids are required"),
        ({"input_ids": torch.ones(7, dtype=torch.long), "pixel_values": _pixels()}, r"shape \(batch, seq_len\)"),
        ({"input_ids": torch.ones(1, 21, dtype=torch.long), "pixel_values": _pixels()}, "exceeds max_position_emb"),
        ({**_text(), "pixel_values": _pixels(3, 36, 36)}, r"input image size \(36\*36\) doesn't match"),
        ({**_text(), "pixel_values": _pixels(2), "return_loss": True}, "3 texts and 2 images"),
    ],
)
def test_bad_inputs(pair, inputs, match):
    with pytest.raises(ModelInputError, match=match):
        pair(**inputs)
