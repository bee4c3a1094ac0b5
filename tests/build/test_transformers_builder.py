"""Building transformers-pack entries: every seed-page task through ``factory.build``,
compared with the transformers Auto class on the same tiny checkpoint; components;
the security options; and the error when transformers is missing."""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.build import transformers_builder as hf_builder
from factory.errors import (
    CheckpointError,
    MissingDependencyError,
    PickleRefusedError,
    WeightsMismatchError,
)
from factory.registry import sources

T = transformers
ATOL = 1e-5
V = 99  # vocabulary size of the tiny text models
PACK_DIR = sources.builtin_dir() / "packs" / "transformers"
#: A table of the task table plus the pack alone, so native registrations never take over these tests.
PACK_TABLE_PATHS = [sources.builtin_dir() / "tasks.yaml", PACK_DIR]

TEXT = dict(
    vocab_size=V,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
)
VISION = dict(
    image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
)
WAV2VEC2 = dict(
    vocab_size=32,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=(8, 8),
    conv_kernel=(8, 8),
    conv_stride=(4, 4),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    num_labels=3,
    classifier_proj_size=16,
    tdnn_dim=(8, 8),
    tdnn_kernel=(3, 1),
    tdnn_dilation=(1, 1),
    xvector_output_dim=8,
)


def ids(*shape: int) -> torch.Tensor:
    return torch.randint(3, V - 2, shape, generator=torch.Generator().manual_seed(1))


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(2))


@dataclass(frozen=True)
class Spec:
    """One seed task, one architecture: a tiny config and dummy inputs for it."""

    task: str
    arch: str
    config: Callable[[], Any]
    inputs: Callable[[], dict[str, Any]]
    seeded: bool = False  # the forward pass samples noise: reseed before each call

    @property
    def id(self) -> str:
        return f"{self.task}/{self.arch}"


def text_inputs() -> dict[str, Any]:
    return {"input_ids": ids(2, 7), "attention_mask": torch.ones(2, 7, dtype=torch.long)}


def pixels(size: int = 32, batch: int = 1) -> dict[str, Any]:
    return {"pixel_values": rand(batch, 3, size, size)}


CLIP_TEXT = {**TEXT, "max_position_embeddings": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def detr_config() -> Any:
    backbone = T.ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 8, 16, 16],
        depths=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return T.DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        num_queries=3,
        num_labels=3,
    )


def llava_config() -> Any:
    vision = T.CLIPVisionConfig(**VISION)
    text = T.LlamaConfig(
        vocab_size=V + 1,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return T.LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=V, projection_dim=32, vision_feature_layer=-1
    )


def llava_inputs() -> dict[str, Any]:
    image_tokens = torch.full((1, 4), V)
    text = ids(1, 5)
    return {"input_ids": torch.cat([text[:, :1], image_tokens, text[:, 1:]], dim=1), **pixels()}


