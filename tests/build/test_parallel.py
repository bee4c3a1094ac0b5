"""Tensor-parallel and FSDP2 builds for real: pytest launches torchrun workers on gloo (2 and 4 CPU ranks)
and compares what every rank computed with the single-process model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import factory
from factory.errors import ParallelError
from tests.build.tiny import LLAMA, save_pretrained, tiny_llama
from tests.build.torchrun import launch

transformers = pytest.importorskip("transformers")

WORKER = Path(__file__).with_name("tp_worker.py")
IDS = [[0, 5, 9, 17, 33, 64], [3, 3, 2, 77, 90, 41]]
MASK = [[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
CAUSAL = {"input_ids": IDS, "attention_mask": MASK}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny checkpoints saved by transformers: GQA + odd vocabulary + tied embeddings, kv heads below tp,
    q/k norm, GPT-2's Conv1D, BERT's tied decoder, and an architecture only the pack serves."""
    T = transformers
    root = tmp_path_factory.mktemp("tp")
    torch.manual_seed(0)
    llama = LLAMA
    return {
        "llama": tiny_llama(root / "llama", vocab_size=101, tie_word_embeddings=True),
        "llama_kv1": tiny_llama(root / "kv1", vocab_size=96, num_key_value_heads=1),
        "llama_kv3": tiny_llama(
            root / "kv3",
            vocab_size=96,
            hidden_size=48,
            num_hidden_layers=1,
            num_attention_heads=6,
            num_key_value_heads=3,
        ),
        "qwen3": save_pretrained(
            T.Qwen3ForCausalLM(
                T.Qwen3Config(
                    vocab_size=96,
                    hidden_size=32,
                    intermediate_size=48,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    num_key_value_heads=2,
                    head_dim=8,
                    tie_word_embeddings=False,
                )
            ),
            root / "qwen3",
        ),
        "gpt2": save_pretrained(
            T.GPT2LMHeadModel(T.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
            root / "gpt2",
        ),
        "bert": save_pretrained(
            T.BertForMaskedLM(
                T.BertConfig(
                    vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48
                )
            ),
            root / "bert",
        ),
        "granite": save_pretrained(
            T.GraniteForCausalLM(
                T.GraniteConfig(vocab_size=103, num_attention_heads=4, num_key_value_heads=2, **llama)
            ),
            root / "granite",
        ),
        **family_checkpoints(root),
    }


def family_checkpoints(root: Path) -> dict[str, str]:
    """One tiny checkpoint per family whose tensor-parallel plan the two-rank run checks: Gemma (scaled, tied
    embeddings), Gemma 2 (sliding window shorter than the prompt, soft-capped attention and logits, one kv head
    below tp), Gemma 3 (q/k norms), the MoE decoders (experts split, the router whole; Qwen2-MoE's shared expert
    and a dense layer), RoBERTa (padding id 1, tied lm_head with its bias) and DistilBERT (tied vocab_projector)."""
    T = transformers
    torch.manual_seed(0)
    small = dict(vocab_size=96, hidden_size=32, num_attention_heads=4, max_position_embeddings=64)
    decoder = dict(small, num_hidden_layers=2, head_dim=8, tie_word_embeddings=True)
    moe = dict(small, num_hidden_layers=2, num_key_value_heads=2, num_experts_per_tok=2, tie_word_embeddings=False)
    models = {
        "gemma2": T.Gemma2ForCausalLM(
            T.Gemma2Config(
                **decoder,
                intermediate_size=48,
                num_key_value_heads=1,
                sliding_window=4,
                attn_logit_softcapping=5.0,
                final_logit_softcapping=3.0,
            )
        ),
        "gemma": T.GemmaForCausalLM(T.GemmaConfig(**decoder, intermediate_size=48, num_key_value_heads=2)),
        "gemma3_text": T.Gemma3ForCausalLM(
            T.Gemma3TextConfig(**decoder, intermediate_size=48, num_key_value_heads=2, sliding_window=4)
        ),
        "mixtral": T.MixtralForCausalLM(T.MixtralConfig(**moe, intermediate_size=24, num_local_experts=4)),
        "qwen2_moe": T.Qwen2MoeForCausalLM(
            T.Qwen2MoeConfig(
                **moe,
                intermediate_size=40,
                moe_intermediate_size=24,
                shared_expert_intermediate_size=16,
                num_experts=4,
                mlp_only_layers=[1],
                use_sliding_window=True,  # without it transformers writes sliding_window=0, which factory refuses
                sliding_window=4,
            )
        ),
        "qwen3_moe": T.Qwen3MoeForCausalLM(
            T.Qwen3MoeConfig(**moe, head_dim=8, intermediate_size=40, moe_intermediate_size=24, num_experts=4)
        ),
        "roberta": T.RobertaForMaskedLM(
            T.RobertaConfig(**dict(small, vocab_size=97), num_hidden_layers=2, intermediate_size=48)
        ),
        "distilbert": T.DistilBertForMaskedLM(
            T.DistilBertConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=64)
        ),
    }
    return {name: save_pretrained(model, root / name) for name, model in models.items()}


