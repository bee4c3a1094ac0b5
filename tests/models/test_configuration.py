"""Config values are checked before anything uses them: types, finite floats, ranges, the size budget."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory.errors import ConfigError, FactoryError
from factory.models.bert import BertConfig
from factory.models.configuration import LIMITS, MAX_LABELS, MAX_PARAMETERS, check_size, check_values
from factory.models.gpt2 import GPT2Config
from factory.models.llama import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config


@pytest.mark.parametrize(
    ("cls", "values", "key", "rule"),
    [
        (GPT2Config, {"n_embd": float("nan")}, "n_embd", "must be an integer"),
        (GPT2Config, {"n_embd": -32}, "n_embd", "must be an integer from 1 to 131072"),
        (GPT2Config, {"n_head": 0}, "n_head", "must be an integer from 1 to 4096"),
        (GPT2Config, {"n_layer": 1_000_000}, "n_layer", "must be an integer from 0 to 1024"),
        (GPT2Config, {"num_labels": 1e9}, "num_labels", f"must be an integer from 1 to {MAX_LABELS}"),
        (GPT2Config, {"n_embd": "768"}, "n_embd", "must be an integer"),
        (GPT2Config, {"n_embd": 7.5}, "n_embd", "must be an integer"),
        (GPT2Config, {"resid_pdrop": 1.5}, "resid_pdrop", "must be a number from 0.0 to 1.0"),
        (GPT2Config, {"layer_norm_epsilon": float("inf")}, "layer_norm_epsilon", "must be a finite number"),
        (GPT2Config, {"scale_attn_weights": "yes"}, "scale_attn_weights", "must be true/false"),
        (GPT2Config, {"eos_token_id": [1, "2"]}, "eos_token_id", "must be an integer or a list of integers"),
        (GPT2Config, {"n_positions": True}, "n_positions", "must be an integer"),
        (BertConfig, {"vocab_size": 0}, "vocab_size", "must be an integer from 1 to 16777216"),
        (BertConfig, {"type_vocab_size": -1}, "type_vocab_size", "must be an integer from 1 to 65536"),
        (BertConfig, {"hidden_act": 3}, "hidden_act", "must be a string"),
        (BertConfig, {"classifier_dropout": float("nan")}, "classifier_dropout", "must be a finite number"),
        (LlamaConfig, {"num_key_value_heads": 0}, "num_key_value_heads", "must be an integer from 1 to 4096"),
        (LlamaConfig, {"intermediate_size": 2**40}, "intermediate_size", "must be an integer from 1 to 1048576"),
        (LlamaConfig, {"rope_theta": float("nan")}, "rope_parameters.rope_theta", "must be a finite number"),
        (LlamaConfig, {"rope_theta": -1.0}, "rope_parameters.rope_theta", "must be a number from"),
        (LlamaConfig, {"pretraining_tp": 0}, "pretraining_tp", "must be an integer from 1 to 1024"),
        (MistralConfig, {"sliding_window": -4}, "sliding_window", "must be an integer from 0 to"),
        (Qwen2Config, {"max_window_layers": -1}, "max_window_layers", "must be an integer from 0 to 1024"),
        (Qwen3Config, {"head_dim": 0}, "head_dim", "must be an integer from 1 to 131072"),
        (Qwen3Config, {"rms_norm_eps": -1e-6}, "rms_norm_eps", "must be a number from 0.0 to 1.0"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(cls, values, key, rule):
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"{cls.__name__}: {key} {rule}") as info:
        cls(**values)
    assert info.value.key == key and key in info.value.hint and "config.json" in info.value.hint
    assert time.monotonic() - started < 1  # refused before anything loops over the value


def test_integral_floats_become_ints():
    config = GPT2Config(n_embd=64.0, n_layer=2.0)
    assert config.hidden_size == 64 and type(config.hidden_size) is int and config.num_hidden_layers == 2


def test_a_label_dict_too_large_is_refused():
    with pytest.raises(ConfigError, match=f"id2label must map integer ids to label names \\(at most {MAX_LABELS}\\)"):
        BertConfig(id2label={str(i): f"l{i}" for i in range(MAX_LABELS + 1)})


def test_from_json_file_names_the_file(tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"n_head": 0}))
    with pytest.raises(ConfigError, match="n_head must be an integer") as info:
        GPT2Config.from_json_file(path)
    assert info.value.file == str(path)
    path.write_text("[" * 10_000)
    with pytest.raises(ConfigError, match="nested more than 64 levels") as info:
        GPT2Config.from_json_file(path)
    assert info.value.file == str(path)


def test_check_values_without_types_checks_the_shared_ranges_only():
    assert check_values({"hidden_size": [1, 2], "n_layer": 3.0}) == {"hidden_size": [1, 2], "n_layer": 3}
    with pytest.raises(ConfigError, match="config: n_layer must be an integer from 0 to 1024"):
        check_values({"n_layer": 5000})
    with pytest.raises(ConfigError, match="num_heads must be an integer"):
        check_values({"num_heads": 2.5})
    assert check_values({"something_else": float("inf")})["something_else"] == float("inf")  # not declared: kept


@pytest.mark.parametrize(
    "values",
    [
        {"vocab_size": 2**24, "hidden_size": 2**17, "num_hidden_layers": 200},  # 4.4e12 in embeddings alone
        {"hidden_size": 2**17, "intermediate_size": 2**20, "num_hidden_layers": 1024},
        {"hidden_size": 65536, "num_hidden_layers": 1024, "intermediate_size": 262144},
    ],
)
def test_the_size_budget_refuses_absurd_models_before_construction(values):
    started = time.monotonic()
    config = LlamaConfig(**values)
    with pytest.raises(ConfigError, match=f"more than the budget of {MAX_PARAMETERS:,}") as info:
        check_size(config, file="config.json")
    assert info.value.file == "config.json" and info.value.estimate > MAX_PARAMETERS
    with pytest.raises(ConfigError, match="budget"):
        check_size(dict(values))  # a plain dict (a transformers config's values) too
    assert time.monotonic() - started < 1


def test_the_size_budget_admits_real_models():
    llama_405b = LlamaConfig(
        vocab_size=128256,
        hidden_size=16384,
        intermediate_size=53248,
        num_hidden_layers=126,
        num_attention_heads=128,
        num_key_value_heads=8,
        max_position_embeddings=131072,
    )
    estimate = check_size(llama_405b)
    assert 3.5e11 < estimate < 6e11  # ~405e9 in truth: the estimate is an upper bound of the right order
    assert check_size({"n_embd": 768, "n_layer": 12, "vocab_size": 50257, "n_positions": 1024}) > 1e8


# --- property: any JSON-like values either build a config or raise a ConfigError -----------------
_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
_VALUES = st.one_of(
    _NUMBERS,
    st.text(max_size=5),
    st.lists(_NUMBERS, max_size=3),
    st.dictionaries(st.text(max_size=3), _NUMBERS, max_size=2),
)
_KEYS = st.sampled_from(
    sorted(
        {
            *LIMITS,
            *GPT2Config.field_types(),
            *LlamaConfig.field_types(),
            "n_embd",
            "n_layer",
            "rope_theta",
            "rope_scaling",
        }
    )
)


@given(
    values=st.dictionaries(_KEYS, _VALUES, max_size=6),
    cls=st.sampled_from([GPT2Config, BertConfig, LlamaConfig, Qwen2Config]),
)
def test_any_values_build_a_config_or_raise_a_config_error(values, cls):
    started = time.monotonic()
    try:
        config = cls.from_dict(values)
    except ConfigError as err:
        assert err.message.startswith(cls.__name__) or "config" in err.message
    else:
        for key, value in config.to_dict().items():
            if isinstance(value, float) and key in values:
                assert math.isfinite(value)
        try:
            check_size(config)
        except FactoryError:
            pass
    assert time.monotonic() - started < 2