SPECS = [
    # generic and nlp
    Spec("model", "roberta", lambda: T.RobertaConfig(**TEXT), text_inputs),
    Spec("pretraining", "albert", lambda: T.AlbertConfig(embedding_size=16, **TEXT), text_inputs),
    Spec(
        "causal-lm",
        "llama",
        lambda: T.LlamaConfig(
            vocab_size=V,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        ),
        text_inputs,
    ),
    Spec(
        "masked-lm",
        "distilbert",
        lambda: T.DistilBertConfig(
            vocab_size=V, dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64
        ),
        text_inputs,
    ),
    Spec(
        "seq2seq-lm",
        "bart",
        lambda: T.BartConfig(
            vocab_size=V,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            max_position_embeddings=64,
        ),
        lambda: {**text_inputs(), "decoder_input_ids": ids(2, 4)},
    ),
    Spec(
        "sequence-classification",
        "electra",
        lambda: T.ElectraConfig(embedding_size=16, num_labels=3, **TEXT),
        text_inputs,
    ),
    Spec("multiple-choice", "roberta", lambda: T.RobertaConfig(**TEXT), lambda: {"input_ids": ids(2, 3, 7)}),
    Spec(
        "next-sentence-prediction",
        "ernie",
        lambda: T.ErnieConfig(**TEXT),
        lambda: {**text_inputs(), "token_type_ids": torch.tensor([[0] * 4 + [1] * 3] * 2)},
    ),
    Spec(
        "token-classification",
        "distilbert",
        lambda: T.DistilBertConfig(
            vocab_size=V, dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64, num_labels=5
        ),
        text_inputs,
    ),
    Spec("question-answering", "albert", lambda: T.AlbertConfig(embedding_size=16, **TEXT), text_inputs),
    Spec(
        "text-encoding",
        "t5",
        lambda: T.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4),
        text_inputs,
    ),
    Spec(
        "mask-generation",
        "sam",
        lambda: T.SamConfig(
            vision_config=dict(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=64,
                patch_size=16,
                output_channels=32,
                mlp_dim=37,
                global_attn_indexes=[1],
                window_size=2,
                num_pos_feats=16,
            ),
            prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=4),
            mask_decoder_config=dict(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16
            ),
        ),
        lambda: {**pixels(64), "input_points": torch.tensor([[[[10.0, 20.0]]]])},
    ),
    # vision
    Spec(
        "depth-estimation",
        "glpn",
        lambda: T.GLPNConfig(
            num_encoder_blocks=4,
            depths=[1, 1, 1, 1],
            sr_ratios=[8, 4, 2, 1],
            hidden_sizes=[8, 8, 16, 16],
            num_attention_heads=[1, 1, 1, 1],
            mlp_ratios=[2, 2, 2, 2],
            decoder_hidden_size=8,
        ),
        lambda: pixels(64),
    ),
    Spec("image-classification", "vit", lambda: T.ViTConfig(num_labels=3, **VISION), pixels),
    Spec(
        "video-classification",
        "videomae",
        lambda: T.VideoMAEConfig(num_frames=2, tubelet_size=2, num_labels=3, **VISION),
        lambda: {"pixel_values": rand(1, 2, 3, 32, 32)},
    ),
    Spec(
        "masked-image-modeling",
        "vit",
        lambda: T.ViTConfig(encoder_stride=16, **VISION),
        lambda: {**pixels(), "bool_masked_pos": torch.tensor([[True, False, False, True]])},
    ),
    Spec(
        "object-detection",
        "yolos",
        lambda: T.YolosConfig(num_detection_tokens=3, num_labels=3, **{**VISION, "image_size": [32, 32]}),
        pixels,
    ),
    Spec("image-segmentation", "detr", detr_config, lambda: pixels(64)),
    Spec(
        "image-to-image",
        "swin2sr",
        lambda: T.Swin2SRConfig(
            image_size=16, patch_size=1, embed_dim=16, depths=[1], num_heads=[2], window_size=4, upscale=2
        ),
        lambda: pixels(16),
    ),
    Spec(
        "semantic-segmentation",
        "segformer",
        lambda: T.SegformerConfig(
            num_encoder_blocks=2,
            depths=[1, 1],
            sr_ratios=[2, 1],
            hidden_sizes=[8, 16],
            num_attention_heads=[1, 1],
            patch_sizes=[7, 3],
            strides=[4, 2],
            mlp_ratios=[2, 2],
            decoder_hidden_size=16,
            num_labels=3,
        ),
        pixels,
    ),
    Spec(
        "instance-segmentation",
        "rf_detr",
        lambda: T.RfDetrConfig(
            backbone_config=dict(
                model_type="rf_detr_dinov2",
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                mlp_ratio=2,
                image_size=64,
                patch_size=8,
                out_features=["stage1", "stage2"],
                num_windows=2,
                window_block_indexes=[0],
            ),
            d_model=32,
            decoder_ffn_dim=37,
            decoder_layers=1,
            decoder_self_attention_heads=2,
            decoder_cross_attention_heads=2,
            num_queries=3,
            group_detr=1,
            intermediate_size=37,
            num_labels=3,
        ),
        lambda: pixels(64),
    ),
    Spec("universal-segmentation", "detr", detr_config, lambda: pixels(64)),
    Spec(
        "zero-shot-image-classification",
        "clip",
        lambda: T.CLIPConfig(text_config=CLIP_TEXT, vision_config=VISION, projection_dim=16),
        lambda: {**text_inputs(), **pixels()},
    ),
    Spec(
        "zero-shot-object-detection",
        "owlvit",
        lambda: T.OwlViTConfig(text_config=CLIP_TEXT, vision_config=VISION, projection_dim=32),
        lambda: {**text_inputs(), **pixels()},
    ),
    # audio
    Spec(
        "audio-classification", "wav2vec2", lambda: T.Wav2Vec2Config(**WAV2VEC2), lambda: {"input_values": rand(2, 400)}
    ),
    Spec(
        "audio-frame-classification",
        "wav2vec2",
        lambda: T.Wav2Vec2Config(**WAV2VEC2),
        lambda: {"input_values": rand(2, 400)},
    ),
    Spec("ctc", "wav2vec2", lambda: T.Wav2Vec2Config(**WAV2VEC2), lambda: {"input_values": rand(2, 400)}),
    Spec("audio-xvector", "wav2vec2", lambda: T.Wav2Vec2Config(**WAV2VEC2), lambda: {"input_values": rand(2, 400)}),
    Spec(
        "speech-seq2seq",
        "whisper",
        lambda: T.WhisperConfig(
            vocab_size=V,
            num_mel_bins=16,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            max_source_positions=8,
            max_target_positions=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            begin_suppress_tokens=None,
            suppress_tokens=None,
        ),
        lambda: {"input_features": rand(1, 16, 16), "decoder_input_ids": ids(1, 4)},
    ),
    Spec(
        "text-to-spectrogram",
        "speecht5",
        lambda: T.SpeechT5Config(
            vocab_size=V,
            hidden_size=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            num_mel_bins=8,
            speech_decoder_prenet_units=16,
            speech_decoder_postnet_layers=1,
            speech_decoder_postnet_units=16,
            speaker_embedding_dim=8,
            max_text_positions=64,
            max_speech_positions=64,
        ),
        lambda: {"input_ids": ids(1, 7), "decoder_input_values": rand(1, 6, 8), "speaker_embeddings": rand(1, 8)},
        seeded=True,
    ),
    Spec(
        "text-to-waveform",
        "vits",
        lambda: T.VitsConfig(
            vocab_size=20,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            ffn_dim=16,
            flow_size=8,
            spectrogram_bins=9,
            upsample_initial_channel=16,
            upsample_rates=[2, 2],
            upsample_kernel_sizes=[4, 4],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            prior_encoder_num_flows=1,
            prior_encoder_num_wavenet_layers=1,
            posterior_encoder_num_wavenet_layers=1,
            duration_predictor_num_flows=1,
            duration_predictor_filter_channels=16,
            depth_separable_num_layers=1,
        ),
        lambda: {"input_ids": torch.randint(1, 19, (1, 6), generator=torch.Generator().manual_seed(3))},
        seeded=True,
    ),
    # multimodal
    Spec(
        "table-question-answering",
        "tapas",
        lambda: T.TapasConfig(**TEXT),
        lambda: {**text_inputs(), "token_type_ids": torch.zeros(2, 7, 7, dtype=torch.long)},
    ),
    Spec(
        "document-question-answering",
        "layoutlm",
        lambda: T.LayoutLMConfig(max_2d_position_embeddings=128, **TEXT),
        lambda: {**text_inputs(), "bbox": torch.tensor([[[1, 2, 30, 40]] * 7] * 2)},
    ),
    Spec(
        "visual-question-answering",
        "vilt",
        lambda: T.ViltConfig(num_labels=3, **{**VISION, "max_position_embeddings": 16, "vocab_size": V}),
        lambda: {
            **text_inputs(),
            "pixel_values": rand(2, 3, 32, 32),
            "pixel_mask": torch.ones(2, 32, 32, dtype=torch.long),
        },
    ),
    Spec("image-text-to-text", "llava", llava_config, llava_inputs),
    # time series
    Spec(
        "time-series-prediction",
        "timesfm",
        lambda: T.TimesFmConfig(
            patch_length=8,
            context_length=32,
            horizon_length=8,
            hidden_size=16,
            intermediate_size=16,
            head_dim=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            quantiles=[0.1, 0.5, 0.9],
        ),
        lambda: {"past_values": [rand(32), rand(24)], "freq": [0, 1]},
    ),
]


