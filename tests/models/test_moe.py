"""Parity of the MoE decoders (mixtral, qwen2_moe, qwen3_moe) with transformers, head by head, including
router logits, the auxiliary load-balancing loss and both checkpoint layouts of the experts."""

from __future__ import annotations

import json

import pytest
import torch

import factory
from factory.errors import CheckpointError, ConfigError
from factory.models import moe as native
from tests.models.decoder_suite import (
    BASE,
    DecoderSuite,
    Variant,
    close,
    labels_for,
    make_inputs,
    randomize,
    transformers,
)

SHAPE = dict(hidden_size=40, intermediate_size=37, num_attention_heads=4, num_key_value_heads=2)
EAGER = {"experts_implementation": "eager"}  # transformers' grouped_mm kernel needs 16-byte strides
HEADS = ("model", "causal-lm", "sequence-classification", "token-classification", "question-answering")


def _classes(prefix: str, model_name: str) -> dict[str, tuple[str, type]]:
    autos = ("AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification")
    autos += ("AutoModelForTokenClassification", "AutoModelForQuestionAnswering")
    names = (model_name, "ForCausalLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")
    return {
        task: (auto, getattr(native, prefix + name if name.startswith("For") else name))
        for task, auto, name in zip(HEADS, autos, names)
    }


