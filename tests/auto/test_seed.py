"""The seed page runs on factory: its code snippets verbatim (but for the import line), every Auto class it
names, each mapped to its task, generated from the task table."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import transformers

import factory
import factory.auto
from factory.models.bert import BertModel
from tests.auto import custom_models
from tests.models.tiny import TINY_BERT

#: The seed page's snippets, verbatim. The import line is the one line a user changes.
SEED_IMPORT = "from transformers import AutoConfig, AutoModel"
SEED_FROM_PRETRAINED = 'model = AutoModel.from_pretrained("google-bert/bert-base-cased")'
SEED_REGISTER = 'AutoConfig.register("new-model", NewModelConfig)\nAutoModel.register(NewModelConfig, NewModel)'
FACTORY_IMPORT = "from factory.auto import AutoConfig, AutoModel"

#: Every Auto class the seed page lists, with the task it serves (DESIGN.md, "The task table").
SEED_CLASSES = {
    "AutoConfig": "config",
    "AutoTokenizer": "tokenizer",
    "AutoFeatureExtractor": "feature-extractor",
    "AutoImageProcessor": "image-processor",
    "AutoProcessor": "processor",
    "AutoModel": "model",
    "AutoModelForPreTraining": "pretraining",
    "AutoModelForCausalLM": "causal-lm",
    "AutoModelForMaskedLM": "masked-lm",
    "AutoModelForMaskGeneration": "mask-generation",
    "AutoModelForSeq2SeqLM": "seq2seq-lm",
    "AutoModelForSequenceClassification": "sequence-classification",
    "AutoModelForMultipleChoice": "multiple-choice",
    "AutoModelForNextSentencePrediction": "next-sentence-prediction",
    "AutoModelForTokenClassification": "token-classification",
    "AutoModelForQuestionAnswering": "question-answering",
    "AutoModelForTextEncoding": "text-encoding",
    "AutoModelForDepthEstimation": "depth-estimation",
    "AutoModelForImageClassification": "image-classification",
    "AutoModelForVideoClassification": "video-classification",
    "AutoModelForMaskedImageModeling": "masked-image-modeling",
    "AutoModelForObjectDetection": "object-detection",
    "AutoModelForImageSegmentation": "image-segmentation",
    "AutoModelForImageToImage": "image-to-image",
    "AutoModelForSemanticSegmentation": "semantic-segmentation",
    "AutoModelForInstanceSegmentation": "instance-segmentation",
    "AutoModelForUniversalSegmentation": "universal-segmentation",
    "AutoModelForZeroShotImageClassification": "zero-shot-image-classification",
    "AutoModelForZeroShotObjectDetection": "zero-shot-object-detection",
    "AutoModelForAudioClassification": "audio-classification",
    "AutoModelForAudioFrameClassification": "audio-frame-classification",
    "AutoModelForCTC": "ctc",
    "AutoModelForSpeechSeq2Seq": "speech-seq2seq",
    "AutoModelForAudioXVector": "audio-xvector",
    "AutoModelForTextToSpectrogram": "text-to-spectrogram",
    "AutoModelForTextToWaveform": "text-to-waveform",
    "AutoModelForTableQuestionAnswering": "table-question-answering",
    "AutoModelForDocumentQuestionAnswering": "document-question-answering",
    "AutoModelForVisualQuestionAnswering": "visual-question-answering",
    "AutoModelForImageTextToText": "image-text-to-text",
    "AutoModelForTimeSeriesPrediction": "time-series-prediction",
}


def seed_code(*snippets: str) -> str:
    """The seed's code with the import line swapped, as a user would run it."""
    return "\n".join(FACTORY_IMPORT if s == SEED_IMPORT else s for s in snippets)


@pytest.fixture(scope="module")
def hf_bert_dir(tmp_path_factory):
    """A tiny BERT saved by transformers, served as google-bert/bert-base-cased by the fake Hub."""
    torch.manual_seed(0)
    config = transformers.BertConfig(**TINY_BERT)
    model = transformers.BertModel(config).eval()
    directory = tmp_path_factory.mktemp("bert-base-cased")
    model.save_pretrained(directory)
    return directory, model