def pack_only_table() -> Any:
    return factory.load_registry(PACK_TABLE_PATHS, include_builtin=False, include_plugins=False)


def make_checkpoint(spec: Spec, directory: Path, table: Any = None) -> Path:
    """A tiny random model of ``spec`` saved by transformers' Auto class."""
    auto = getattr(T, (table or pack_only_table()).tasks[spec.task].auto_class)
    torch.manual_seed(0)
    model = auto.from_config(spec.config())
    model.save_pretrained(directory)
    return directory


def forward(spec: Spec, model: Any) -> Any:
    if spec.seeded:
        torch.manual_seed(123)
    with torch.no_grad():
        return model(**spec.inputs())


def flatten(output: Any) -> list[torch.Tensor]:
    """Every tensor of a model output, in a fixed order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for key in output for t in flatten(output[key])]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in flatten(item)]
    return []


def seed_tasks() -> list[str]:
    """The model tasks of the seed page: tasks.yaml above the 'beyond the seed page' section."""
    import yaml

    text = (sources.builtin_dir() / "tasks.yaml").read_text(encoding="utf-8")
    seed_part = text.split("# --- beyond the seed page")[0]
    return [t["name"] for t in yaml.safe_load(seed_part)["tasks"] if t["group"] != "component"]


@pytest.fixture(scope="module")
def pack_table():
    return pack_only_table()


def test_specs_cover_every_seed_task():
    assert len(seed_tasks()) == 36
    missing = sorted(set(seed_tasks()) - {spec.task for spec in SPECS})
    assert not missing, f"seed tasks without a build test: {missing}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_seed_task_builds_like_transformers(spec: Spec, pack_table, tmp_path):
    directory = make_checkpoint(spec, tmp_path, pack_table)
    auto = getattr(T, pack_table.tasks[spec.task].auto_class)
    reference = auto.from_pretrained(directory).eval()
    built = factory.build(spec.task, directory, registry=pack_table)
    registration = pack_table.resolve(spec.task, spec.arch)
    assert registration.builder == "transformers"
    assert type(built) is type(reference)
    assert f"{type(built).__module__}:{type(built).__qualname__}" == registration.target
    assert built.factory_provenance["target"] == registration.target
    assert not built.training
    expected, got = flatten(forward(spec, reference)), flatten(forward(spec, built))
    assert expected and len(got) == len(expected)
    for want, have in zip(expected, got):
        torch.testing.assert_close(have, want, atol=ATOL, rtol=0)


# --- options, security, errors ------------------------------------------------------
TINY_ROBERTA = dict(TEXT, num_hidden_layers=1)


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("roberta")
    torch.manual_seed(0)
    T.RobertaModel(T.RobertaConfig(**TINY_ROBERTA)).save_pretrained(directory)
    return directory


def state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_default_table_builds_pack_entry(tmp_path):
    """An architecture only the pack serves (electra) builds transformers' class from the default table."""
    assert factory.registry().resolve("model", "electra").builder == "transformers"
    torch.manual_seed(0)
    T.ElectraModel(T.ElectraConfig(**dict(TEXT, num_hidden_layers=1, embedding_size=16))).save_pretrained(tmp_path)
    model = factory.build("model", tmp_path)
    assert type(model) is T.ElectraModel
    assert model.factory_provenance["registration"].startswith(str(PACK_DIR / "electra.yaml"))


