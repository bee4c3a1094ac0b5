"""Components built from their own files: ``factory.build(<component>, dir)`` on directories without config.json,
the component classes that decide (shown by ``explain`` and ``show``), the fallback to config.json, and errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import factory
from factory.cli.main import main
from factory.errors import ConfigError, PreprocessorFileError

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("transformers")
pytest.importorskip("PIL")
from transformers import (
    CLIPImageProcessor,
    DeiTImageProcessor,
    ViTImageProcessor,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    WhisperFeatureExtractor,
)


def saved(directory: Path, component) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        component.save_pretrained(directory)
    assert not (directory / "config.json").exists()
    return directory


def steps(task: str, directory: Path) -> list[dict]:
    return factory.explain(task, directory)


def step(chain: list[dict], name: str) -> dict:
    return next(s for s in chain if s["step"] == name)


def line_of(arch: str, start: str) -> int:
    """The line of ``registry.d/models/<arch>.yaml`` that starts with ``start``."""
    lines = (REPO / "registry.d" / "models" / f"{arch}.yaml").read_text(encoding="utf-8").splitlines()
    return next(number for number, text in enumerate(lines, 1) if text.startswith(start))


@pytest.mark.parametrize(
    "task, component, built, arch",
    [
        (
            "image-processor",
            lambda: ViTImageProcessor(),
            "factory.components.image_processing.ViTImageProcessor",
            "vit",
        ),
        (
            "image-processor",
            lambda: CLIPImageProcessor(),
            "factory.components.image_processing.CLIPImageProcessor",
            "clip",
        ),
        (
            "feature-extractor",
            lambda: WhisperFeatureExtractor(),
            "factory.components.feature_extraction.WhisperFeatureExtractor",
            "whisper",
        ),
        (
            "feature-extractor",
            lambda: Wav2Vec2FeatureExtractor(),
            "factory.components.feature_extraction.Wav2Vec2FeatureExtractor",
            "wav2vec2",
        ),
    ],
)
def test_preprocessor_config_alone_builds_the_native_component(tmp_path, task, component, built, arch):
    directory = saved(tmp_path, component())
    obj = factory.build(task, directory)
    assert f"{type(obj).__module__}.{type(obj).__qualname__}" == built
    assert obj.factory_provenance["architecture"] == arch
    line = line_of(arch, f"  {task}: factory.")
    assert obj.factory_provenance["registration"].endswith(f"registry.d/models/{arch}.yaml:{line}")
    chain = steps(task, directory)
    decided = step(chain, "component class")
    assert "preprocessor_config.json" in decided["result"] and f"-> architecture {arch!r}" in decided["result"]
    assert decided["provenance"].rpartition(":")[0].endswith(f"registry.d/models/{arch}.yaml")
    assert not any(s["step"] == "architecture" for s in chain)  # config.json was never needed


def test_a_pack_component_from_its_own_file(tmp_path):
    """DeiT has no native image processor: the pack's transformers class is built, still without config.json."""
    directory = saved(tmp_path, DeiTImageProcessor())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = factory.build("image-processor", directory)
    assert type(obj).__name__.startswith("DeiTImageProcessor")
    assert step(steps("image-processor", directory), "component class")["provenance"].endswith(
        "registry.d/packs/transformers/deit.yaml:18"
    )


def test_legacy_feature_extractor_type_names_an_image_processor(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"feature_extractor_type": "CLIPFeatureExtractor", "size": 224, "crop_size": 224})
    )
    obj = factory.build("image-processor", tmp_path)
    assert type(obj).__name__ == "CLIPImageProcessor" and obj.size == {"shortest_edge": 224}
    result = step(steps("image-processor", tmp_path), "component class")["result"]
    assert "feature_extractor_type = 'CLIPFeatureExtractor (read as CLIPImageProcessor)'" in result


def test_fast_and_pil_suffixes_are_read_as_the_class(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "ViTImageProcessorFast"}))
    assert type(factory.build("image-processor", tmp_path)).__name__ == "ViTImageProcessor"
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "SiglipImageProcessorPil"}))
    assert type(factory.build("image-processor", tmp_path)).__name__ == "SiglipImageProcessor"


def test_processor_and_tokenizer_from_their_files(tmp_path):
    """transformers 5 saves a processor as processor_config.json + tokenizer files; no config.json."""
    from transformers import Wav2Vec2Processor

    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5}))
    tokenizer = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    saved(tmp_path, Wav2Vec2Processor(Wav2Vec2FeatureExtractor(), tokenizer))
    built = {
        task: type(factory.build(task, tmp_path)).__name__ for task in ("processor", "tokenizer", "feature-extractor")
    }
    assert built == {
        "processor": "Wav2Vec2Processor",
        "tokenizer": "Wav2Vec2CTCTokenizer",
        "feature-extractor": "Wav2Vec2FeatureExtractor",
    }
    assert (
        "processor_config.json processor_class = 'Wav2Vec2Processor'"
        in step(steps("processor", tmp_path), "component class")["result"]
    )
    assert "tokenizer_config.json tokenizer_class" in step(steps("tokenizer", tmp_path), "component class")["result"]
    fe = step(steps("feature-extractor", tmp_path), "component class")["result"]
    assert fe.startswith("processor_config.json feature_extractor.feature_extractor_type")


