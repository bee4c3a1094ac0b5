"""Parity of factory's native wav2vec 2.0, HuBERT and WavLM with transformers, head by head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

import factory
from factory.errors import ConfigError, ModelInputError
from factory.models import wav2vec2 as native
from tests.models.parity import (
    assert_builds_without_transformers,
    assert_config_defaults,
    assert_same,
    build_native,
    perturb_and_save,
)

# odd shapes: 3 heads of 10, an odd feature encoder (3 layers, kernels 7/3/3, strides 5/3/2: 400 samples -> 12
# frames), a 5-wide position convolution in 3 groups, odd head sizes
TINY = dict(
    hidden_size=30,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=37,
    conv_dim=[8, 12, 10],
    conv_stride=[5, 3, 2],
    conv_kernel=[7, 3, 3],
    num_conv_pos_embeddings=5,
    num_conv_pos_embedding_groups=3,
    vocab_size=23,
    tdnn_dim=[9, 11, 13],
    tdnn_kernel=[3, 2, 1],
    tdnn_dilation=[1, 2, 1],
    xvector_output_dim=7,
    classifier_proj_size=6,
    num_labels=4,
    proj_codevector_dim=5,
    codevector_dim=6,
    num_codevectors_per_group=4,
    num_codevector_groups=2,
    num_buckets=16,
    max_bucket_distance=20,
)
VARIANTS = {
    "base": {},  # group norm in the first conv layer, post-norm layers
    "stable": {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True},
    "weighted": {"use_weighted_layer_sum": True},
}
ARCHS = {
    "wav2vec2": ("Wav2Vec2", native.Wav2Vec2Config),
    "hubert": ("Hubert", native.HubertConfig),
    "wavlm": ("WavLM", native.WavLMConfig),
}
SUFFIXES = {
    "model": "Model",
    "ctc": "ForCTC",
    "audio-classification": "ForSequenceClassification",
    "audio-frame-classification": "ForAudioFrameClassification",
    "audio-xvector": "ForXVector",
    "pretraining": "ForPreTraining",
}
SAMPLES, FRAMES = 400, 12
#: (architecture, task) -> the native class; every task the pack registers for the architecture
CASES = {
    (arch, task): getattr(native, prefix + suffix)
    for arch, (prefix, _) in ARCHS.items()
    for task, suffix in SUFFIXES.items()
    if hasattr(native, prefix + suffix)
}
READS_LAYERS = ("audio-classification", "audio-frame-classification", "audio-xvector")


def _hf_config(arch: str, **extra):
    prefix = ARCHS[arch][0]
    return getattr(transformers, f"{prefix}Config")(**{**TINY, **extra})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``checkpoint(arch, task, variant)`` -> (directory, transformers model), each saved once."""
    cache: dict[tuple[str, str, str], tuple[Path, torch.nn.Module]] = {}

    def get(arch: str, task: str, variant: str = "base") -> tuple[Path, torch.nn.Module]:
        key = (arch, task, variant)
        if key not in cache:
            torch.manual_seed(len(cache))
            model = getattr(transformers, ARCHS[arch][0] + SUFFIXES[task])(_hf_config(arch, **VARIANTS[variant]))
            directory = tmp_path_factory.mktemp(f"{arch}-{task}-{variant}")
            cache[key] = (directory, perturb_and_save(model, directory))
        return cache[key]

    return get


def _audio(batch=3, samples=SAMPLES, seed=1, pad=True):
    """Raw audio; rows 2 and 3 padded (zeros after 250 and 330 samples) when ``pad``."""
    values = torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))
    if not pad:
        return {"input_values": values}
    mask = torch.ones(batch, samples, dtype=torch.long)
    mask[1, 250:], mask[2, 330:] = 0, 0
    return {"input_values": values * mask, "attention_mask": mask}


def _labels(task: str, batch=3, seed=3):
    g = torch.Generator().manual_seed(seed)
    if task == "ctc":
        labels = torch.randint(1, TINY["vocab_size"], (batch, 4), generator=g)
        labels[0, 3], labels[1, 2:] = -100, -100  # padded transcripts
        return {"labels": labels}
    if task in ("audio-classification", "audio-xvector"):
        return {"labels": torch.randint(0, TINY["num_labels"], (batch,), generator=g)}
    if task == "audio-frame-classification":
        return {"labels": F.one_hot(torch.randint(0, TINY["num_labels"], (batch, FRAMES), generator=g), 4)}
    if task == "pretraining":
        from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

        mask = torch.zeros(batch, FRAMES, dtype=torch.bool)
        mask[:, 2:7] = True
        negatives = _sample_negative_indices((batch, FRAMES), 3, mask.numpy())
        return {"mask_time_indices": mask, "sampled_negative_indices": torch.from_numpy(negatives)}
    return {}