def test_fresh_model_from_architecture_name(pack_table):
    model = factory.build("model", "roberta", registry=pack_table, config_overrides=TINY_ROBERTA)
    assert type(model) is T.RobertaModel and not model.training
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    assert next(model.parameters()).dtype == torch.float32


def test_weights_false_gives_fresh_model_of_checkpoint_config(roberta_dir, pack_table):
    loaded = factory.build("model", roberta_dir, registry=pack_table)
    fresh = factory.build("model", roberta_dir, registry=pack_table, weights=False)
    same = {k: v for k, v in fresh.config.to_dict().items() if k != "_name_or_path"}
    assert same == {k: v for k, v in loaded.config.to_dict().items() if k != "_name_or_path"}
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(state(fresh)[key], state(loaded)[key])


def test_dtype_and_overrides(roberta_dir, pack_table):
    model = factory.build(
        "model", roberta_dir, registry=pack_table, dtype="bfloat16", config_overrides={"output_hidden_states": True}
    )
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config.output_hidden_states is True


def test_config_component(roberta_dir, pack_table):
    config = factory.build(
        "config", roberta_dir, registry=pack_table, config_overrides={"num_labels": 4, "factory_extra": "kept"}
    )
    assert type(config) is T.RobertaConfig
    assert config.num_labels == 4 and config.factory_extra == "kept" and config.hidden_size == 32
    default = factory.build("config", "roberta", registry=pack_table)
    assert type(default) is T.RobertaConfig and default.hidden_size == 768