#: The families of :func:`family_checkpoints`: (scenario name, task, greedy tokens to generate).
FAMILIES = [
    ("gemma", "causal-lm", 0),
    ("gemma2", "causal-lm", 6),
    ("gemma3_text", "causal-lm", 4),
    ("mixtral", "causal-lm", 4),
    ("qwen2_moe", "causal-lm", 4),
    ("qwen3_moe", "causal-lm", 0),
    ("roberta", "masked-lm", 0),
    ("distilbert", "masked-lm", 0),
]


def scenarios(ckpt: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "name": "llama",
            "task": "causal-lm",
            "path": ckpt["llama"],
            "inputs": CAUSAL,
            "generate": 6,
            "backward": True,
        },
        {
            "name": "llama_kv1",
            "task": "causal-lm",
            "path": ckpt["llama_kv1"],
            "inputs": CAUSAL,
            "generate": 6,
            "backward": True,
        },
        {"name": "llama_kv3", "task": "causal-lm", "path": ckpt["llama_kv3"], "inputs": CAUSAL},
        {
            "name": "qwen3",
            "task": "causal-lm",
            "path": ckpt["qwen3"],
            "inputs": CAUSAL,
            "generate": 6,
            "backward": True,
        },
        {"name": "gpt2", "task": "causal-lm", "path": ckpt["gpt2"], "inputs": CAUSAL, "generate": 6},
        {"name": "bert", "task": "masked-lm", "path": ckpt["bert"], "inputs": {"input_ids": IDS}},
        {"name": "granite", "task": "causal-lm", "path": ckpt["granite"], "inputs": CAUSAL, "generate": 4},
        *(
            {"name": name, "task": task, "path": ckpt[name], "inputs": CAUSAL, **({"generate": n} if n else {})}
            for name, task, n in FAMILIES
        ),
        {"name": "tp_not_world", "task": "causal-lm", "path": ckpt["llama"], "tp": 3, "inputs": CAUSAL},
        {"name": "device_not_backend", "task": "causal-lm", "path": ckpt["llama"], "device": "meta", "inputs": CAUSAL},
    ]


def four_rank_scenarios(ckpt: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "name": "fsdp_tp",
            "task": "causal-lm",
            "path": ckpt["llama"],
            "mesh": [2, 2],
            "inputs": CAUSAL,
            "generate": 6,
        },
        {"name": "fsdp_tp_qwen3", "task": "causal-lm", "path": ckpt["qwen3"], "mesh": [2, 2], "inputs": CAUSAL},
        {
            "name": "kv_below_tp4",
            "task": "causal-lm",
            "path": ckpt["llama"],
            "mesh_1d": True,
            "inputs": CAUSAL,
            "generate": 6,
        },
        {
            "name": "mesh_names",
            "task": "causal-lm",
            "path": ckpt["llama"],
            "mesh": [2, 2],
            "mesh_names": ["dp", "tp"],
            "inputs": CAUSAL,
        },
    ]


