"""register(): the seed's two consistency rules, collisions, the runtime source and its provenance
(explain, show, list), and the table staying immutable."""

from __future__ import annotations

import inspect
import json
import pickle

import pytest
import torch

import factory
from factory.auto import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
)
from factory.cli.main import main
from factory.components.tokenizer import Tokenizer
from factory.errors import ConflictError, RegistrationError
from factory.registry import runtime
from tests.auto.custom_models import (
    HFNewModel,
    HFNewModelConfig,
    ModelOfOtherConfig,
    NewModel,
    NewModelConfig,
    NewModelForTokens,
    PlainConfig,
    PlainModule,
    UntypedConfig,
)

THIS = __file__


def line_of(marker: str) -> int:
    """The line of this file holding ``marker`` (a comment after a register() call)."""
    lines = inspect.getsource(inspect.getmodule(line_of)).splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.rstrip().endswith(marker) and "def " not in text)


# --- the seed's rules ---------------------------------------------------------------------------
def test_rule_one_model_type_must_equal_the_key():
    with pytest.raises(RegistrationError) as err:
        AutoConfig.register("newer-model", NewModelConfig)  # rule-1
    message = str(err.value)
    assert "has model_type 'new-model', but is registered as 'newer-model'" in message
    assert f"{THIS}:{line_of('# rule-1')}" in message
    assert "set NewModelConfig.model_type = 'newer-model', or register it as 'new-model'" in message
    assert not runtime.current()


def test_rule_one_transformers_config_without_model_type():
    class Unnamed(HFNewModelConfig):
        model_type = ""

    with pytest.raises(RegistrationError, match="has model_type '', but is registered as 'new-model'"):
        AutoConfig.register("new-model", Unnamed)


def test_rule_two_config_class_must_equal_the_registered_config():
    AutoConfig.register("new-model", NewModelConfig)
    with pytest.raises(RegistrationError) as err:
        AutoModel.register(NewModelConfig, ModelOfOtherConfig)  # rule-2
    message = str(err.value)
    assert "has config_class tests.auto.custom_models.OtherConfig, but is registered with the config" in message
    assert f"{THIS}:{line_of('# rule-2')}" in message
    assert ("model", "new-model") not in factory.registry().registrations


def test_a_subclass_of_the_declared_config_class_is_consistent():
    class SpecialConfig(NewModelConfig):
        pass

    AutoConfig.register("new-model", SpecialConfig)
    AutoModel.register(SpecialConfig, NewModel)  # NewModel.config_class = NewModelConfig, a base of SpecialConfig
    assert isinstance(factory.build("model", "new-model").config, SpecialConfig)


def test_a_class_not_an_instance_and_a_valid_key():
    with pytest.raises(RegistrationError, match="the config must be a class, found NewModelConfig"):
        AutoConfig.register("new-model", NewModelConfig())
    with pytest.raises(RegistrationError, match="'New Model' is not an architecture key"):
        AutoConfig.register("New Model", NewModelConfig)


# --- which architecture a model goes to ----------------------------------------------------------
def test_a_config_with_a_model_type_is_registered_by_the_model_registration():
    AutoModel.register(NewModelConfig, NewModel)  # as transformers allows: no AutoConfig.register first
    table = factory.registry()
    assert table.registrations[("config", "new-model")].target == "tests.auto.custom_models:NewModelConfig"
    assert table.registrations[("model", "new-model")].target == "tests.auto.custom_models:NewModel"


def test_a_config_that_is_not_registered_and_has_no_model_type():
    with pytest.raises(RegistrationError, match=r"first: AutoConfig.register\('<model_type>', UntypedConfig\)"):
        AutoModel.register(UntypedConfig, PlainModule)


def test_a_config_shadowed_by_the_native_one_is_not_the_architectures_config():
    import transformers

    with pytest.raises(RegistrationError) as err:
        AutoModel.register(transformers.BertConfig, PlainModule)
    assert "is not the config of architecture 'bert': that is built with factory.models.bert:BertConfig" in str(
        err.value
    )
    assert "AutoConfig.register('bert', BertConfig, exist_ok=True)" in str(err.value)


def test_several_tasks_and_a_tokenizer_for_one_architecture(tmp_path):
    AutoConfig.register("new-model", NewModelConfig)
    AutoModel.register(NewModelConfig, NewModel)
    AutoModelForTokenClassification.register(NewModelConfig, NewModelForTokens)
    AutoTokenizer.register(NewModelConfig, fast_tokenizer_class=Tokenizer)
    table = factory.registry()
    assert {t for t, a in table.registrations if a == "new-model"} == {
        "config",
        "model",
        "token-classification",
        "tokenizer",
    }
    assert isinstance(factory.build("token-classification", "new-model"), NewModelForTokens)
    assert table.registrations[("tokenizer", "new-model")].target == "factory.components.tokenizer:Tokenizer"


def test_component_register_spellings():
    class Slow:
        pass

    class Fast:
        pass

    AutoConfig.register("new-model", NewModelConfig)
    AutoTokenizer.register(NewModelConfig, Slow, Fast)  # transformers' (config, slow, fast): the fast one
    assert runtime.current().registrations[("tokenizer", "new-model")].target.endswith("Fast")
    AutoTokenizer.register(NewModelConfig, tokenizer_class=Slow, exist_ok=True)
    assert runtime.current().registrations[("tokenizer", "new-model")].target.endswith("Slow")
    with pytest.raises(factory.UnsupportedOptionError, match="unexpected keyword argument"):
        AutoTokenizer.register(NewModelConfig, tokeniser_class=Fast)
    with pytest.raises(factory.UnsupportedOptionError, match="needs the class to register"):
        AutoTokenizer.register(NewModelConfig)