def test_architecture_config_class_like_the_auto_classes(pack_table, tmp_path):
    # transformers serves internlm3 with LlamaForCausalLM, configured by the InternLM3Config instance
    model_cls = hf_builder.import_target(pack_table.resolve("causal-lm", "internlm3"))
    config_cls = hf_builder.pack_config(pack_table, "internlm3")
    assert model_cls is T.LlamaForCausalLM and config_cls is T.InternLM3Config
    tiny = dict(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    options = dict(weights=True, dtype=None, device=None, allow_pickle=False, strict=True)
    fresh = hf_builder.build_model(model_cls, None, config_overrides=tiny, config_cls=config_cls, **options)
    assert type(fresh.config) is T.InternLM3Config
    fresh.save_pretrained(tmp_path)
    loaded = hf_builder.build_model(model_cls, tmp_path, config_overrides={}, config_cls=config_cls, **options)
    reference = T.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded.config) is type(reference.config) is T.InternLM3Config
    torch.testing.assert_close(loaded(ids(1, 5)).logits, reference(ids(1, 5)).logits, atol=ATOL, rtol=0)
    # a native config winning over the pack's is skipped for transformers classes
    assert hf_builder.pack_config(factory.registry(), "gpt2") is T.GPT2Config


def test_never_trusts_remote_code_and_stays_local(roberta_dir, pack_table, monkeypatch):
    calls = []
    original = T.RobertaModel.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        calls.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(T.RobertaModel, "from_pretrained", classmethod(spy))
    factory.build("model", roberta_dir, registry=pack_table)
    assert calls and calls[0]["trust_remote_code"] is False
    assert calls[0]["local_files_only"] is True and calls[0]["use_safetensors"] is True