def _variants(task: str) -> list[str]:
    return ["base", "stable", "weighted"] if task in READS_LAYERS else ["base", "stable"]


PARITY = [(arch, task, variant) for (arch, task) in CASES for variant in _variants(task)]


# --- parity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("arch", "task", "variant"), PARITY, ids=["-".join(p) for p in PARITY])
def test_outputs_and_losses_match_transformers(checkpoint, arch, task, variant):
    directory, reference = checkpoint(arch, task, variant)
    model = build_native(task, directory, CASES[arch, task])
    inputs = {**_audio(), **_labels(task), "output_hidden_states": True}
    with torch.no_grad():
        ours, theirs = model(**inputs), reference(**inputs)
    assert len(ours.hidden_states) == TINY["num_hidden_layers"] + 1
    assert_same(ours, theirs, f"{arch} {task} {variant}")
    if task != "model":
        assert ours.loss is not None and ours.loss.dim() == 0


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("task", ["model", "ctc", "audio-classification"])
def test_unpadded_inputs_without_labels(checkpoint, arch, task):
    directory, reference = checkpoint(arch, task)
    model = build_native(task, directory, CASES[arch, task])
    inputs = _audio(pad=False)
    with torch.no_grad():
        ours, theirs = model(inputs["input_values"]), reference(**inputs)
    assert_same(ours, theirs, f"{arch} {task} unpadded")
    assert ours.hidden_states is None and getattr(ours, "loss", None) is None


@pytest.mark.parametrize("arch", list(ARCHS))
def test_ctc_loss_without_attention_mask_and_reductions(checkpoint, arch):
    directory, _ = checkpoint(arch, "ctc")
    for reduction in ("mean", "sum"):
        model = factory.build("ctc", directory, config_overrides={"ctc_loss_reduction": reduction})
        reference = getattr(transformers, ARCHS[arch][0] + "ForCTC").from_pretrained(
            directory, ctc_loss_reduction=reduction
        )
        inputs = {**_audio(pad=False), **_labels("ctc")}
        with torch.no_grad():
            assert_same(model(**inputs), reference.eval()(**inputs), f"{arch} ctc {reduction}")


@pytest.mark.parametrize("arch", ["wav2vec2", "wavlm"])
def test_attentions_match_eager(checkpoint, arch):
    directory, _ = checkpoint(arch, "model")
    reference = getattr(transformers, ARCHS[arch][0] + "Model").from_pretrained(directory, attn_implementation="eager")
    model = build_native("model", directory, CASES[arch, "model"])
    inputs = {**_audio(), "output_attentions": True}
    with torch.no_grad():
        ours, theirs = model(**inputs), reference.eval()(**inputs)
    assert len(ours.attentions) == 2 and ours.attentions[0].shape == (3, 3, FRAMES, FRAMES)
    assert_same(ours, theirs, f"{arch} attentions")


@pytest.mark.parametrize(
    ("arch", "config"),
    [
        ("hubert", {"conv_pos_batch_norm": True, "feat_proj_layer_norm": False}),
        ("wav2vec2", {"num_conv_pos_embeddings": 4, "hidden_act": "relu", "feat_extract_activation": "relu"}),
        ("wav2vec2", {"add_adapter": True, "output_hidden_size": 14, "num_adapter_layers": 2}),
        ("wav2vec2", {"do_stable_layer_norm": True, "adapter_attn_dim": 5}),  # MMS's adapter layers
        ("wavlm", {"do_stable_layer_norm": True, "feat_extract_norm": "layer", "num_buckets": 7}),
    ],
    ids=["hubert-batch-norm", "even-kernel-relu", "adapter", "mms-adapter", "wavlm-stable"],
)
def test_config_variants_match(tmp_path, arch, config):
    torch.manual_seed(0)
    task = "ctc"
    reference = getattr(transformers, ARCHS[arch][0] + "ForCTC")(_hf_config(arch, **config))
    perturb_and_save(reference, tmp_path)
    model = build_native(task, tmp_path, CASES[arch, task])
    inputs = {**_audio(), **_labels("ctc"), "output_hidden_states": True}
    with torch.no_grad():
        assert_same(model(**inputs), reference(**inputs), f"{arch} {config}")