def _run(tmp_path_factory: pytest.TempPathFactory, specs: list[dict[str, Any]], nproc: int) -> list[dict[str, Any]]:
    spec = tmp_path_factory.mktemp("spec") / "spec.json"
    spec.write_text(json.dumps(specs))
    return launch(WORKER, nproc, str(spec), timeout=420)


@pytest.fixture(scope="module")
def two_ranks(checkpoints: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _run(tmp_path_factory, scenarios(checkpoints), 2)


@pytest.fixture(scope="module")
def four_ranks(checkpoints: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _run(tmp_path_factory, four_rank_scenarios(checkpoints), 4)


def reference(spec: dict[str, Any]) -> dict[str, Any]:
    """What one process computes for the scenario."""
    model = factory.build(spec["task"], spec["path"])
    inputs = {k: torch.tensor(v) for k, v in spec["inputs"].items()}
    with torch.no_grad():
        out = {"logits": model(**inputs).logits}
    if spec.get("generate"):
        out["generated"] = model.generate(**inputs, max_new_tokens=spec["generate"])
    return out


def check_against_one_process(ranks: list[dict[str, Any]], spec: dict[str, Any]) -> None:
    want = reference(spec)
    for rank, results in enumerate(ranks):
        got = results[spec["name"]]
        assert "error" not in got, got
        assert got["local_shape_mismatches"] == [], f"rank {rank}"
        torch.testing.assert_close(got["logits"], want["logits"], rtol=1e-5, atol=1e-5, msg=f"rank {rank}")
        if "generated" in want:
            assert torch.equal(got["generated"], want["generated"]), f"rank {rank}"


def spec_of(checkpoints: dict[str, str], name: str, four: bool = False) -> dict[str, Any]:
    return next(s for s in (four_rank_scenarios if four else scenarios)(checkpoints) if s["name"] == name)


@pytest.mark.parametrize(
    "name", ["llama", "qwen3", "gpt2", "bert", "llama_kv1", "granite", *(name for name, _, _ in FAMILIES)]
)
def test_two_ranks_equal_one_process(two_ranks, checkpoints, name):
    check_against_one_process(two_ranks, spec_of(checkpoints, name))


@pytest.mark.parametrize("name", ["llama", "qwen3", "llama_kv1"])
def test_gradients_of_each_shard_equal_one_process(two_ranks, checkpoints, name):
    """Training through the split: the colwise inputs' gradients are summed, q/k norms and shared kv heads too."""
    spec = spec_of(checkpoints, name)
    model = factory.build(spec["task"], spec["path"])
    ids = torch.tensor(spec["inputs"]["input_ids"])
    with torch.enable_grad():
        model(input_ids=ids, attention_mask=torch.tensor(spec["inputs"]["attention_mask"]), labels=ids).loss.backward()
    for rank, results in enumerate(two_ranks):
        got = results[name]
        assert set(got["grads"]) == {n for n, _ in model.named_parameters()}
        for param, grad in got["grads"].items():
            boxes, dim = got["boxes"][param]
            full = model.get_parameter(param).grad
            want = torch.cat([full[tuple(slice(a, b) for a, b in box)] for box in boxes], dim=dim)
            torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-6, msg=f"rank {rank}: {param}")


def test_tied_odd_vocabulary_is_split_unevenly_and_stays_tied(two_ranks):
    shapes = [r["llama"]["params"] for r in two_ranks]
    assert [s["model.embed_tokens.weight"] for s in shapes] == [("DTensor", (51, 32)), ("DTensor", (50, 32))]
    assert all(s["lm_head.weight"] == s["model.embed_tokens.weight"] for s in shapes)  # one tensor, vocab-sharded
    assert [s["model.layers.0.self_attn.k_proj.weight"] for s in shapes] == [("DTensor", (8, 32))] * 2  # 1 kv head


def test_each_rank_reads_only_its_own_slices(two_ranks, checkpoints):
    for name in ("llama", "qwen3", "gpt2", "bert"):
        reads = [r[name]["read"] for r in two_ranks]
        assert reads == [r[name]["planned_read"] for r in two_ranks], name  # what factory.plan said
        total = sum(p.stat().st_size for p in Path(checkpoints[name]).glob("*.safetensors"))
        assert all(read < total for read in reads), (name, reads, total)
        for results in two_ranks:  # of what the plan shards, each rank reads half (an uneven split: a row more)
            got = results[name]
            assert got["sharded_total"] / 2 - 512 <= got["sharded_read"] <= got["sharded_total"] / 2 + 512, name
    ratios = {
        name: max(r[name]["read"] for r in two_ranks)
        / sum(p.stat().st_size for p in Path(checkpoints[name]).glob("*.safetensors"))
        for name in ("llama", "qwen3", "gpt2")
    }
    assert all(ratio < 0.65 for ratio in ratios.values()), ratios  # tiny models: norms and positions replicated


def test_kv_heads_below_tp_are_replicated_per_rank(two_ranks):
    shapes = [r["llama_kv1"]["params"]["model.layers.0.self_attn.k_proj.weight"] for r in two_ranks]
    assert shapes == [("Parameter", (8, 32))] * 2  # each rank keeps the one kv head its query heads use


def test_kv_heads_that_cannot_split_are_refused_before_any_read(two_ranks):
    for results in two_ranks:
        got = results["llama_kv3"]
        assert got["error"] == "ParallelError" and got["slices_read"] == 0
        assert "num_key_value_heads=3 is not divisible by tp_size=2" in got["message"]
        assert "registry.d/models/llama.yaml:" in got["message"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("tp_not_world", "tp_size=3, but the default process group has 2 ranks"),
        ("device_not_backend", "device='meta' conflicts with the gloo process group, whose ranks build on cpu"),
    ],
)
def test_a_mesh_that_does_not_fit_the_process_group_is_refused(two_ranks, name, message):
    for results in two_ranks:
        got = results[name]
        assert got["error"] == "ParallelError" and message in got["message"] and got["slices_read"] == 0


