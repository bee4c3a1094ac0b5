"""The pack carries transformers' own tensor-parallel plans: resolved against the transformers model (built on
the meta device), the YAML plan is exactly the plan transformers itself would apply."""

from __future__ import annotations

import pytest

from factory.build import transformers_builder as hf_builder
from factory.registry.loader import load_registry

transformers = pytest.importorskip("transformers")

CASES = [
    ("llama", "causal-lm"),
    ("llama", "model"),
    ("granite", "causal-lm"),
    ("qwen3", "sequence-classification"),
    ("phi3", "causal-lm"),
    ("gemma", "causal-lm"),
    ("starcoder2", "causal-lm"),
]


@pytest.fixture(scope="module")
def table():
    return load_registry()


@pytest.mark.parametrize("arch, task", CASES, ids=[f"{a}/{t}" for a, t in CASES])
def test_pack_plan_is_transformers_plan(table, arch, task):
    reg = table.registrations[(task, arch)]
    pack_reg = reg if reg.builder == "transformers" else next(s for s in reg.shadows if s.builder == "transformers")
    plan = table.architectures[arch].parallel_for("transformers")
    assert plan is not None and plan.provenance.file.endswith(f"packs/transformers/{arch}.yaml")
    model, _, _ = hf_builder.meta_model(
        hf_builder.import_target(pack_reg), None, config_cls=hf_builder.pack_config(table, arch)
    )
    resolved = hf_builder.distributed_config(model, plan, 2).tp_plan
    assert resolved == dict(model.tp_plan), (arch, task)


def test_the_generator_writes_divisibility_checks_where_heads_are_split(table):
    llama = table.architectures["llama"].parallel_for("transformers")
    assert [(r.key, r.otherwise) for r in llama.divisible] == [
        ("num_attention_heads", "error"),
        ("num_key_value_heads", "error"),
    ]
    phi3 = table.architectures["phi3"].parallel_for("transformers")  # fused qkv gathered: heads not split per rank
    assert phi3.divisible == ()


def test_the_style_vocabulary_is_transformers_and_the_schemas():
    import json

    from transformers.distributed.parallel_utils import ALL_PARALLEL_STYLES

    from factory.build import plan as P
    from factory.registry import schemas

    assert set(ALL_PARALLEL_STYLES) == set(P.TRANSFORMERS_STYLES)
    assert set(schemas.schema("architecture")["$defs"]["tp_style"]["enum"]) == set(P.TRANSFORMERS_STYLES)
    assert P.NATIVE_STYLES < P.TRANSFORMERS_STYLES
    json.dumps(sorted(P.NATIVE_STYLES))
