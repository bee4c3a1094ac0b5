"""Parity of the Llama family (llama, mistral, qwen2, qwen3) with transformers, head by head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from factory.errors import ConfigError
from factory.models import llama as native
from tests.models.parity import build_native

TINY = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=99,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    num_labels=3,
)

# name -> (model_type, transformers config kwargs, rewrite config.json in the pre-5 rope_scaling shape)
VARIANTS = {
    "llama-bias": ("llama", dict(attention_bias=True, mlp_bias=True), False),
    "llama-llama3-tied": (
        "llama",
        dict(
            tie_word_embeddings=True,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=500000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=8,
            ),
        ),
        False,
    ),
    "llama-linear-legacy": (
        "llama",
        dict(rope_parameters=dict(rope_type="linear", rope_theta=5000.0, factor=2.0)),
        True,
    ),
    "llama-dynamic": (
        "llama",
        dict(max_position_embeddings=8, rope_parameters=dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0)),
        False,
    ),
    "mistral-window": ("mistral", dict(sliding_window=3), False),
    "qwen2-window-tied": (
        "qwen2",
        dict(use_sliding_window=True, sliding_window=3, max_window_layers=1, tie_word_embeddings=True),
        False,
    ),
    "qwen3-yarn": (
        "qwen3",
        dict(
            head_dim=16,
            attention_bias=True,
            max_position_embeddings=64,
            rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=16),
        ),
        False,
    ),
}

FAMILY = {
    "llama": ("Llama", native.LlamaConfig),
    "mistral": ("Mistral", native.MistralConfig),
    "qwen2": ("Qwen2", native.Qwen2Config),
    "qwen3": ("Qwen3", native.Qwen3Config),
}

TASKS = {
    "model": ("AutoModel", "{}Model"),
    "causal-lm": ("AutoModelForCausalLM", "{}ForCausalLM"),
    "sequence-classification": ("AutoModelForSequenceClassification", "{}ForSequenceClassification"),
    "token-classification": ("AutoModelForTokenClassification", "{}ForTokenClassification"),
    "question-answering": ("AutoModelForQuestionAnswering", "{}ForQuestionAnswering"),
}

ATOL = dict(atol=1e-5, rtol=1e-5)


def _hf_config(model_type: str, **overrides):
    return transformers.AutoConfig.for_model(model_type, **{**TINY, **overrides})


def _randomize(model: torch.nn.Module) -> None:
    """Weights large enough that every component visibly changes the outputs."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
            else:
                param.normal_(0.0, 0.2)


def _legacy_rope_shape(directory: Path) -> None:
    """Rewrite config.json the way transformers 4 wrote it: rope_theta + rope_scaling with ``type``."""
    path = directory / "config.json"
    data = json.loads(path.read_text())
    rope = data.pop("rope_parameters")
    data["rope_theta"] = rope.pop("rope_theta")
    kind = rope.pop("rope_type")
    data["rope_scaling"] = None if kind == "default" else {"type": kind, **rope}
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """variant -> task -> (transformers model, checkpoint dir), built lazily."""
    cache: dict = {}

    def get(variant: str, task: str):
        key = (variant, task)
        if key not in cache:
            model_type, overrides, legacy = VARIANTS[variant]
            torch.manual_seed(0)
            auto = getattr(transformers, TASKS[task][0])
            model = auto.from_config(_hf_config(model_type, **overrides)).eval()
            _randomize(model)
            directory = tmp_path_factory.mktemp(f"{variant}-{task}")
            model.save_pretrained(directory)
            if legacy:
                _legacy_rope_shape(directory)
            cache[key] = (model, directory)
        return cache[key]

    return get


def _native(variant: str, task: str, checkpoints):
    hf_model, directory = checkpoints(variant, task)
    prefix = FAMILY[VARIANTS[variant][0]][0]
    cls = getattr(native, TASKS[task][1].format(prefix))
    return hf_model, build_native(task, directory, cls)