class TestMoe(DecoderSuite):
    VARIANTS = {
        # 5 experts, top-2 (renormalised, float32 weights), sliding window 5
        "mixtral-window": Variant(
            "mixtral",
            dict(SHAPE, num_hidden_layers=2, num_local_experts=5, num_experts_per_tok=2, sliding_window=5),
            hf_options=EAGER,
        ),
        # top-3 of 5 without renormalising, a gated shared expert, layer 1 dense, sliding layer 0, tied
        "qwen2moe-shared": Variant(
            "qwen2_moe",
            dict(
                SHAPE,
                num_hidden_layers=3,
                num_experts=5,
                num_experts_per_tok=3,
                moe_intermediate_size=13,
                shared_expert_intermediate_size=19,
                mlp_only_layers=[1],
                use_sliding_window=True,
                sliding_window=5,
                max_window_layers=2,
                tie_word_embeddings=True,
            ),
            hf_options=EAGER,
        ),
        # q/k norm, head_dim 12 (not hidden / heads), sparse every 2nd layer, renormalised top-2, biases, window
        "qwen3moe-step": Variant(
            "qwen3_moe",
            dict(
                SHAPE,
                num_hidden_layers=3,
                head_dim=12,
                num_experts=6,
                num_experts_per_tok=2,
                moe_intermediate_size=13,
                norm_topk_prob=True,
                decoder_sparse_step=2,
                attention_bias=True,
                use_sliding_window=True,
                sliding_window=5,
            ),
            hf_options=EAGER,
        ),
    }
    CLASSES = {
        "mixtral": _classes("Mixtral", "MixtralModel"),
        "qwen2_moe": _classes("Qwen2Moe", "Qwen2MoeModel"),
        "qwen3_moe": _classes("Qwen3Moe", "Qwen3MoeModel"),
    }

    @pytest.mark.parametrize("from_config", [False, True], ids=["argument", "config"])
    def test_router_logits_and_aux_loss_match_transformers(self, variant, checkpoints, from_config):
        reference, model = self.native(variant, "causal-lm", checkpoints)
        ids, mask = make_inputs()
        labels = labels_for("causal-lm", ids, mask)
        options = {} if from_config else {"output_router_logits": True}
        if from_config:
            reference.config.output_router_logits = model.config.output_router_logits = True
        try:
            with torch.no_grad():
                theirs = reference(input_ids=ids, attention_mask=mask, **labels, **options)
                ours = model(ids, attention_mask=mask, **labels, **options)
                unlabelled = model(ids, attention_mask=mask, **options)
        finally:
            reference.config.output_router_logits = model.config.output_router_logits = False
        assert len(ours.router_logits) == len(theirs.router_logits) == len(model.model.sparse_blocks())
        for i, (a, b) in enumerate(zip(ours.router_logits, theirs.router_logits)):
            close(a, b, f"router_logits[{i}]")
        close(ours.aux_loss, theirs.aux_loss, "aux_loss")
        close(ours.loss, theirs.loss, "loss with the aux loss")
        assert ours.aux_loss > 0 and unlabelled.loss is None
        close(unlabelled.aux_loss, theirs.aux_loss, "aux_loss without labels")

    def test_aux_loss_without_a_mask_matches_transformers(self, variant, checkpoints):
        reference, model = self.native(variant, "causal-lm", checkpoints)
        ids, _ = make_inputs()
        with torch.no_grad():
            theirs = reference(input_ids=ids, output_router_logits=True)
            ours = model(ids, output_router_logits=True)
        close(ours.aux_loss, theirs.aux_loss, "aux_loss")
        assert ours.router_logits[0].shape == (ids.numel(), model.config._expert_count())

    def test_router_logits_are_off_by_default(self, variant, checkpoints):
        _, model = self.native(variant, "causal-lm", checkpoints)
        ids, mask = make_inputs()
        with torch.no_grad():
            out = model(ids, attention_mask=mask)
        assert out.router_logits is None and out.aux_loss is None
        assert not any(block.gate._forward_hooks for block in model.model.sparse_blocks())

    def test_fused_expert_checkpoint_loads(self, variant, checkpoints, tmp_path):
        """transformers' save_pretrained(save_original_format=False) writes its fused 3-d expert tensors."""
        reference, model = self.native(variant, "causal-lm", checkpoints)
        reference.save_pretrained(tmp_path, save_original_format=False)
        from safetensors import safe_open

        with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
            names = list(f.keys())
        assert any(key.endswith("mlp.experts.gate_up_proj") for key in names)
        fused = factory.build("causal-lm", tmp_path)
        ids, mask = make_inputs()
        with torch.no_grad():
            close(fused(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits, "fused layout")
        for name, param in fused.named_parameters():
            torch.testing.assert_close(param, model.get_parameter(name), atol=0, rtol=0)

    def test_checkpoint_is_the_per_expert_layout(self, variant, checkpoints):
        _, directory = checkpoints(variant, "causal-lm")
        from safetensors import safe_open

        with safe_open(str(directory / "model.safetensors"), "pt") as f:
            keys = set(f.keys())
        expert = (
            "block_sparse_moe.experts.4.w3.weight" if variant.startswith("mixtral") else "mlp.experts.4.up_proj.weight"
        )
        assert any(key.endswith(expert) for key in keys)


def _config(variant: str, **overrides) -> native._MoeConfig:
    spec = TestMoe.VARIANTS[variant]
    config_cls = TestMoe.CLASSES[spec.model_type]["model"][1].config_class
    return config_cls(**{**BASE, **spec.config, **overrides})


def test_sparse_and_dense_layers_follow_the_config():
    qwen2 = native.Qwen2MoeModel(_config("qwen2moe-shared"))
    kinds = [type(layer.mlp).__name__ for layer in qwen2.layers]
    assert kinds == ["Qwen2MoeSparseMoeBlock", "MLP", "Qwen2MoeSparseMoeBlock"]
    assert qwen2.layers[1].mlp.up_proj.out_features == 37  # the dense layer has intermediate_size
    qwen3 = native.Qwen3MoeModel(_config("qwen3moe-step"))
    assert [type(layer.mlp).__name__ for layer in qwen3.layers] == ["MLP", "SparseMoeBlock", "MLP"]
    assert qwen2.layer_windows == [5, None, None] and qwen3.layer_windows == [5, 5, 5]


def test_mixtral_jitter_noise_applies_in_training_only():
    model = native.MixtralModel(_config("mixtral-window", router_jitter_noise=0.3))
    randomize(model)
    ids, _ = make_inputs()
    model.train()
    assert not torch.allclose(model(ids).last_hidden_state, model(ids).last_hidden_state)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).last_hidden_state, model(ids).last_hidden_state, atol=0, rtol=0)


def test_routing_weights_per_family():
    """Mixtral renormalises and keeps float32; Qwen casts to the hidden dtype and renormalises on request."""
    logits = torch.randn(7, 5).to(torch.bfloat16)
    mixtral = native.MixtralSparseMoeBlock(_config("mixtral-window"))
    weights, _ = mixtral.route(logits)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights.sum(-1), torch.ones(7))
    qwen = native.SparseMoeBlock(_config("qwen2moe-shared"))
    weights, selected = qwen.route(logits)
    assert weights.dtype == torch.bfloat16 and selected.shape == (7, 3) and (weights.float().sum(-1) < 1).all()


def test_load_balancing_loss_uses_the_new_tokens_of_a_longer_mask():
    logits = (torch.randn(6, 4),)
    mask = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 0, 0, 1, 0, 1]])
    assert torch.equal(
        native.load_balancing_loss(logits, 4, 2, mask), native.load_balancing_loss(logits, 4, 2, mask[:, -3:])
    )