def test_fsdp2_with_tensor_parallel_inside_on_a_2d_mesh(four_ranks, checkpoints):
    check_against_one_process(four_ranks, spec_of(checkpoints, "fsdp_tp", four=True))
    check_against_one_process(four_ranks, spec_of(checkpoints, "fsdp_tp_qwen3", four=True))


def test_a_2d_mesh_needs_its_dimension_names(four_ranks):
    for results in four_ranks:
        got = results["mesh_names"]
        assert got["error"] == "ParallelError" and "named ('dp', 'tp')" in got["message"]
        assert "('dp_shard', 'tp')" in got["message"]


def test_kv_heads_below_tp_on_four_ranks(four_ranks, checkpoints):
    check_against_one_process(four_ranks, spec_of(checkpoints, "kv_below_tp4", four=True))
    shapes = [r["kv_below_tp4"]["params"]["model.layers.0.self_attn.k_proj.weight"] for r in four_ranks]
    assert shapes == [("Parameter", (8, 32))] * 4


def test_without_a_process_group_the_build_says_how_to_launch(checkpoints):
    with pytest.raises(ParallelError, match="needs torch.distributed: no default process group") as err:
        factory.build("causal-lm", checkpoints["llama"], tp_size=2)
    assert "torchrun" in err.value.hint


def test_components_are_not_split(checkpoints):
    with pytest.raises(ParallelError, match="'config' is a config"):
        factory.build("config", checkpoints["llama"], tp_size=2)
