"""Native models with the libraries people use on them: PEFT LoRA on Llama, torch.compile on BERT and Llama.

Graph breaks (``torch._dynamo.explain``), as measured with torch 2.13: none without an attention mask
(both compile with ``fullgraph=True``); with a mask, the native models' no-padding fast path
(``bool(attention_mask.all())``, a data-dependent branch) breaks the graph: BERT 2 breaks (3 with
padding), Llama 4 (5 with padding). The tests below pin those numbers, so a change to them is seen.
"""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

import factory
from factory.models.bert import BertModel
from factory.models.llama import LlamaForCausalLM
from tests.models.tiny import TINY_BERT as BERT
from tests.models.tiny import TINY_LLAMA as LLAMA

IDS = torch.tensor([[5, 17, 42, 8, 33, 2, 71], [9, 3, 61, 22, 14, 88, 6]])
PADDED = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]])


@pytest.fixture
def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return factory.build("causal-lm", "llama", config_overrides=LLAMA)


@pytest.fixture
def bert() -> BertModel:
    torch.manual_seed(0)
    return factory.build("model", "bert", config_overrides=BERT)


# --- PEFT -------------------------------------------------------------------------------------------
def test_lora_on_native_llama_trains_only_the_adapter_and_merges_exactly(llama):
    base = {k: v.clone() for k, v in llama.state_dict().items()}
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    model = peft.get_peft_model(llama, config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == {"q_proj", "v_proj"}
    assert len(trainable) == 2 * 2 * LLAMA["num_hidden_layers"]  # A and B, q and v, every layer

    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    logits = model(input_ids=IDS).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, LLAMA["vocab_size"]), IDS[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()
    model.eval()

    for name, tensor in model.get_base_model().state_dict().items():
        if "lora_" not in name:
            assert torch.equal(tensor, base[name.replace(".base_layer", "")]), name  # the base is untouched
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * (8 / 4)
    assert delta.abs().max() > 0  # the adapter learned something
    with torch.no_grad():
        adapted = model(input_ids=IDS).logits
        merged = model.merge_and_unload()
        assert type(merged) is LlamaForCausalLM
        torch.testing.assert_close(
            merged.model.layers[0].self_attn.q_proj.weight, base["model.layers.0.self_attn.q_proj.weight"] + delta
        )
        torch.testing.assert_close(merged(IDS).logits, adapted, rtol=1e-5, atol=1e-5)
    assert merged.generate(IDS, max_new_tokens=3, pad_token_id=0).shape == (2, 10)


# --- torch.compile ----------------------------------------------------------------------------------
def _explain(model, **kwargs):
    torch._dynamo.reset()
    return torch._dynamo.explain(model)(IDS, **kwargs)


@pytest.mark.compile
def test_compiled_llama_equals_eager_in_one_graph(llama):
    torch._dynamo.reset()
    compiled = torch.compile(llama, fullgraph=True)  # fullgraph: any graph break is an error
    with torch.no_grad():
        torch.testing.assert_close(compiled(IDS).logits, llama(IDS).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.compile
def test_compiled_bert_equals_eager_in_one_graph(bert):
    torch._dynamo.reset()
    compiled = torch.compile(bert, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(IDS).last_hidden_state, bert(IDS).last_hidden_state, rtol=1e-5, atol=1e-5)


@pytest.mark.compile
@pytest.mark.parametrize(
    ("family", "mask", "breaks"),
    [
        ("llama", None, 0),
        ("llama", "ones", 4),
        ("llama", "padded", 5),
        ("bert", None, 0),
        ("bert", "ones", 2),
        ("bert", "padded", 3),
    ],
)
def test_graph_breaks_and_outputs_with_an_attention_mask(request, family, mask, breaks):
    model = request.getfixturevalue(family)
    kwargs = {} if mask is None else {"attention_mask": torch.ones_like(IDS) if mask == "ones" else PADDED}
    explanation = _explain(model, **kwargs)
    assert explanation.graph_break_count == breaks
    assert explanation.graph_count == breaks + 1
    if breaks:
        assert all(
            "attention_mask" in str(frame.line) or "masks" in str(frame.line)
            for reason in explanation.break_reasons
            for frame in reason.user_stack[-1:]
        )
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")  # the graphs and their breaks, without code generation
    with torch.no_grad():
        out, ref = compiled(IDS, **kwargs), model(IDS, **kwargs)
    field = "logits" if family == "llama" else "last_hidden_state"
    torch.testing.assert_close(getattr(out, field), getattr(ref, field), rtol=1e-5, atol=1e-5)
