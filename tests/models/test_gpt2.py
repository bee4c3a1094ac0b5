"""Parity of the native GPT-2 with transformers' on tiny random checkpoints."""

from __future__ import annotations

import json
import re

import pytest
import torch

transformers = pytest.importorskip("transformers")

from factory.errors import ConfigError
from factory.models.gpt2 import (
    GPT2Config,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
    ModelInputError,
)
from tests.models.parity import build_native

ATOL = 1e-5
VOCAB = 99
PAD = 0

TINY = dict(
    n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64,
    bos_token_id=1, eos_token_id=2, pad_token_id=PAD, num_labels=3,
)  # fmt: skip

TASKS = {
    "model": ("GPT2Model", GPT2Model),
    "causal-lm": ("GPT2LMHeadModel", GPT2LMHeadModel),
    "sequence-classification": ("GPT2ForSequenceClassification", GPT2ForSequenceClassification),
    "token-classification": ("GPT2ForTokenClassification", GPT2ForTokenClassification),
    "question-answering": ("GPT2ForQuestionAnswering", GPT2ForQuestionAnswering),
}


def _save(tmp_path_factory, class_name: str, **config):
    torch.manual_seed(0)
    ref = getattr(transformers, class_name)(transformers.GPT2Config(**config)).eval()
    directory = tmp_path_factory.mktemp(class_name)
    ref.save_pretrained(directory)
    return ref, directory


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """task -> (transformers model, native model built from its saved checkpoint)."""
    out = {}
    for task, (class_name, cls) in TASKS.items():
        ref, directory = _save(tmp_path_factory, class_name, **TINY)
        out[task] = (ref, build_native(task, directory, cls))
    return out


def _inputs():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    ids[1, :4] = PAD
    mask[2, 6:] = 0  # right padding
    ids[2, 6:] = PAD
    return ids, mask


def _fields(out) -> dict:
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def _assert_close(ref_out, out, names):
    for name in names:
        torch.testing.assert_close(out[name], ref_out[name], atol=ATOL, rtol=0, msg=name)


OUTPUT_NAMES = {
    "model": ["last_hidden_state"],
    "causal-lm": ["logits"],
    "sequence-classification": ["logits"],
    "token-classification": ["logits"],
    "question-answering": ["start_logits", "end_logits"],
}


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padding-mask"])
def test_forward_parity(pairs, task, masked):
    ref, model = pairs[task]
    ids, mask = _inputs()
    kwargs = {"attention_mask": mask} if masked else {}
    with torch.no_grad():
        ref_out = ref(ids, **kwargs)
        out = model(ids, **kwargs)
    _assert_close(ref_out, out, OUTPUT_NAMES[task])


@pytest.mark.parametrize("task", list(TASKS))
def test_hidden_states_parity(pairs, task):
    ref, model = pairs[task]
    ids, mask = _inputs()
    with torch.no_grad():
        ref_states = ref(ids, attention_mask=mask, output_hidden_states=True).hidden_states
        states = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(states) == len(ref_states) == TINY["n_layer"] + 1
    for ours, theirs in zip(states, ref_states):
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_outputs_readable_as_keys_and_attributes(pairs):
    _, model = pairs["causal-lm"]
    ids, _ = _inputs()
    out = model(ids)
    assert out["logits"] is out.logits
    assert out.logits.shape == (3, 9, VOCAB)
    assert "loss" not in out


def test_causal_lm_loss_parity(pairs):
    ref, model = pairs["causal-lm"]
    ids, mask = _inputs()
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, labels=labels).loss
        loss = model(ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(loss, expected, atol=ATOL, rtol=0)
    manual = torch.nn.functional.cross_entropy(
        model(ids, attention_mask=mask).logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1)
    )
    torch.testing.assert_close(loss, manual)


def test_token_classification_loss_parity(pairs):
    ref, model = pairs["token-classification"]
    ids, mask = _inputs()
    labels = torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, attention_mask=mask, labels=labels).loss,
            ref(ids, attention_mask=mask, labels=labels).loss,
            atol=ATOL, rtol=0,
        )  # fmt: skip