def test_expert_counts_read_from_either_name():
    """transformers 5 writes qwen3_moe's num_experts as num_local_experts; Mixtral also answers num_experts."""
    assert native.Qwen3MoeConfig.from_dict({"num_local_experts": 16}).num_experts == 16
    assert native.Qwen3MoeConfig.from_dict({"num_experts": 16})._expert_count() == 16
    theirs = transformers.Qwen3MoeConfig.from_dict(native.Qwen3MoeConfig(num_experts=12).to_dict())
    assert theirs.num_experts == 12
    assert native.MixtralConfig.from_dict({"num_experts": 4}).num_local_experts == 4


@pytest.mark.parametrize(
    "variant, overrides, message",
    [
        ("mixtral-window", {"num_experts_per_tok": 6}, "num_experts_per_tok=6 must be between 1 and"),
        ("qwen2moe-shared", {"num_experts_per_tok": 0}, "num_experts_per_tok=0 must be between 1 and"),
        ("qwen3moe-step", {"decoder_sparse_step": 0}, "decoder_sparse_step=0 must be a positive integer"),
        ("qwen3moe-step", {"mlp_only_layers": "1"}, "mlp_only_layers must be a list of integers"),
    ],
)
def test_bad_moe_configs_are_refused(variant, overrides, message):
    model_cls = TestMoe.CLASSES[TestMoe.VARIANTS[variant].model_type]["causal-lm"][1]
    with pytest.raises(ConfigError, match=message):  # from the config's value checks or from the model's
        model_cls(_config(variant, **overrides))


def test_a_tensor_both_fused_and_on_its_own_is_refused(tmp_path):
    """A checkpoint mixing both expert layouts for one tensor is a CheckpointError naming it."""
    config = _config("qwen3moe-step")
    model = native.Qwen3MoeForCausalLM(config)
    parts = native.split_fused_experts("model.layers.1.mlp.experts.down_proj", (6, 40, 13), native.MoeDecoderLayer)
    assert parts[0] == ("model.layers.1.mlp.experts.0.down_proj.weight", 0, 40, (40, 13))
    from safetensors.torch import save_file

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for e in range(6):
        for name in ("gate_proj", "up_proj", "down_proj"):
            state.pop(f"model.layers.1.mlp.experts.{e}.{name}.weight")
    state["model.layers.1.mlp.experts.gate_up_proj"] = torch.zeros(6, 26, 40)
    state["model.layers.1.mlp.experts.down_proj"] = torch.zeros(6, 40, 13)
    state["model.layers.1.mlp.experts.0.down_proj.weight"] = torch.zeros(40, 13)  # also stored on its own
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    with pytest.raises(CheckpointError, match="stored twice: on its own and inside a fused tensor"):
        factory.build("causal-lm", tmp_path)


def test_qwen_tokenizer_matches_transformers(tmp_path):
    """qwen2_moe / qwen3_moe checkpoints carry Qwen2's byte-level BPE tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(["The quick brown fox jumps over the lazy dog.", "Héllo wörld, 123 456!"] * 3, trainer)
    trained = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    transformers.Qwen2Tokenizer(vocab=trained["vocab"], merges=merges).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_moe"}))
    ours = factory.build("tokenizer", tmp_path)
    assert type(ours).__module__ == "factory.components.tokenizer"
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    texts = ["The quick fox!", "Héllo  wörld 123", ""]
    for kwargs in ({}, {"padding": True}):
        a, b = ours(texts, **kwargs), theirs(texts, **kwargs)
        assert a["input_ids"] == b["input_ids"] and a["attention_mask"] == b["attention_mask"], kwargs
    ids = theirs(texts[1])["input_ids"]
    assert ours.decode(ids) == theirs.decode(ids) == texts[1]


def test_qwen2_moe_without_a_window_loads_as_transformers_saves_it():
    """transformers writes ``sliding_window: 0`` for a Qwen2-MoE without one; that config builds and round-trips."""
    saved = {**BASE, **TestMoe.VARIANTS["qwen2moe-shared"].config, "use_sliding_window": False, "sliding_window": 0}
    config = native.Qwen2MoeConfig.from_dict(saved)
    assert config.sliding_window == 0 and not config.use_sliding_window
    native.Qwen2MoeForCausalLM(config)  # constructs: no window on any layer