def test_auto_map_is_not_followed(roberta_dir, pack_table, tmp_path):
    import shutil

    directory = tmp_path / "ckpt"
    shutil.copytree(roberta_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil_module.EvilModel"}
    (directory / "config.json").write_text(json.dumps(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = factory.build("model", directory, registry=pack_table)
    assert type(model) is T.RobertaModel


def _pickle_checkpoint(roberta_dir: Path, directory: Path) -> Path:
    directory.mkdir()
    (directory / "config.json").write_text((roberta_dir / "config.json").read_text())
    from safetensors.torch import load_file

    torch.save(load_file(str(roberta_dir / "model.safetensors")), directory / "pytorch_model.bin")
    return directory


def test_pickle_refused_then_opt_in(roberta_dir, pack_table, tmp_path):
    directory = _pickle_checkpoint(roberta_dir, tmp_path / "pickle")
    with pytest.raises(PickleRefusedError, match="pytorch_model.bin") as err:
        factory.build("model", directory, registry=pack_table)
    assert "allow_pickle=True" in err.value.hint
    model = factory.build("model", directory, registry=pack_table, allow_pickle=True)
    reference = T.RobertaModel.from_pretrained(roberta_dir)
    key = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(state(model)[key], state(reference)[key])


def test_no_weights_is_a_checkpoint_error(roberta_dir, pack_table, tmp_path):
    directory = tmp_path / "empty"
    directory.mkdir()
    (directory / "config.json").write_text((roberta_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no weights in") as err:
        factory.build("model", directory, registry=pack_table)
    assert "weights=False" in err.value.hint


def test_strict_weights_mismatch(roberta_dir, pack_table):
    # a bare RobertaModel checkpoint lacks the masked-LM head
    with pytest.raises(WeightsMismatchError, match=r"missing: .*lm_head") as err:
        factory.build("masked-lm", roberta_dir, registry=pack_table)
    assert "strict=False" in err.value.hint
    with pytest.warns(UserWarning, match="lm_head"):
        model = factory.build("masked-lm", roberta_dir, registry=pack_table, strict=False)
    assert type(model) is T.RobertaForMaskedLM


def test_corrupt_safetensors_is_a_checkpoint_error(roberta_dir, pack_table, tmp_path):
    directory = tmp_path / "corrupt"
    directory.mkdir()
    (directory / "config.json").write_text((roberta_dir / "config.json").read_text())
    (directory / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(CheckpointError, match="could not load RobertaModel") as err:
        factory.build("model", directory, registry=pack_table)
    assert err.value.file == str(directory)


# --- components -------------------------------------------------------------------
@pytest.fixture(scope="module")
def electra_tokenizer_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("electra-tok")
    T.ElectraConfig(vocab_size=9).save_pretrained(directory)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "a"]
    T.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def wav2vec2_processor_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("w2v2-proc")
    vocab = directory / "vocab-src.json"
    vocab.write_text(json.dumps({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6}))
    processor = T.Wav2Vec2Processor(
        feature_extractor=T.Wav2Vec2FeatureExtractor(), tokenizer=T.Wav2Vec2CTCTokenizer(str(vocab))
    )
    processor.save_pretrained(directory)
    T.Wav2Vec2Config(vocab_size=7).save_pretrained(directory)
    return directory


def test_tokenizer_component(electra_tokenizer_dir, pack_table):
    tokenizer = factory.build("tokenizer", electra_tokenizer_dir, registry=pack_table)
    reference = T.AutoTokenizer.from_pretrained(electra_tokenizer_dir)
    assert type(tokenizer) is type(reference) is T.BertTokenizer
    assert tokenizer("hello the world").input_ids == reference("hello the world").input_ids == [2, 5, 7, 6, 3]


def test_feature_extractor_and_processor_components(wav2vec2_processor_dir, pack_table):
    import numpy as np

    audio = np.sin(np.arange(800, dtype=np.float32) / 7)
    extractor = factory.build("feature-extractor", wav2vec2_processor_dir, registry=pack_table)
    reference = T.AutoFeatureExtractor.from_pretrained(wav2vec2_processor_dir)
    assert type(extractor) is type(reference) is T.Wav2Vec2FeatureExtractor
    np.testing.assert_allclose(
        extractor(audio, sampling_rate=16000).input_values[0], reference(audio, sampling_rate=16000).input_values[0]
    )
    processor = factory.build("processor", wav2vec2_processor_dir, registry=pack_table)
    assert type(processor) is T.Wav2Vec2Processor
    assert (
        processor.tokenizer("AB").input_ids
        == T.AutoProcessor.from_pretrained(wav2vec2_processor_dir).tokenizer("AB").input_ids
    )


def test_component_needs_files(pack_table):
    with pytest.raises(CheckpointError, match="needs files"):
        factory.build("tokenizer", "electra", registry=pack_table)


def test_image_processor_component(pack_table, tmp_path):
    from transformers.utils import is_torchvision_available, is_vision_available

    registration = pack_table.resolve("image-processor", "vit")
    if not (is_vision_available() or is_torchvision_available()):
        with pytest.raises(MissingDependencyError, match="Pillow|torchvision") as err:
            hf_builder.import_target(registration)
        assert err.value.hint.startswith("pip install")
        return
    processor_cls = hf_builder.import_target(registration)
    processor_cls().save_pretrained(tmp_path)
    T.ViTConfig().save_pretrained(tmp_path)
    processor = factory.build("image-processor", tmp_path, registry=pack_table)
    reference = T.AutoImageProcessor.from_pretrained(tmp_path)
    image = (rand(3, 40, 48).abs() * 100).to(torch.uint8).permute(1, 2, 0).numpy()
    torch.testing.assert_close(
        torch.as_tensor(processor(image, return_tensors="pt").pixel_values),
        torch.as_tensor(reference(image, return_tensors="pt").pixel_values),
    )


# --- without transformers ---------------------------------------------------------------
@pytest.fixture
def no_transformers(monkeypatch):
    """Every ``transformers`` module unimportable, as when the package is not installed."""
    for name in [n for n in sys.modules if n == "transformers" or n.startswith("transformers.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "transformers", None)


def test_pack_lists_and_validates_without_transformers(no_transformers):
    table = pack_only_table()
    assert table.resolve("depth-estimation", "dpt").target.endswith(":DPTForDepthEstimation")
    assert len(table.find("image-classification")) > 20


def test_building_without_transformers_says_what_to_install(no_transformers, roberta_dir, pack_table):
    registration = pack_table.resolve("model", "roberta")
    with pytest.raises(MissingDependencyError, match="transformers, which is not installed") as err:
        hf_builder.import_target(registration)
    assert "pip install 'factory-registry[transformers]'" in err.value.hint
    assert err.value.file == registration.provenance.file
    with pytest.raises(MissingDependencyError, match="not installed"):
        factory.build("model", roberta_dir, registry=pack_table)
    with pytest.raises(MissingDependencyError, match="factory-registry\\[transformers\\]"):
        hf_builder.build_model(
            object,
            roberta_dir,
            weights=True,
            dtype=None,
            device=None,
            config_overrides={},
            allow_pickle=False,
            strict=True,
        )


# --- bad inputs ----------------------------------------------------------------------
def test_config_rejecting_values_is_a_config_error(roberta_dir, pack_table):
    from factory.errors import ConfigError

    with pytest.raises(ConfigError, match="could not build RobertaConfig from its defaults.*hidden_act"):
        factory.build("config", "roberta", registry=pack_table, config_overrides={"hidden_act": 5})
    with pytest.raises(ConfigError, match=f"from {roberta_dir}") as err:
        factory.build("model", roberta_dir, registry=pack_table, config_overrides={"hidden_act": 5})
    assert err.value.file == str(roberta_dir / "config.json")


def test_unknown_dtype(roberta_dir, pack_table):
    from factory.errors import ConfigError

    with pytest.raises(ConfigError, match="dtype 'float13' is not a floating-point torch dtype"):
        factory.build("model", roberta_dir, registry=pack_table, dtype="float13")


def test_component_without_its_files(roberta_dir, pack_table):
    with pytest.raises(CheckpointError, match="no tokenizer files in .* for RobertaTokenizer") as err:
        factory.build("tokenizer", roberta_dir, registry=pack_table)
    assert err.value.file == str(roberta_dir) and "save_pretrained" in err.value.hint
    with pytest.raises(CheckpointError, match="no processor files"):
        hf_builder.build_component(T.Wav2Vec2Processor, roberta_dir)
    with pytest.raises(CheckpointError, match="no feature extractor files"):
        hf_builder.build_component(T.Wav2Vec2FeatureExtractor, roberta_dir)


def test_missing_optional_backend_of_a_model(pack_table):
    from transformers.utils import is_torchaudio_available

    if is_torchaudio_available():
        pytest.skip("torchaudio is installed")
    registration = pack_table.resolve("audio-tokenization", "higgs_audio_v2_tokenizer")
    with pytest.raises(MissingDependencyError, match="needs torchaudio, not installed") as err:
        hf_builder.import_target(registration)
    assert err.value.hint == "pip install torchaudio" and err.value.line == registration.provenance.line


def test_missing_class_names_the_pack_version(pack_table, tmp_path):
    from dataclasses import replace

    from factory.errors import TargetImportError

    registration = replace(
        pack_table.resolve("model", "roberta"),
        target="transformers.models.roberta.modeling_roberta:RobertaRemovedModel",
    )
    with pytest.raises(TargetImportError, match="RobertaRemovedModel"):
        hf_builder.import_target(registration)
    old_pack = tmp_path / "roberta.yaml"
    old_pack.write_text(
        Path(registration.provenance.file).read_text().replace("transformers==5.23.0", "transformers==4.0.0")
    )
    registration = replace(registration, provenance=replace(registration.provenance, file=str(old_pack)))
    with pytest.raises(TargetImportError) as err:
        hf_builder.import_target(registration)
    assert "generated from transformers==4.0.0" in err.value.hint and "factory pack transformers" in err.value.hint


def _copy_with_config(source: Path, target: Path, **changes: Any) -> Path:
    import shutil

    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **changes}))
    return target


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"num_hidden_layers": 10**9}, "num_hidden_layers"),
        ({"hidden_size": -8}, "hidden_size"),
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"layer_norm_eps": float("nan")}, "layer_norm_eps"),
        ({"text_config": {"num_hidden_layers": 10**6}}, "num_hidden_layers"),  # a sub-config too
    ],
)
def test_pack_config_values_are_checked_before_transformers_sees_them(roberta_dir, pack_table, tmp_path, changes, key):
    from factory.errors import ConfigError

    directory = _copy_with_config(roberta_dir, tmp_path / "ckpt", **changes)
    started = time.monotonic()
    for task in ("config", "model"):
        with pytest.raises(ConfigError, match=f"config.json: {key} must be") as err:
            factory.build(task, directory, registry=pack_table)
        assert err.value.file == str(directory / "config.json") and err.value.key == key
    assert time.monotonic() - started < 10