def _inputs(seq: int = 10):
    """Three rows: full, right-padded, left-padded (pad id 0)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (3, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    mask[2, :4] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, **ATOL)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_model_parity(variant, checkpoints):
    hf, model = _native(variant, "model", checkpoints)
    ids, mask = _inputs()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = model(ids, attention_mask=mask, output_hidden_states=True)
    _close(got.last_hidden_state, want.last_hidden_state)
    _close(got["last_hidden_state"], want.last_hidden_state)
    assert len(got.hidden_states) == len(want.hidden_states) == 3
    for mine, theirs in zip(got.hidden_states, want.hidden_states):
        _close(mine, theirs)
    assert got.past_key_values is None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_causal_lm_parity(variant, checkpoints):
    hf, model = _native(variant, "causal-lm", checkpoints)
    ids, mask = _inputs()
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = model(ids, attention_mask=mask, labels=labels)
        last = model(ids, attention_mask=mask, logits_to_keep=1).logits
    _close(got.logits, want.logits)
    _close(got.loss, want.loss)
    _close(last, want.logits[:, -1:])
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    assert tied == hf.config.tie_word_embeddings


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_sequence_classification_parity(variant, checkpoints):
    hf, model = _native(variant, "sequence-classification", checkpoints)
    ids, mask = _inputs()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = model(ids, attention_mask=mask, labels=labels)
    assert got.logits.shape == (3, 3)
    _close(got.logits, want.logits)
    _close(got.loss, want.loss)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_token_classification_parity(variant, checkpoints):
    hf, model = _native(variant, "token-classification", checkpoints)
    ids, mask = _inputs()
    labels = torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = model(ids, attention_mask=mask, labels=labels)
    _close(got.logits, want.logits)
    _close(got.loss, want.loss)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_question_answering_parity(variant, checkpoints):
    hf, model = _native(variant, "question-answering", checkpoints)
    ids, mask = _inputs()
    start, end = torch.tensor([1, 3, 40]), torch.tensor([2, 5, 41])  # the last row is out of range: ignored
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
        got = model(ids, attention_mask=mask, start_positions=start, end_positions=end)
    _close(got.start_logits, want.start_logits)
    _close(got.end_logits, want.end_logits)
    _close(got.loss, want.loss)


def test_question_answering_checkpoint_keys_follow_transformers(checkpoints):
    """Llama/Qwen QA heads keep their trunk under ``transformer.``, Mistral's under ``model.``."""
    _, llama_qa = _native("llama-bias", "question-answering", checkpoints)
    _, mistral_qa = _native("mistral-window", "question-answering", checkpoints)
    assert "transformer.embed_tokens.weight" in llama_qa.state_dict()
    assert "model.embed_tokens.weight" in mistral_qa.state_dict()
    assert native.Qwen3ForQuestionAnswering.base_model_prefix == "transformer"


@pytest.mark.parametrize("problem", ["regression", "multi_label_classification"])
def test_sequence_classification_problem_types(problem, tmp_path):
    torch.manual_seed(0)
    num_labels = 1 if problem == "regression" else 3
    config = _hf_config("llama", num_labels=num_labels, problem_type=problem if num_labels > 1 else None)
    hf = transformers.LlamaForSequenceClassification(config).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    model = build_native("sequence-classification", tmp_path, native.LlamaForSequenceClassification)
    ids, mask = _inputs()
    labels = torch.rand(3) if num_labels == 1 else (torch.rand(3, 3) > 0.5).float()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = model(ids, attention_mask=mask, labels=labels)
    _close(got.logits, want.logits)
    _close(got.loss, want.loss)


def test_kv_cache_matches_transformers_and_full_forward(checkpoints):
    hf, model = _native("llama-bias", "causal-lm", checkpoints)
    ids, mask = _inputs()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, use_cache=True)
        got = model(ids, attention_mask=mask, use_cache=True)
        assert len(got.past_key_values) == 2
        for (key, value), layer in zip(got.past_key_values, want.past_key_values.layers):
            assert key.shape == (3, 2, 10, 8)
            _close(key, layer.keys)
            _close(value, layer.values)
        # prefix + cached continuation == one full forward (right-padded row excluded: it has no continuation)
        rows = [0, 2]
        prefix = model(ids[rows, :7], attention_mask=mask[rows, :7], use_cache=True)
        step = model(ids[rows, 7:], attention_mask=mask[rows], past_key_values=prefix.past_key_values)
        full = model(ids[rows], attention_mask=mask[rows])
    _close(step.logits, full.logits[:, 7:])


GENERATION_VARIANTS = sorted(VARIANTS)


@pytest.mark.parametrize("variant", GENERATION_VARIANTS)
def test_greedy_generation_matches_transformers(variant, checkpoints):
    hf, model = _native(variant, "causal-lm", checkpoints)
    ids, mask = _inputs(seq=7)
    left_ids, left_mask = ids[[0, 2]], mask[[0, 2]]  # full row + left-padded row
    kwargs = dict(max_new_tokens=8, eos_token_id=2, pad_token_id=0)
    with torch.no_grad():
        single_want = hf.generate(ids[:1], attention_mask=mask[:1], do_sample=False, **kwargs)
        batch_want = hf.generate(left_ids, attention_mask=left_mask, do_sample=False, **kwargs)
    single = model.generate(ids[:1], attention_mask=mask[:1], **kwargs)
    batch = model.generate(left_ids, attention_mask=left_mask, **kwargs)
    assert single.tolist() == single_want.tolist()
    assert batch.tolist() == batch_want.tolist()