def test_pretraining_without_negatives_and_with_the_trunk_masked(checkpoint):
    directory, reference = checkpoint("wav2vec2", "pretraining")
    model = build_native("pretraining", directory, native.Wav2Vec2ForPreTraining)
    mask = _labels("pretraining")["mask_time_indices"]
    for inputs in (_audio(), {**_audio(), "mask_time_indices": mask}):
        with torch.no_grad():
            ours, theirs = model(**inputs), reference(**inputs)
        assert_same(ours, theirs, "pretraining")
        assert ours.loss is None and ours.contrastive_loss is None


# --- checkpoints -----------------------------------------------------------------------------------------
def _keys(directory: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return set(f.keys())


def _with_legacy_weight_norm(directory: Path, out: Path) -> None:
    """The checkpoint under the ``weight_g``/``weight_v`` names real Hub checkpoints carry."""
    from safetensors.torch import load_file, save_file

    state = {
        key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): t
        for key, t in load_file(str(directory / "model.safetensors")).items()
    }
    out.mkdir()
    (out / "config.json").write_text((directory / "config.json").read_text())
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("arch", ["wav2vec2", "hubert"])
def test_legacy_weight_norm_names_load(checkpoint, tmp_path, arch):
    directory, reference = checkpoint(arch, "ctc")
    _with_legacy_weight_norm(directory, tmp_path / "legacy")
    assert {k for k in _keys(tmp_path / "legacy") if k.endswith("pos_conv_embed.conv.weight_g")}
    model = build_native("ctc", tmp_path / "legacy", CASES[arch, "ctc"])
    old = getattr(transformers, ARCHS[arch][0] + "ForCTC").from_pretrained(tmp_path / "legacy").eval()
    inputs = {**_audio(), **_labels("ctc")}
    with torch.no_grad():
        assert_same(model(**inputs), reference(**inputs), "native on weight_g/weight_v")
        assert_same(old(**inputs), reference(**inputs), "transformers on weight_g/weight_v")


@pytest.mark.parametrize(("arch", "task"), list(CASES), ids=["-".join(c) for c in CASES])
def test_parameter_names_are_the_checkpoint_keys(checkpoint, arch, task):
    directory, _ = checkpoint(arch, task)
    model_cls = CASES[arch, task]
    config = model_cls.config_class.from_dict(json.loads((directory / "config.json").read_text()))
    with torch.device("meta"):
        model = model_cls(config)
    assert set(model.state_dict()) ^ _keys(directory) == set()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_saved_by_factory_loads_in_transformers(checkpoint, tmp_path, arch):
    directory, reference = checkpoint(arch, "ctc")
    factory.save(factory.build("ctc", directory), tmp_path / "saved")
    again = getattr(transformers, ARCHS[arch][0] + "ForCTC").from_pretrained(tmp_path / "saved").eval()
    inputs = {**_audio(), **_labels("ctc")}
    with torch.no_grad():
        assert_same(again(**inputs), reference(**inputs), arch)


def test_head_from_a_bare_trunk_checkpoint(checkpoint):
    directory, reference = checkpoint("wav2vec2", "model")
    with pytest.warns(UserWarning, match="lm_head.weight"):
        model = factory.build("ctc", directory, strict=False)
    with torch.no_grad():
        assert_same(model.wav2vec2(**_audio()), reference(**_audio()), "trunk inside the CTC model")
        assert torch.isfinite(model(**_audio()).logits).all()


@pytest.mark.parametrize("task", ["ctc", "audio-classification", "audio-xvector", "pretraining"])
def test_fresh_models(checkpoint, task):
    directory, _ = checkpoint("wav2vec2", task, "weighted" if task in READS_LAYERS else "base")
    model = factory.build(task, directory, weights=False)
    conv = model.wav2vec2.encoder.pos_conv_embed.conv
    torch.testing.assert_close(conv.weight, conv.parametrizations.weight.original1)  # g = |v|: the weight is v
    if task in READS_LAYERS:
        assert torch.allclose(model.layer_weights, torch.full((3,), 1 / 3))
    with torch.no_grad():
        out = model(**_audio(), **_labels(task))
    assert torch.isfinite(out.loss)


def test_builds_without_transformers(checkpoint):
    assert_builds_without_transformers(
        [(task, checkpoint(arch, task)[0], cls.__name__) for (arch, task), cls in CASES.items()]
    )


# --- training mode -------------------------------------------------------------------------------------------
def test_spec_augment_in_training(checkpoint):
    directory, _ = checkpoint("wav2vec2", "ctc")
    model = factory.build("ctc", directory, config_overrides={"mask_time_prob": 0.5, "mask_feature_prob": 0.3})
    inputs = {**_audio(), **_labels("ctc")}
    with torch.no_grad():
        evaluated = model(**inputs)
    model.train()
    torch.manual_seed(0)
    trained = model(**inputs)
    trained.loss.backward()
    assert torch.isfinite(trained.loss) and not torch.allclose(trained.logits, evaluated.logits)
    assert model.wav2vec2.masked_spec_embed.grad is not None  # masked frames were replaced by the learned vector