# --- collisions ----------------------------------------------------------------------------------
def test_a_built_in_entry_is_replaced_only_with_exist_ok():
    class MyBert(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.linear = torch.nn.Linear(config.hidden_size, 2)

    from factory.models.bert import BertConfig

    with pytest.raises(RegistrationError) as err:
        AutoModel.register(BertConfig, MyBert)
    assert "model / bert is already registered: factory.models.bert:BertModel at" in str(err.value)
    assert "pass exist_ok=True" in str(err.value)
    AutoModel.register(BertConfig, MyBert, exist_ok=True)  # replace-bert
    reg = factory.registry().registrations[("model", "bert")]
    assert reg.provenance.source == "runtime" and reg.provenance.line == line_of("# replace-bert")
    assert reg.shadows[0].target == "factory.models.bert:BertModel"
    assert "replaces factory.models.bert:BertModel" in reg.override
    model = factory.build("model", "bert", config_overrides={"hidden_size": 8, "num_attention_heads": 2})
    assert isinstance(model, MyBert)


def test_registering_the_same_class_again_is_fine_another_needs_exist_ok():
    AutoConfig.register("new-model", NewModelConfig)
    AutoConfig.register("new-model", NewModelConfig)  # a re-run cell
    with pytest.raises(RegistrationError, match="already registered to tests.auto.custom_models:NewModelConfig"):
        AutoConfig.register("new-model", HFNewModelConfig)
    AutoConfig.register("new-model", HFNewModelConfig, exist_ok=True)
    assert type(factory.build("config", "new-model")) is HFNewModelConfig


def test_a_later_yaml_source_collides_with_a_runtime_entry(reg_env, arch_yaml):
    AutoModel.register(NewModelConfig, NewModel)
    path = reg_env.write("extra/new-model.yaml", arch_yaml("new-model", {"model": "pkg.mod:Model"}), root=reg_env.tmp)
    with pytest.raises(ConflictError, match="of a register\\(\\) call is also defined at"):
        reg_env.load(path)
    assert ("model", "new-model") in reg_env.load(path, include_runtime=False).registrations
    assert ("model", "new-model") not in reg_env.load(include_runtime=False).registrations


# --- tables stay immutable --------------------------------------------------------------------
def test_the_default_table_is_replaced_not_changed():
    before = factory.registry()
    AutoConfig.register("new-model", NewModelConfig)
    after = factory.registry()
    assert after is not before and after.digest != before.digest
    assert "new-model" not in before.architectures and "new-model" in after.architectures
    assert factory.registry() is after  # served again while nothing is registered
    assert after.sources[-1] == "runtime:register()"
    with pytest.raises(AttributeError):
        after.registrations = {}  # type: ignore[misc]
    again = pickle.loads(pickle.dumps(after))
    assert again == after and again.registrations[("config", "new-model")].provenance.source == "runtime"


def test_a_class_defined_in_a_function_builds():
    class LocalConfig(NewModelConfig):
        model_type = "local-model"

    class LocalModel(NewModel):
        config_class = LocalConfig

    AutoModelForCausalLM.register(LocalConfig, LocalModel)
    assert type(factory.build("causal-lm", "local-model")) is LocalModel


def test_a_plain_config_class_and_a_module_that_keeps_no_config(tmp_path):
    AutoConfig.register("plain-model", PlainConfig)
    AutoModel.register(PlainConfig, PlainModule)
    model = factory.build("model", "plain-model", config_overrides={"width": 3})
    assert model.linear.weight.shape == (3, 3) and model.factory_config == PlainConfig(width=3)
    saved = factory.save(model, tmp_path / "plain")
    config = json.loads((saved / "config.json").read_text())
    assert config["width"] == 3 and config["model_type"] == "plain-model"
    again = factory.build("model", saved)
    assert torch.equal(again.linear.weight, model.linear.weight)


# --- provenance: explain, show, list ----------------------------------------------------------------
def test_explain_show_and_list_name_the_register_call(capsys):
    AutoConfig.register("new-model", HFNewModelConfig)  # config-call
    AutoModel.register(HFNewModelConfig, HFNewModel)  # model-call
    config_at, model_at = f"{THIS}:{line_of('# config-call')}", f"{THIS}:{line_of('# model-call')}"

    chain = factory.explain("model", "new-model")
    by_step = {s["step"]: s for s in chain}
    assert by_step["registration"]["provenance"] == model_at
    assert by_step["config"]["provenance"] == config_at
    assert by_step["name"]["provenance"] == config_at

    assert main(["explain", "model", "new-model"]) == 0
    out = capsys.readouterr().out
    assert "model / new-model -> tests.auto.custom_models:HFNewModel" in out
    assert f"at {model_at.replace(str(_cwd()) + '/', '')}" in out

    assert main(["show", "new-model", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert any(f.endswith("(runtime)") for f in shown["files"])
    rows = {r["task"]: r for r in shown["registrations"]}
    assert rows["model"]["source"] == "runtime"
    assert rows["model"]["defined_at"].endswith(f"test_register.py:{line_of('# model-call')}")

    assert main(["list", "--arch", "new-model", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["task"], r["source"]) for r in listed] == [("model", "runtime")]


def _cwd():
    from pathlib import Path

    return Path.cwd()