# --- configs -------------------------------------------------------------------
@pytest.mark.parametrize("model_type", sorted(FAMILY))
def test_config_defaults_match_transformers(model_type):
    ours = FAMILY[model_type][1]()
    theirs = transformers.AutoConfig.for_model(model_type)
    declared = [k for k in type(theirs).__annotations__ if not k.startswith("_")]
    assert declared, "transformers' config declares its fields as annotations"
    for key in declared:
        if not hasattr(theirs, key) or callable(getattr(theirs, key)):
            continue
        assert getattr(ours, key) == getattr(theirs, key), key
    assert ours.to_dict()["model_type"] == model_type


@pytest.mark.parametrize(
    "data",
    [
        {"rope_theta": 5000.0, "rope_scaling": {"type": "linear", "factor": 2.0}},
        {
            "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
            "max_position_embeddings": 64,
        },
        {"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}},
        {"rope_theta": 1e6},
        {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 100.0}},
    ],
)
def test_rope_config_shapes_read_like_transformers(data):
    ours = native.LlamaConfig.from_dict(data)
    theirs = transformers.LlamaConfig.from_dict(dict(data))
    assert ours.rope_parameters == theirs.rope_parameters
    # and what we write back, transformers reads to the same parameters
    written = ours.to_dict()
    assert "rope_scaling" not in written and "rope_theta" not in written
    assert transformers.LlamaConfig.from_dict(written).rope_parameters == theirs.rope_parameters


@pytest.mark.parametrize(
    "data",
    [
        {"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}, "head_dim": 16},
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
                "rope_theta": 500000.0,
            }
        },
        {
            "rope_parameters": {
                "rope_type": "yarn",
                "factor": 2.0,
                "rope_theta": 1e4,
                "mscale": 0.7,
                "mscale_all_dim": 1.0,
                "beta_fast": 16,
                "truncate": False,
            }
        },
    ],
)
def test_rope_frequencies_match_transformers(data):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    ours = native.LlamaConfig.from_dict({**TINY, **data})
    theirs = transformers.LlamaConfig.from_dict({**TINY, **data})
    inv_freq, scale = native.rope_frequencies(ours)
    want, want_scale = ROPE_INIT_FUNCTIONS[theirs.rope_parameters["rope_type"]](theirs)
    torch.testing.assert_close(inv_freq, want, atol=0, rtol=0)
    assert scale == pytest.approx(want_scale)


def test_qwen2_sliding_window_only_when_enabled():
    off = native.Qwen2Config.from_dict({"sliding_window": 131072, "max_window_layers": 28, "num_hidden_layers": 4})
    assert off.sliding_window is None and off.layer_types == ["full_attention"] * 4
    on = native.Qwen2Config.from_dict(
        {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1, "num_hidden_layers": 3}
    )
    assert on._layer_windows() == [None, 8, 8]
    unwindowed = native.MistralConfig.from_dict({"sliding_window": None, "num_hidden_layers": 2})
    assert unwindowed._layer_windows() == [None, None]


@pytest.mark.parametrize("variant", ["llama-llama3-tied", "qwen3-yarn"])
def test_bfloat16_matches_transformers_bit_for_bit(variant, checkpoints):
    _, directory = checkpoints(variant, "causal-lm")
    hf = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).eval()
    _, model = _native(variant, "causal-lm", checkpoints)
    model = model.to(torch.bfloat16)
    ids, mask = _inputs()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).logits
        got = model(ids, attention_mask=mask).logits
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_rotary_frequencies_stay_float32_after_dtype_cast():
    model = native.LlamaModel(native.LlamaConfig(**TINY))
    before = model.rotary_emb.inv_freq.clone()
    model.to(torch.bfloat16)
    assert model.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.equal(model.rotary_emb.inv_freq, before)
    assert model.embed_tokens.weight.dtype == torch.bfloat16


def test_tied_weights_mapping():
    tied = native.Qwen2ForCausalLM(native.Qwen2Config(**{**TINY, "tie_word_embeddings": True}))
    untied = native.LlamaForCausalLM(native.LlamaConfig(**TINY))
    assert tied.tied_weights == {"lm_head.weight": "model.embed_tokens.weight"}
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert untied.tied_weights == {}
    assert native.LlamaForSequenceClassification(native.LlamaConfig(**TINY)).tied_weights == {}