def test_compute_mask_indices():
    torch.manual_seed(0)
    mask = native.compute_mask_indices((4, 50), mask_prob=0.3, mask_length=4, lengths=[50, 50, 20, 9], min_masks=1)
    assert mask.shape == (4, 50) and mask.dtype == torch.bool
    assert not mask[2, 20:].any() and not mask[3, 9:].any()  # spans start inside each row's length
    assert all(mask[row].sum() >= 4 for row in range(4))  # at least one span of mask_length
    assert mask[0].sum() <= 4 * int(0.3 * 50 / 4 + 1)
    with pytest.raises(ModelInputError, match="mask_length must be from 1 to the sequence length"):
        native.compute_mask_indices((1, 3), 0.5, 4)


# --- config and errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(ARCHS))
def test_config_defaults_match_transformers(arch):
    prefix, config_cls = ARCHS[arch]
    derived = {"output_hidden_size": 768} if "output_hidden_size" in config_cls.defaults() else None
    assert_config_defaults(config_cls, getattr(transformers, f"{prefix}Config"), derived)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"conv_kernel": [7, 3]}, "conv_dim, conv_kernel and conv_stride must be non-empty lists of one length"),
        ({"feat_extract_norm": "batch"}, "feat_extract_norm must be 'group' or 'layer'"),
        ({"num_conv_pos_embedding_groups": 4}, r"hidden_size \(30\) is not a multiple of num_conv_pos_embedding_gr"),
        ({"num_attention_heads": 4}, r"hidden_size \(30\) is not a multiple of num_attention_heads \(4\)"),
        ({"feat_extract_activation": "prelu"}, "feat_extract_activation 'prelu' is not supported"),
        ({"codevector_dim": 5}, r"codevector_dim \(5\) must be a multiple of num_codevector_groups \(2\)"),
    ],
)
def test_unsupported_configs_are_refused(config, match):
    with pytest.raises(ConfigError, match=match) as err:
        native.Wav2Vec2ForPreTraining(native.Wav2Vec2Config(**{**TINY, **config}))
    assert err.value.hint


def test_classifiers_refuse_the_adapter():
    with pytest.raises(ConfigError, match="does not support the adapter"):
        native.Wav2Vec2ForSequenceClassification(native.Wav2Vec2Config(**TINY, add_adapter=True))
    with pytest.raises(ConfigError, match="vocab_size is null"):
        native.Wav2Vec2ForCTC(native.Wav2Vec2Config(**{**TINY, "vocab_size": None}))


@pytest.fixture(scope="module")
def ctc(checkpoint):
    return build_native("ctc", checkpoint("wav2vec2", "ctc")[0], native.Wav2Vec2ForCTC)


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ({"input_values": torch.randn(SAMPLES)}, r"raw audio of shape \(batch, samples\), found \(400,\)"),
        ({}, r"raw audio of shape \(batch, samples\), found None"),
        ({**_audio(), "attention_mask": torch.ones(3, 399)}, r"attention_mask must have the shape of input_values"),
        ({"input_values": torch.randn(2, 20)}, "20 samples are too short for the feature encoder"),
        ({**_audio(), "labels": torch.tensor([[1, 23]] * 3)}, r"CTC labels must be below vocab_size \(23\), found 23"),
    ],
)
def test_bad_inputs(ctc, inputs, match):
    with pytest.raises(ModelInputError, match=match):
        ctc(**inputs)


def test_pretraining_loss_needs_the_mask(checkpoint):
    model = build_native("pretraining", checkpoint("wav2vec2", "pretraining")[0], native.Wav2Vec2ForPreTraining)
    labels = _labels("pretraining")
    with pytest.raises(ModelInputError, match="needs mask_time_indices with sampled_negative_indices"):
        model(**_audio(), sampled_negative_indices=labels["sampled_negative_indices"])


def test_masked_frames_need_the_mask_embedding(tmp_path):
    model = native.Wav2Vec2Model(native.Wav2Vec2Config(**TINY, mask_time_prob=0.0)).eval()
    with pytest.raises(ModelInputError, match="mask_time_indices need masked_spec_embed"):
        model(**_audio(), mask_time_indices=torch.ones(3, FRAMES, dtype=torch.bool))
