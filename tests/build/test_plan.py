"""factory.plan and ``factory explain --tp``: who reads and holds what, without torch.distributed or a tensor read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributed.tensor import Shard
from torch.distributed.tensor._utils import _compute_local_shape_and_global_offset
from torch.distributed.tensor.placement_types import _StridedShard

import factory
from factory.build import plan as P
from factory.build import transformers_builder as hf_builder
from factory.cli.main import main
from factory.errors import MissingDependencyError, ParallelError
from tests.build.tiny import save_pretrained, tiny_llama

transformers = pytest.importorskip("transformers")


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 70), world=st.integers(1, 9), other=st.integers(1, 5), dim=st.integers(0, 1))
def test_boxes_are_the_shards_dtensor_computes(size, world, other, dim):
    shape = (size, other) if dim == 0 else (other, size)
    for rank in range(world):
        want_shape, want_offset = _compute_local_shape_and_global_offset(shape, (world,), [rank], [Shard(dim)])
        [box] = P.boxes(shape, P.Placement("shard", dim), world, rank)
        assert tuple(b - a for a, b in box) == tuple(want_shape)
        if want_shape[dim]:
            assert tuple(a for a, _ in box) == tuple(want_offset)


@settings(max_examples=100, deadline=None)
@given(part=st.integers(1, 24), parts=st.integers(2, 3), world=st.integers(1, 5))
def test_packed_boxes_are_dtensors_strided_shard(part, parts, world):
    shape = (part * parts, 4)
    for rank in range(world):
        want, _ = _compute_local_shape_and_global_offset(
            shape, (world,), [rank], [_StridedShard(0, split_factor=parts)]
        )
        assert P.local_shape(shape, P.Placement("packed", 0, parts=parts), world, rank) == tuple(want)


def test_group_boxes_give_each_rank_the_unit_its_heads_use():
    # 2 kv heads of 8 rows over 4 ranks: ranks 0, 1 keep head 0, ranks 2, 3 head 1
    got = [P.boxes((16, 4), P.Placement("group", 0, units=2), 4, r)[0][0] for r in range(4)]
    assert got == [(0, 8), (0, 8), (8, 16), (8, 16)]


@pytest.mark.parametrize(
    "style, kind, leaf, ndim, want",
    [
        ("colwise", "linear", "weight", 2, P.Placement("shard", 0)),
        ("colwise", "linear", "bias", 1, P.Placement("shard", 0)),
        ("rowwise", "linear", "weight", 2, P.Placement("shard", 1)),
        ("rowwise", "linear", "bias", 1, P.REPLICATE),
        ("colwise", "conv1d", "weight", 2, P.Placement("shard", 1)),  # GPT-2's Conv1D is [in, out]
        ("rowwise", "conv1d", "weight", 2, P.Placement("shard", 0)),
        ("embedding_rowwise", "embedding", "weight", 2, P.Placement("shard", 0)),
        ("embedding_colwise", "embedding", "weight", 2, P.Placement("shard", 1)),
        ("packed_colwise", "conv1d", "weight", 2, P.Placement("packed", 1, parts=3)),
        ("replicated_with_grad_allreduce", "other", "weight", 1, P.REPLICATE),
    ],
)
def test_placements_follow_the_module_layout(style, kind, leaf, ndim, want):
    assert P.placement_for(style, kind, leaf, ndim, 3 if style.startswith("packed") else None) == want


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    return Path(tiny_llama(tmp_path_factory.mktemp("plan") / "llama", vocab_size=101, tie_word_embeddings=True))


def test_plan_reads_headers_only_and_counts_each_rank(llama_dir, monkeypatch):
    from factory.build.weights import _Reader

    monkeypatch.setattr(_Reader, "tensor", lambda *a, **k: pytest.fail("a tensor was read"))
    sp = factory.plan("causal-lm", llama_dir, tp_size=2)
    file_bytes = (llama_dir / "model.safetensors").stat().st_size
    ranks = sp.ranks()
    assert sum(read for read, _ in ranks) - 2 * sum(t.read(1, 0) for t in sp.replicated) == sum(
        t.read(1, 0) for t in sp.sharded
    )
    assert all(read == held for read, held in ranks)  # float32 checkpoint built in float32
    assert ranks[0][0] - ranks[1][0] == 32 * 4  # the odd vocabulary: rank 0 holds one embedding row more
    assert sp.checkpoint_bytes < file_bytes
    by_name = {t.name: t for t in sp.tensors}
    assert "lm_head.weight" not in by_name and by_name["model.embed_tokens.weight"].tied == ("lm_head.weight",)
    assert by_name["model.layers.0.self_attn.o_proj.weight"].placement == P.Placement("shard", 1)
    assert by_name["model.norm.weight"].placement == P.REPLICATE and by_name["model.norm.weight"].entry is None
    assert sp.problems == []


def test_plan_in_a_smaller_dtype_reads_the_checkpoint_and_holds_less(llama_dir):
    sp = factory.plan("causal-lm", llama_dir, tp_size=2, dtype="bfloat16")
    assert all(held * 2 == read for read, held in sp.ranks())


def test_plan_names_divisibility_problems_with_file_and_line(llama_dir):
    sp = factory.plan("causal-lm", llama_dir, tp_size=3)
    [heads, kv] = sp.problems
    assert heads.message == "num_attention_heads=4 is not divisible by tp_size=3"
    assert "num_key_value_heads=2 is not divisible by tp_size=3, and tp_size is not a multiple of it" in kv.message
    lines = Path(heads.file).read_text().splitlines()
    assert (
        heads.file.endswith("registry.d/models/llama.yaml")
        and lines[heads.line - 1].strip() == "num_attention_heads: tp"
    )
    with pytest.raises(
        ParallelError, match=rf"cannot be split over tp_size=3: .*llama.yaml:{heads.line}: num_attention"
    ):
        sp.raise_problems()
    assert factory.plan("causal-lm", llama_dir, tp_size=4).problems == []  # kv heads replicated over 4 ranks
    units = factory.plan("causal-lm", llama_dir, tp_size=4).replicated_units
    assert sorted(units) == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("k_proj", "v_proj")]


def test_plan_of_a_pack_architecture_uses_its_meta_built_transformers_model(tmp_path):
    T = transformers
    model = T.GraniteForCausalLM(
        T.GraniteConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    sp = factory.plan("causal-lm", save_pretrained(model, tmp_path / "granite"), tp_size=2)
    assert sp.builder == "transformers" and sp.plan.provenance.file.endswith("packs/transformers/granite.yaml")
    by_name = {t.name: t for t in sp.tensors}
    assert by_name["model.layers.0.self_attn.q_proj.weight"].placement == P.Placement("shard", 0)
    assert by_name["model.embed_tokens.weight"].style == "embedding_rowwise"


def test_explain_with_tp_prints_the_plan(llama_dir, capsys):
    assert main(["explain", "causal-lm", str(llama_dir), "--tp", "2"]) == 0
    out = capsys.readouterr().out
    assert "parallel plan: 9 tensor-parallel rule(s), 2 divisibility check(s)" in out
    assert "tensor-parallel plan: causal-lm / llama -> factory.models.llama:LlamaForCausalLM" in out
    assert "rank 0      reads" in out and "rank 1      reads" in out
    assert "model.embed_tokens.weight [101x32] (tied: lm_head.weight): embedding_rowwise -> Shard(0)" in out
    assert "registry.d/models/llama.yaml:17" in out and "model.norm.weight (1 x 128 B): not in the plan" in out
    assert main(["explain", "causal-lm", str(llama_dir), "--tp", "3"]) == 1
    assert "problems (the build refuses before reading):" in capsys.readouterr().out


def test_explain_with_tp_as_json(llama_dir, capsys):
    import json

    assert main(["explain", "causal-lm", str(llama_dir), "--tp", "2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plan"]["tp_size"] == 2 and len(data["plan"]["ranks"]) == 2
    assert data["chain"][0]["step"] == "name"


def test_explain_without_tp_imports_no_torch(llama_dir):
    code = (
        "import sys; from factory.cli.main import main; "
        f"rc = main(['explain', 'causal-lm', {str(llama_dir)!r}]); assert 'torch' not in sys.modules; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_plan_is_a_lazy_public_name():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, factory; f = factory.plan.__name__; "
            "assert 'torch' not in sys.modules, 'plan lookup imported torch'; print(f)",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "plan", proc.stderr


def test_components_have_no_plan(llama_dir):
    with pytest.raises(ParallelError, match="splits models; 'config' is a config"):
        factory.plan("config", llama_dir, tp_size=2)


def test_pack_tensor_parallel_without_accelerate_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="needs accelerate") as err:
        hf_builder.distributed_config(torch.nn.Linear(2, 2), None, 2)
    assert err.value.hint == "pip install 'factory-registry[distributed]'"