def test_question_answering_loss_parity(pairs):
    ref, model = pairs["question-answering"]
    ids, mask = _inputs()
    start, end = torch.tensor([1, 5, 40]), torch.tensor([3, 8, 2])  # 40 is out of range: ignored
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, start_positions=start, end_positions=end).loss
        loss = model(ids, attention_mask=mask, start_positions=start, end_positions=end).loss
    torch.testing.assert_close(loss, expected, atol=ATOL, rtol=0)


def test_sequence_classification_pools_last_non_pad_token(pairs):
    ref, model = pairs["sequence-classification"]
    ids, mask = _inputs()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        ref_out = ref(ids, attention_mask=mask, labels=labels)
        out = model(ids, attention_mask=mask, labels=labels)
        per_token = model.score(model.transformer(ids, attention_mask=mask).last_hidden_state)
    _assert_close(ref_out, out, ["logits", "loss"])
    # Row 2 is right-padded from index 6: its last real token is at 5.
    torch.testing.assert_close(out.logits[2], per_token[2, 5])
    torch.testing.assert_close(out.logits[1], per_token[1, -1])


@pytest.mark.parametrize(
    ("num_labels", "labels"),
    [(1, torch.tensor([0.5, -1.0, 2.0])), (3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))],
    ids=["regression", "multi-label"],
)
def test_sequence_classification_problem_types(tmp_path_factory, num_labels, labels):
    ref, directory = _save(tmp_path_factory, "GPT2ForSequenceClassification", **{**TINY, "num_labels": num_labels})
    model = build_native("sequence-classification", directory, GPT2ForSequenceClassification)
    ids, mask = _inputs()
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, labels=labels).loss
        loss = model(ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(loss, expected, atol=ATOL, rtol=0)


def test_sequence_classification_without_pad_token(tmp_path_factory):
    ref, directory = _save(tmp_path_factory, "GPT2ForSequenceClassification", **{**TINY, "pad_token_id": None})
    model = build_native("sequence-classification", directory, GPT2ForSequenceClassification)
    ids, _ = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(ids[:1]).logits, ref(ids[:1]).logits, atol=ATOL, rtol=0)
    with pytest.raises(ModelInputError, match="needs config.pad_token_id") as err:
        model(ids)
    assert "pad_token_id" in err.value.hint


def test_sequence_classification_bad_problem_type(pairs, monkeypatch):
    _, model = pairs["sequence-classification"]
    monkeypatch.setattr(model.config, "problem_type", "ranking")
    ids, _ = _inputs()
    with pytest.raises(ConfigError, match="problem_type 'ranking'"):
        model(ids, labels=torch.tensor([0, 1, 2]))


def test_lm_head_shares_storage_with_wte(pairs):
    _, model = pairs["causal-lm"]
    assert model.tied_weights == {"lm_head.weight": "transformer.wte.weight"}
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    fresh = GPT2LMHeadModel(GPT2Config(**TINY))  # tied from construction too
    assert fresh.lm_head.weight is fresh.transformer.wte.weight


def test_untied_lm_head_loads_its_own_weight(tmp_path_factory):
    ref, directory = _save(tmp_path_factory, "GPT2LMHeadModel", **{**TINY, "tie_word_embeddings": False})
    model = build_native("causal-lm", directory, GPT2LMHeadModel)
    assert model.tied_weights == {}
    assert model.lm_head.weight is not model.transformer.wte.weight
    ids, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


def test_config_variants_parity(tmp_path_factory):
    """Layer-index scaling, unscaled attention, exact GELU, custom n_inner, upcast flag."""
    variant = {
        **TINY, "scale_attn_by_inverse_layer_idx": True, "scale_attn_weights": False,
        "activation_function": "gelu", "n_inner": 48, "reorder_and_upcast_attn": True, "layer_norm_epsilon": 1e-6,
    }  # fmt: skip
    ref, directory = _save(tmp_path_factory, "GPT2LMHeadModel", **variant)
    model = build_native("causal-lm", directory, GPT2LMHeadModel)
    ids, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, atol=ATOL, rtol=0
        )