def test_processor_class_finds_the_image_processor_without_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"processor_class": "CLIPProcessor"}))
    obj = factory.build("image-processor", tmp_path)
    assert type(obj).__name__ == "CLIPImageProcessor"
    result = step(steps("image-processor", tmp_path), "component class")["result"]
    assert "(processor class; its image-processor is built)" in result


def test_config_json_decides_when_the_files_do_not_say(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 32, "width": 32}}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    obj = factory.build("image-processor", tmp_path)
    assert type(obj).__name__ == "SiglipImageProcessor" and obj.size == {"height": 32, "width": 32}
    chain = steps("image-processor", tmp_path)
    assert step(chain, "architecture")["result"] == "config.json model_type -> siglip"
    assert not any(s["step"] == "component class" for s in chain)


def test_an_undeclared_class_falls_back_to_config_json(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "MyImageProcessor"}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    assert type(factory.build("image-processor", tmp_path)).__name__ == "ViTImageProcessor"
    chain = steps("image-processor", tmp_path)
    assert "no architecture declares this image-processor class" in step(chain, "component class")["result"]
    assert step(chain, "architecture")["result"] == "config.json model_type -> vit"


def test_the_file_wins_over_config_json(tmp_path):
    """As AutoImageProcessor: image_processor_type is read before config.json's model_type."""
    saved(tmp_path, CLIPImageProcessor())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    assert type(factory.build("image-processor", tmp_path)).__name__ == "CLIPImageProcessor"


def test_undeclared_class_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "ViTImageProcesor"}))
    with pytest.raises(ConfigError, match="no architecture declares") as err:
        factory.build("image-processor", tmp_path)
    assert "component_classes" in err.value.hint and err.value.file == str(tmp_path)
    with pytest.raises(ConfigError, match="no architecture declares"):
        factory.explain("image-processor", tmp_path)


def test_no_component_file_and_no_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json and no component file names the feature-extractor"):
        factory.build("feature-extractor", tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": 3}))
    with pytest.raises(ConfigError, match=r"read: preprocessor_config.json"):
        factory.build("image-processor", tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{oops", "not valid JSON"),
        ("[]", "must hold a JSON object"),
        (json.dumps({"image_processor_type": 3}), "must be a class name"),
    ],
)
def test_malformed_component_files(tmp_path, text, message):
    (tmp_path / "preprocessor_config.json").write_text(text)
    with pytest.raises((ConfigError, PreprocessorFileError), match=message) as err:
        factory.build("image-processor", tmp_path)
    assert err.value.file == str(tmp_path / "preprocessor_config.json")


def test_a_directory_named_like_a_component_file(tmp_path):
    (tmp_path / "preprocessor_config.json").mkdir()
    with pytest.raises(PreprocessorFileError, match="is a directory, not a regular file"):
        factory.build("image-processor", tmp_path)


def test_auto_map_is_never_followed(tmp_path):
    data = {"image_processor_type": "ViTImageProcessor", "auto_map": {"AutoImageProcessor": "evil.EvilProcessor"}}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="never imports code"):
        obj = factory.build("image-processor", tmp_path)
    assert type(obj).__name__ == "ViTImageProcessor"


def test_model_tasks_still_need_config_json(tmp_path):
    saved(tmp_path, ViTImageProcessor())
    with pytest.raises(ConfigError, match="does not exist") as err:
        factory.build("image-classification", tmp_path)
    assert Path(err.value.file).name == "config.json"


def test_explain_and_show_on_the_command_line(tmp_path, capsys):
    directory = saved(tmp_path / "vit", ViTImageProcessor())
    assert main(["explain", "image-processor", str(directory)]) == 0
    out = capsys.readouterr().out
    assert (
        "component class: preprocessor_config.json image_processor_type = 'ViTImageProcessor' -> architecture 'vit'"
        in out
    )
    assert f"at registry.d/models/vit.yaml:{line_of('vit', '  image-processor: [ViTImageProcessor]')}" in out
    assert "shadows: image-processor class ViTImageProcessor -> vit (pack layer)" in out
    assert main(["show", "whisper"]) == 0
    out = capsys.readouterr().out
    assert "component classes (a checkpoint file naming one is built by the architecture it points to):" in out
    line = line_of("whisper", "  feature-extractor: [WhisperFeatureExtractor]")
    assert f"feature-extractor            WhisperFeatureExtractor  [registry.d/models/whisper.yaml:{line}]" in out
    assert main(["show", "whisper", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    classes = {(c["task"], c["class"]): c for c in info["component_classes"]}
    assert classes[("tokenizer", "WhisperTokenizer")]["shadows"] == [
        "-> whisper (registry.d/packs/transformers/whisper.yaml:23, pack layer)"
    ]


def test_llama_tokenizer_class_stays_native(tmp_path):
    """The pack gives LlamaTokenizer to idefics; the native llama file takes it back for its own tokenizer."""
    table = factory.registry()
    claim = table.component_class("tokenizer", "LlamaTokenizer")
    assert claim.architecture == "llama" and claim.layer == "native"
    assert [s.architecture for s in claim.shadows] == ["idefics"]
    assert table.resolve("tokenizer", claim.architecture).target == "factory.components.tokenizer:Tokenizer"