def test_class_attributes_and_meta_construction():
    for family in ("Llama", "Mistral", "Qwen2", "Qwen3"):
        for pattern in (
            "{}Model",
            "{}ForCausalLM",
            "{}ForSequenceClassification",
            "{}ForTokenClassification",
            "{}ForQuestionAnswering",
        ):
            cls = getattr(native, pattern.format(family))
            assert cls.config_class is getattr(native, f"{family}Config")
    with torch.device("meta"):
        model = native.MistralForCausalLM(native.MistralConfig(**TINY))
    assert model.lm_head.weight.is_meta


# --- errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_key_value_heads": 3}, "multiple of num_key_value_heads=3"),
        ({"hidden_size": 30}, "hidden_size=30 is not a multiple of num_attention_heads=4"),
        ({"hidden_act": "mish"}, "hidden_act='mish' is not supported"),
        ({"pad_token_id": 99}, "pad_token_id=99 is not a token id below vocab_size=99"),
        ({"rope_scaling": {"type": "proportional", "factor": 2.0}}, "rope_type='proportional' is not supported"),
        (
            {"rope_scaling": {"type": "longrope", "factor": 2.0}},
            "needs rope_parameters ['short_factor', 'long_factor']",
        ),
        (
            {"rope_scaling": {"type": "longrope", "short_factor": [1.0] * 4, "long_factor": [1.0] * 3}},
            "long_factor must be a list of rotary_dim / 2 = 4 numbers",
        ),
        (
            {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
            "needs rope_parameters ['low_freq_factor', 'high_freq_factor']",
        ),
        ({"rope_scaling": {"type": "linear"}}, "needs rope_parameters ['factor']"),
    ],
)
def test_bad_configs_raise_config_error(overrides, message):
    config = native.LlamaConfig.from_dict({**TINY, "head_dim": None, **overrides})
    with pytest.raises(ConfigError) as err:
        native.LlamaForCausalLM(config)
    assert message in str(err.value)
    assert "LlamaConfig" in str(err.value)


def test_bad_layer_types_raise_config_error():
    config = native.Qwen2Config.from_dict({**TINY, "layer_types": ["full_attention"]})
    with pytest.raises(ConfigError, match="1 layer_types for num_hidden_layers=2"):
        native.Qwen2Model(config)


def test_batched_sequence_classification_without_pad_token_is_refused():
    model = native.LlamaForSequenceClassification(native.LlamaConfig(**{**TINY, "pad_token_id": None})).eval()
    ids = torch.randint(3, 99, (2, 5))
    with pytest.raises(ConfigError, match="pad_token_id is null") as err:
        model(ids)
    assert "set pad_token_id" in str(err.value)
    assert model(ids[:1]).logits.shape == (1, 3)  # one sequence needs no pad id


def test_bad_inputs_raise_model_input_error():
    model = native.LlamaForCausalLM(native.LlamaConfig(**TINY)).eval()
    ids = torch.randint(3, 99, (2, 5))
    with pytest.raises(native.ModelInputError, match="exactly one of input_ids and inputs_embeds, got neither"):
        model()
    with pytest.raises(native.ModelInputError, match="got both"):
        model(ids, inputs_embeds=torch.zeros(2, 5, 32))
    with pytest.raises(native.ModelInputError, match=r"attention_mask must have shape .* = \(2, 5\), got \(2, 4\)"):
        model(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    past = model(ids, use_cache=True).past_key_values
    with pytest.raises(native.ModelInputError, match="past_key_values has 1 layers, the model has 2"):
        model(ids[:, :1], past_key_values=past[:1])
    with pytest.raises(native.ModelInputError, match=r"\(batch, head_dim\) = \(1, 8\)"):
        model(ids[:1, :1], past_key_values=past)
    wrong_heads = tuple((k[:, :1], v[:, :1]) for k, v in past)
    with pytest.raises(
        native.ModelInputError, match="past_key_values of layer 0 have 1 key/value heads, this attention computes 2"
    ):
        model(ids[:, :1], past_key_values=wrong_heads)
    with pytest.raises(native.ModelInputError, match="past \\+ seq"):
        model(ids[:, :1], attention_mask=torch.ones(2, 1), past_key_values=past)
    with pytest.raises(native.ModelInputError, match=r"position_ids must have shape \(2 or 1, 5\).*got \(2, 6\)"):
        model(ids, position_ids=torch.arange(6).expand(2, 6))
    assert isinstance(native.ModelInputError("x"), ValueError)


def test_inputs_embeds_equal_input_ids():
    model = native.Qwen3Model(native.Qwen3Config(**{**TINY, "head_dim": 16})).eval()
    ids = torch.randint(3, 99, (2, 6))
    with torch.no_grad():
        a = model(ids).last_hidden_state
        b = model(inputs_embeds=model.embed_tokens(ids)).last_hidden_state
    torch.testing.assert_close(a, b, atol=0, rtol=0)