def test_token_type_ids_and_inputs_embeds(pairs):
    ref, model = pairs["model"]
    ids, mask = _inputs()
    types = torch.randint(0, VOCAB, ids.shape)
    embeds = model.wte(ids).detach()
    with torch.no_grad():
        _assert_close(ref(ids, token_type_ids=types), model(ids, token_type_ids=types), ["last_hidden_state"])
        _assert_close(ref(inputs_embeds=embeds), model(inputs_embeds=embeds), ["last_hidden_state"])


def test_config_reads_transformers_config_json(pairs, tmp_path_factory):
    ref, _ = pairs["sequence-classification"]
    directory = tmp_path_factory.mktemp("cfg")
    ref.config.save_pretrained(directory)
    data = json.loads((directory / "config.json").read_text())
    config = GPT2Config.from_dict(data)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 4)
    assert config.n_embd == 32 and config.max_position_embeddings == 64
    assert config.num_labels == 3 and config.id2label[2] == "LABEL_2" and config.label2id["LABEL_0"] == 0
    assert config.pad_token_id == PAD and config.tie_word_embeddings is True
    written = config.to_dict()
    assert written["n_embd"] == 32 and "hidden_size" not in written
    back = transformers.GPT2Config.from_dict(json.loads(json.dumps(written)))
    assert (back.n_embd, back.n_layer, back.n_head, back.n_positions, back.num_labels) == (32, 2, 4, 64, 3)


def test_config_defaults_match_transformers():
    ours, theirs = GPT2Config().to_dict(), transformers.GPT2Config().to_dict()
    for key in [
        "vocab_size",
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "n_inner",
        "activation_function",
        "layer_norm_epsilon",
        "scale_attn_weights",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
    ]:
        assert ours[key] == theirs[key], key
    assert GPT2Config().num_labels == 2
    assert GPT2Config(num_labels=5).id2label[4] == "LABEL_4"


def test_construction_on_meta_device():
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config(**TINY))
    assert all(p.is_meta for p in model.parameters())
    state = {k: torch.zeros(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True)
    assert not any(p.is_meta for p in model.parameters())


def test_init_weights_is_transformers_style():
    model = GPT2LMHeadModel(GPT2Config(**TINY))
    model.apply(model._init_weights)
    assert torch.all(model.transformer.h[0].ln_1.weight == 1)
    assert torch.all(model.transformer.h[0].attn.c_attn.bias == 0)
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_old_checkpoint_mask_buffers_are_ignorable():
    patterns = [re.compile(p) for p in GPT2Model._keys_to_ignore_on_load_unexpected]
    assert any(p.search("h.0.attn.bias") for p in patterns)
    assert any(p.search("transformer.h.11.attn.masked_bias") for p in patterns)
    assert not any(p.search("h.0.attn.c_attn.bias") for p in patterns)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"activation_function": "gelu_magic"}, "activation_function 'gelu_magic' is not supported"),
        ({"n_embd": 30}, r"n_embd \(30\) must be divisible by n_head \(4\)"),
        ({"add_cross_attention": True}, "add_cross_attention=True"),
        ({"num_labels": 3, "id2label": {"0": "a"}}, "num_labels=3 disagrees with id2label"),
    ],
)
def test_bad_configs(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        GPT2LMHeadModel(GPT2Config.from_dict({**TINY, **overrides}))
    assert err.value.hint


def test_bad_inputs(pairs):
    _, model = pairs["model"]
    ids, mask = _inputs()
    with pytest.raises(ModelInputError, match=r"attention_mask must be \[batch, past \+ seq\] = \[3, 9\]"):
        model(ids, attention_mask=mask[:, :5])
    with pytest.raises(ModelInputError, match="at most n_positions=64 tokens, got 65"):
        model(torch.ones(1, 65, dtype=torch.long))
    with pytest.raises(ModelInputError, match="exactly one of input_ids or inputs_embeds, got neither"):
        model()
    with pytest.raises(ModelInputError, match="got both"):
        model(ids, inputs_embeds=torch.zeros(3, 9, 32))