def test_pack_model_size_budget(roberta_dir, pack_table, tmp_path):
    from factory.errors import ConfigError

    directory = _copy_with_config(
        roberta_dir, tmp_path / "ckpt", hidden_size=2**17, intermediate_size=2**20, num_hidden_layers=1024
    )
    with pytest.raises(ConfigError, match="more than the budget") as err:
        factory.build("model", directory, registry=pack_table, weights=False)
    assert err.value.file == str(directory / "config.json")


@pytest.mark.parametrize("value", ["int8", "float8_e4m3fn"])
def test_pack_bad_dtype_in_config_json(roberta_dir, pack_table, tmp_path, value):
    from factory.errors import ConfigError

    directory = _copy_with_config(roberta_dir, tmp_path / "ckpt", torch_dtype=value, dtype=value)
    with pytest.raises(ConfigError, match="is not a dtype a model can be built in") as err:
        factory.build("model", directory, registry=pack_table)
    assert err.value.file == str(directory / "config.json")
    with pytest.raises(ConfigError, match="cannot be built in"):
        factory.build("model", roberta_dir, registry=pack_table, dtype=torch.int8)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("name", ["tokenizer_config.json", "tokenizer.json", "vocab.json", "model.safetensors"])
def test_pack_files_are_checked_before_transformers_opens_them(roberta_dir, pack_table, tmp_path, name, finishes):
    from factory.errors import FactoryError

    directory = _copy_with_config(roberta_dir, tmp_path / "ckpt")
    (directory / name).unlink(missing_ok=True)
    os.mkfifo(directory / name)
    task = "model" if name.endswith(".safetensors") else "tokenizer"
    with pytest.raises(FactoryError, match="is a FIFO") as err:
        finishes(lambda: factory.build(task, directory, registry=pack_table))
    assert err.value.file == str(directory / name)
