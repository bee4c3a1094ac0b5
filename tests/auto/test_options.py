"""from_pretrained / from_config with transformers' keyword arguments: mapped, passed, accepted without
effect, refused (with what to do instead), and config overrides."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

import factory
from factory.auto import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)
from factory.auto.options import REFUSED, UnreadSettingWarning
from factory.build.weights import WeightsMismatchWarning
from factory.errors import ConfigError, UnsupportedOptionError
from factory.models import bert as native_bert
from factory.models.generation_config import GenerationConfig
from tests.models.tiny import TINY_BERT, TINY_LLAMA


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BERT trunk with a WordPiece tokenizer, both saved by transformers."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("bert")
    transformers.BertModel(transformers.BertConfig(**TINY_BERT)).save_pretrained(directory)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(directory)
    return directory


# --- mapped and passed ------------------------------------------------------------------------------
def test_torch_dtype_and_dtype(bert_dir):
    assert AutoModel.from_pretrained(bert_dir, torch_dtype=torch.bfloat16).embeddings.word_embeddings.weight.dtype == (
        torch.bfloat16
    )
    assert AutoModel.from_pretrained(bert_dir, dtype="float16").pooler.dense.weight.dtype == torch.float16
    with pytest.raises(UnsupportedOptionError, match="torch_dtype=torch.float16 contradicts dtype='bfloat16'"):
        AutoModel.from_pretrained(bert_dir, dtype="bfloat16", torch_dtype=torch.float16)


@pytest.mark.parametrize(
    "device_map", ["cpu", {"": "cpu"}, {"embeddings": "cpu", "encoder": "cpu"}, "auto", torch.device("cpu")]
)
def test_device_map_naming_one_device(bert_dir, device_map):
    model = AutoModel.from_pretrained(bert_dir, device_map=device_map)
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_device_map_over_several_devices_is_refused(bert_dir):
    with pytest.raises(UnsupportedOptionError, match=r"spreads the model over \['cpu', 'cuda:0'\]") as err:
        AutoModel.from_pretrained(bert_dir, device_map={"embeddings": "cpu", "encoder": "cuda:0"})
    assert "puts the whole model on one device" in str(err.value)
    with pytest.raises(UnsupportedOptionError, match="offloading"):
        AutoModel.from_pretrained(bert_dir, device_map="disk")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="'cuda:0' is not available"):
            AutoModel.from_pretrained(bert_dir, device_map=0)


def test_hub_keywords_pass_through(fake_hub, bert_dir, tmp_path, monkeypatch):
    commit = fake_hub.add_commit("org/tiny-bert", bert_dir, token="secret")
    cache = tmp_path / "cache"
    model = AutoModel.from_pretrained("org/tiny-bert", revision=commit, token="secret", cache_dir=cache)
    assert model.factory_provenance["commit"] == commit
    assert {r.authorization for r in fake_hub.requests} == {"Bearer secret"}
    fake_hub.reset()
    again = AutoModel.from_pretrained("org/tiny-bert", revision=commit, cache_dir=cache, local_files_only=True)
    assert fake_hub.requests == [] and torch.equal(again.pooler.dense.weight, model.pooler.dense.weight)
    with pytest.raises(factory.HubError, match="not in the HF cache"):
        AutoModel.from_pretrained("org/tiny-bert", cache_dir=tmp_path / "empty", local_files_only=True)


# --- refused ----------------------------------------------------------------------------------------
def test_trust_remote_code_is_refused_with_how_to_register_the_code(bert_dir):
    with pytest.raises(UnsupportedOptionError) as err:
        AutoModel.from_pretrained(bert_dir, trust_remote_code=True)
    message = str(err.value)
    assert "trust_remote_code=True is refused" in message
    assert "architecture file in a registry source" in message and "AutoConfig.register(" in message
    assert "export_yaml" in message
    assert isinstance(AutoModel.from_pretrained(bert_dir, trust_remote_code=False), native_bert.BertModel)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("quantization_config", {"load_in_4bit": True}),
        ("load_in_8bit", True),
        ("from_tf", True),
        ("subfolder", "x"),
        ("force_download", True),
        ("max_memory", {0: "1GB"}),
        ("variant", "fp16"),
        ("tp_plan", "auto"),
    ],
)
def test_refused_keywords_say_what_to_do_instead(bert_dir, key, value):
    with pytest.raises(UnsupportedOptionError, match=f"{key} is not supported") as err:
        AutoModel.from_pretrained(bert_dir, **{key: value})
    assert err.value.hint == REFUSED[key]


def test_keywords_without_effect_are_accepted_unless_they_ask_for_something_else(bert_dir):
    model = AutoModel.from_pretrained(
        bert_dir, low_cpu_mem_usage=True, use_safetensors=True, weights_only=True, attn_implementation="sdpa"
    )
    assert isinstance(model, native_bert.BertModel)
    with pytest.raises(UnsupportedOptionError, match="use_safetensors=False is not supported") as err:
        AutoModel.from_pretrained(bert_dir, use_safetensors=False)
    assert "allow_pickle=True" in err.value.hint
    with pytest.raises(UnsupportedOptionError, match="attn_implementation='eager' is not supported"):
        AutoModel.from_pretrained(bert_dir, attn_implementation="eager")


def test_positional_model_arguments_are_refused(bert_dir):
    with pytest.raises(UnsupportedOptionError, match="name and keyword arguments only"):
        AutoModel.from_pretrained(bert_dir, "extra")


# --- config overrides and a new head ---------------------------------------------------------------
def test_a_new_head_on_a_trunk_checkpoint_as_in_transformers(bert_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = AutoModelForSequenceClassification.from_pretrained(
            bert_dir, num_labels=3, output_hidden_states=True, output_loading_info=True
        )
    assert any(issubclass(w.category, WeightsMismatchWarning) for w in caught)  # the head was initialised
    (unread,) = [str(w.message) for w in caught if issubclass(w.category, UnreadSettingWarning)]
    assert unread.startswith("output_hidden_states: not settings of BertConfig")  # num_labels is one
    assert model.config.num_labels == 3 and model.config.output_hidden_states is True
    assert model.classifier.weight.shape == (3, 32)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    with pytest.raises(factory.WeightsMismatchError, match="classifier.weight"):
        AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=3, strict=True)


def test_config_object_and_config_overrides(bert_dir):
    config = AutoConfig.from_pretrained(bert_dir, num_labels=5)
    assert isinstance(config, native_bert.BertConfig) and config.num_labels == 5
    config, unused = AutoConfig.from_pretrained(bert_dir, return_unused_kwargs=True, hidden_dropout_prob=0.0)
    assert unused == {} and config.hidden_dropout_prob == 0.0
    with pytest.warns(UnreadSettingWarning, match="hiden_size: not settings of BertConfig"):
        typo, unused = AutoConfig.from_pretrained(bert_dir, return_unused_kwargs=True, hiden_size=8)
    assert unused == {"hiden_size": 8} and typo.hidden_size == 32
    model = AutoModelForSequenceClassification.from_pretrained(bert_dir, config=config)
    assert model.config.num_labels == 2 and model.config.hidden_dropout_prob == 0.0


def test_from_config_with_a_native_or_a_transformers_config():
    native = AutoModel.from_config(native_bert.BertConfig(**TINY_BERT))
    assert isinstance(native, native_bert.BertModel) and native.config.hidden_size == 32
    hf = AutoModelForCausalLM.from_config(transformers.LlamaConfig(**dict(TINY_LLAMA, vocab_size=50)))
    assert type(hf).__module__ == "factory.models.llama" and hf.config.vocab_size == 50
    assert hf.factory_provenance["source"] == "architecture"
    assert (
        AutoModel.from_config(native_bert.BertConfig(**TINY_BERT), torch_dtype=torch.float64).pooler.dense.weight.dtype
        == torch.float64
    )
    with pytest.raises(UnsupportedOptionError, match="from_config does not take revision"):
        AutoModel.from_config(native_bert.BertConfig(**TINY_BERT), revision="main")
    with pytest.raises(factory.UnknownArchitectureError, match="'no-such-model' is not a registered architecture"):
        AutoModel.from_config(transformers.PretrainedConfig(model_type="no-such-model"))


def test_from_config_is_not_confused_by_a_directory_named_like_the_architecture(tmp_path, monkeypatch):
    (tmp_path / "bert").mkdir()
    monkeypatch.chdir(tmp_path)
    assert isinstance(AutoModel.from_config(native_bert.BertConfig(**TINY_BERT)), native_bert.BertModel)


def test_generation_config_keyword(bert_dir):
    defaults = GenerationConfig(max_new_tokens=3)
    model = AutoModelForCausalLM.from_config(transformers.LlamaConfig(**dict(TINY_LLAMA, vocab_size=50)))
    assert model.generate(torch.tensor([[1, 2]]), generation_config=defaults).shape == (1, 5)


# --- components --------------------------------------------------------------------------------------
def test_tokenizer_keywords_override_its_config(bert_dir):
    tok = AutoTokenizer.from_pretrained(bert_dir, padding_side="left", use_fast=True)
    assert tok.padding_side == "left"
    batch = tok(["a b c", "a"], padding=True)
    assert batch["attention_mask"][1][0] == 0  # padded on the left
    assert AutoTokenizer.from_pretrained(bert_dir, use_fast=False).padding_side == "right"
    with pytest.raises(UnsupportedOptionError, match="trust_remote_code=True is refused"):
        AutoTokenizer.from_pretrained(bert_dir, trust_remote_code=True)