# --- the snippets ------------------------------------------------------------------------------
def test_snippet_from_pretrained_builds_a_bert_model(fake_hub, hf_bert_dir):
    directory, reference = hf_bert_dir
    fake_hub.add_commit("google-bert/bert-base-cased", directory)
    scope: dict[str, object] = {}
    exec(seed_code(SEED_IMPORT, SEED_FROM_PRETRAINED), scope)
    model = scope["model"]
    assert isinstance(model, BertModel)  # "これは[BertModel]のインスタンス"
    assert model.factory_provenance["source"] == "hub"
    ids = torch.tensor([[2, 7, 1, 8, 2, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).last_hidden_state, reference(ids).last_hidden_state)


@pytest.mark.parametrize(
    ("config_cls", "model_cls"),
    [
        (custom_models.HFNewModelConfig, custom_models.HFNewModel),  # the seed's PretrainedConfig/PreTrainedModel
        (custom_models.NewModelConfig, custom_models.NewModel),  # factory's Config and a plain nn.Module
    ],
    ids=["transformers-classes", "factory-config-and-plain-module"],
)
def test_snippet_register_then_use_the_auto_classes_as_usual(config_cls, model_cls, tmp_path):
    scope: dict[str, object] = {"NewModelConfig": config_cls, "NewModel": model_cls}
    exec(compile(seed_code(SEED_IMPORT, SEED_REGISTER), "seed-snippet.py", "exec"), scope)
    AutoConfig, AutoModel = scope["AutoConfig"], scope["AutoModel"]

    config = AutoConfig.for_model("new-model", hidden_size=4)
    assert type(config) is config_cls and config.hidden_size == 4
    fresh = AutoModel.from_pretrained("new-model")
    assert type(fresh) is model_cls
    assert fresh.factory_provenance["registration"] == "seed-snippet.py:3"
    from_config = AutoModel.from_config(config)
    assert type(from_config) is model_cls and from_config.embed.weight.shape == (16, 4)

    saved = factory.save(fresh, tmp_path / "new-model")
    loaded = AutoModel.from_pretrained(saved)
    assert type(loaded) is model_cls
    assert torch.equal(loaded.proj.weight, fresh.proj.weight)
    assert AutoConfig.from_pretrained(saved).hidden_size == 8


def test_the_snippets_are_the_seed_pages_lines():
    """The seed page's code block, line by line (seeds/000_acbb66e8f53b4557.txt)."""
    page = textwrap.dedent("""\
        from transformers import AutoConfig, AutoModel

        AutoConfig.register("new-model", NewModelConfig)
        AutoModel.register(NewModelConfig, NewModel)
    """)
    assert page == f"{SEED_IMPORT}\n\n{SEED_REGISTER}\n"
    assert seed_code(SEED_IMPORT, SEED_REGISTER).splitlines()[1:] == SEED_REGISTER.splitlines()


# --- the classes ----------------------------------------------------------------------------------
def test_every_seed_auto_class_is_there_and_serves_its_task():
    table = factory.registry()
    for name, task in SEED_CLASSES.items():
        cls = getattr(factory.auto, name)
        assert cls.__name__ == name and cls.__module__ == "factory.auto"
        assert cls.task == task, name
        assert table.tasks[task].auto_class == name
    assert len(SEED_CLASSES) == 41


def test_the_classes_are_generated_from_the_task_table_including_transformers_only_ones():
    table = factory.registry()
    names = {t.auto_class: t.name for t in table.tasks.values() if t.auto_class}
    assert set(factory.auto.__all__) == {*names, "export_yaml"}
    extra = set(names) - set(SEED_CLASSES)
    assert {"AutoBackbone", "AutoVideoProcessor", "AutoModelForKeypointDetection"} <= extra
    for name in names:
        assert getattr(factory.auto, name).task == names[name]
    from factory.auto.classes import AutoComponentClass, AutoConfigClass, AutoModelClass

    assert issubclass(factory.auto.AutoConfig, AutoConfigClass)
    assert issubclass(factory.auto.AutoTokenizer, AutoComponentClass)
    assert issubclass(factory.auto.AutoVideoProcessor, AutoComponentClass)
    assert issubclass(factory.auto.AutoBackbone, AutoModelClass)


def test_a_misspelt_class_name_says_what_was_meant():
    with pytest.raises(AttributeError, match="did you mean 'AutoModelForCausalLM'"):
        factory.auto.AutoModelForCasualLM  # noqa: B018


def test_an_auto_class_is_not_instantiated():
    with pytest.raises(factory.UnsupportedOptionError, match=r"use AutoModel.from_pretrained\(name\)"):
        factory.auto.AutoModel()


def test_importing_factory_auto_and_its_names_imports_neither_torch_nor_transformers():
    code = (
        "import sys, factory.auto\n"
        "from factory.auto import AutoModel, AutoConfig, AutoTokenizer\n"
        "assert AutoModel.task == 'model'\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
