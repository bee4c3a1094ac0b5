"""A parity suite for native decoder families (Gemma, Phi-3, the MoE decoders) against transformers.

A family's test module subclasses :class:`DecoderSuite` and sets ``VARIANTS`` (name -> :class:`Variant`:
a tiny transformers config with odd shapes) and ``CLASSES`` (model_type -> task -> (transformers Auto
class, native class)). The suite checks, for every variant and every registered task, that
``factory.build`` returns the native class and that outputs and losses equal transformers' (fp32, atol
1e-5) on left- and right-padded batches longer than any sliding window; hidden states; the checkpoint
keys; greedy generation token for token (a single prompt and a left-padded batch, long enough to cross
the windows); the KV cache against a full forward; ``factory.save`` -> transformers; bfloat16 logits;
the config defaults; and a build in a fresh process that never imports transformers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

import factory
from tests.models.parity import build_native

transformers = pytest.importorskip("transformers")

ATOL = dict(atol=1e-5, rtol=1e-5)
BASE = dict(vocab_size=99, pad_token_id=0, bos_token_id=1, eos_token_id=2, num_labels=3)
SEQ = 12  # longer than every sliding window of the variants
TASK_FIELDS = {
    "model": ("last_hidden_state",),
    "causal-lm": ("logits", "loss"),
    "sequence-classification": ("logits", "loss"),
    "token-classification": ("logits", "loss"),
    "question-answering": ("start_logits", "end_logits", "loss"),
}


@dataclass(frozen=True)
class Variant:
    model_type: str
    config: dict[str, Any]  # transformers config kwargs, over BASE
    tasks: tuple[str, ...] | None = None  # None: every task of CLASSES[model_type]
    hf_options: dict[str, Any] = field(default_factory=dict)  # from_config options (experts_implementation)
    #: The KV-cache check's length (long rope switches frequencies past its original length: stay below).
    cache_length: int = SEQ


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    torch.testing.assert_close(actual, expected, **ATOL, msg=lambda m: f"{what}: {m}")


def randomize(model: torch.nn.Module, gemma_norms: bool = False) -> None:
    """Weights large enough that every part visibly changes the outputs; norms around 1 (Gemma: 1 + w)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(-0.5, 0.5) if gemma_norms else param.uniform_(0.5, 1.5)
            else:
                param.normal_(0.0, 0.2)


def make_inputs(seq: int = SEQ, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows: full, right-padded, left-padded (pad id 0)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, BASE["vocab_size"], (3, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    mask[2, :4] = 0
    return ids.masked_fill(mask == 0, 0), mask


def labels_for(task: str, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    if task == "causal-lm":
        return {"labels": ids.masked_fill(mask == 0, -100)}
    if task == "sequence-classification":
        return {"labels": torch.tensor([0, 2, 1])}
    if task == "token-classification":
        return {"labels": torch.randint(0, 3, ids.shape, generator=g).masked_fill(mask == 0, -100)}
    if task == "question-answering":  # the last row's span is outside the input: ignored
        return {"start_positions": torch.tensor([1, 3, 40]), "end_positions": torch.tensor([2, 5, 41])}
    return {}


def build_in_fresh_process(builds: list[tuple[str, Path]]) -> list[str]:
    """``factory.build(task, directory)`` for each pair in one new interpreter; fails if transformers gets
    imported. Returns each built class as ``module:qualname``."""
    code = (
        "import sys, factory\n"
        f"for task, directory in {[(task, str(directory)) for task, directory in builds]!r}:\n"
        "    model = factory.build(task, directory)\n"
        "    print(type(model).__module__ + ':' + type(model).__qualname__)\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


class DecoderSuite:
    """The tests every native decoder family runs; see the module docstring."""

    VARIANTS: ClassVar[dict[str, Variant]]
    CLASSES: ClassVar[dict[str, dict[str, tuple[str, type]]]]
    #: Norm weights are offsets from 1 (Gemma).
    GEMMA_NORMS: ClassVar[bool] = False

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """``case`` = (variant, task) over every registered task; ``variant`` = the variants with a causal LM,
        ``trunk`` those with a bare model; ``model_type`` = the architectures."""
        if "case" in metafunc.fixturenames:
            cases = [(name, task) for name in self.VARIANTS for task in self.tasks(name)]
            metafunc.parametrize("case", cases, ids=[f"{name}-{task}" for name, task in cases])
        for argument, task in (("variant", "causal-lm"), ("trunk", "model")):
            if argument in metafunc.fixturenames:
                metafunc.parametrize(argument, [name for name in self.VARIANTS if task in self.tasks(name)])
        if "model_type" in metafunc.fixturenames:
            metafunc.parametrize("model_type", sorted(self.CLASSES))

    @classmethod
    def tasks(cls, variant: str) -> tuple[str, ...]:
        spec = cls.VARIANTS[variant]
        return spec.tasks or tuple(cls.CLASSES[spec.model_type])

    @classmethod
    def hf_config(cls, variant: str) -> Any:
        spec = cls.VARIANTS[variant]
        return transformers.AutoConfig.for_model(spec.model_type, **{**BASE, **spec.config})

    @pytest.fixture(scope="class")
    @classmethod
    def checkpoints(cls, tmp_path_factory: pytest.TempPathFactory) -> Any:
        """(variant, task) -> (transformers model, checkpoint directory), saved once, lazily."""
        cache: dict[tuple[str, str], tuple[torch.nn.Module, Path]] = {}

        def get(variant: str, task: str) -> tuple[torch.nn.Module, Path]:
            if (variant, task) not in cache:
                spec = cls.VARIANTS[variant]
                torch.manual_seed(0)
                auto = getattr(transformers, cls.CLASSES[spec.model_type][task][0])
                model = auto.from_config(cls.hf_config(variant), **spec.hf_options).eval()
                randomize(model, cls.GEMMA_NORMS)
                directory = tmp_path_factory.mktemp(f"{variant}-{task}")
                model.save_pretrained(directory)
                cache[variant, task] = (model, directory)
            return cache[variant, task]

        return get

    def native(self, variant: str, task: str, checkpoints: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(transformers model, the native model factory.build made from its checkpoint)."""
        reference, directory = checkpoints(variant, task)
        native_cls = self.CLASSES[self.VARIANTS[variant].model_type][task][1]
        return reference, build_native(task, directory, native_cls)

    # --- parity -------------------------------------------------------------------
    def test_outputs_and_losses_match_transformers(self, case, checkpoints):
        variant, task = case
        reference, model = self.native(variant, task, checkpoints)
        ids, mask = make_inputs()
        labels = labels_for(task, ids, mask)
        with torch.no_grad():
            theirs = reference(input_ids=ids, attention_mask=mask, **labels)
            ours = model(ids, attention_mask=mask, **labels)
            plain = model(ids, attention_mask=mask)
        for name in TASK_FIELDS[task]:
            if name == "loss" and not labels:
                continue
            close(getattr(ours, name), getattr(theirs, name), f"{variant} {task} {name}")
        first = TASK_FIELDS[task][0]
        close(getattr(plain, first), getattr(theirs, first), "without labels")
        assert plain.get("loss") is None

    def test_hidden_states_match_transformers(self, trunk, checkpoints):
        reference, model = self.native(trunk, "model", checkpoints)
        ids, mask = make_inputs()
        with torch.no_grad():
            theirs = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            ours = model(ids, attention_mask=mask, output_hidden_states=True)
            embeds = model(inputs_embeds=model.embed_tokens(ids), attention_mask=mask)
        assert len(ours.hidden_states) == model.config.num_hidden_layers + 1 == len(theirs.hidden_states)
        for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
            close(a, b, f"hidden_states[{i}]")
        close(embeds.last_hidden_state, ours.last_hidden_state, f"{trunk} inputs_embeds")

    def test_fully_padded_row_matches_transformers(self, trunk, checkpoints):
        reference, model = self.native(trunk, "model", checkpoints)
        ids, mask = make_inputs()
        mask[1] = 0
        with torch.no_grad():
            theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
            ours = model(ids, attention_mask=mask).last_hidden_state
        close(ours, theirs, f"{trunk} with a fully padded row")

    def test_fresh_model_is_initialised(self, variant, checkpoints):
        _, directory = checkpoints(variant, "causal-lm")
        model = factory.build("causal-lm", directory, weights=False)
        assert not any(p.is_meta for p in model.parameters())
        for name, param in model.named_parameters():
            if "norm" in name:
                assert torch.equal(param, torch.full_like(param, 0.0 if self.GEMMA_NORMS else 1.0)), name
            elif param.dim() == 2:
                assert 0.01 < param.std().item() < 0.04, name  # normal(0, initializer_range=0.02)
        ids, mask = make_inputs()
        with torch.no_grad():
            assert torch.isfinite(model(ids, attention_mask=mask).logits).all()

    def test_checkpoint_keys_are_transformers_keys(self, case, checkpoints):
        from safetensors import safe_open

        variant, task = case
        _, directory = checkpoints(variant, task)
        with safe_open(str(directory / "model.safetensors"), "pt") as f:
            saved = set(f.keys())
        native_cls = self.CLASSES[self.VARIANTS[variant].model_type][task][1]
        config = native_cls.config_class.from_dict(json.loads((directory / "config.json").read_text()))
        with torch.device("meta"):
            model = native_cls(config)
        assert set(model.state_dict()) - set(getattr(model, "tied_weights", {})) == saved

    def test_greedy_generation_matches_transformers(self, variant, checkpoints):
        reference, model = self.native(variant, "causal-lm", checkpoints)
        ids, mask = make_inputs(seq=7)
        rows = [0, 2]  # a full row and a left-padded one
        options = dict(max_new_tokens=10, eos_token_id=2, pad_token_id=0)
        with torch.no_grad():
            single = reference.generate(ids[:1], attention_mask=mask[:1], do_sample=False, **options)
            batch = reference.generate(ids[rows], attention_mask=mask[rows], do_sample=False, **options)
        assert model.generate(ids[:1], attention_mask=mask[:1], **options).tolist() == single.tolist()
        assert model.generate(ids[rows], attention_mask=mask[rows], **options).tolist() == batch.tolist()

    def test_kv_cache_continues_like_a_full_forward(self, variant, checkpoints):
        _, model = self.native(variant, "causal-lm", checkpoints)
        length = self.VARIANTS[variant].cache_length
        ids, mask = make_inputs(seq=length)
        rows, cut = [0, 2], length - 4  # the right-padded row has no continuation
        with torch.no_grad():
            prefix = model(ids[rows, :cut], attention_mask=mask[rows, :cut], use_cache=True)
            step = model(ids[rows, cut:], attention_mask=mask[rows], past_key_values=prefix.past_key_values)
            full = model(ids[rows], attention_mask=mask[rows])
        close(step.logits, full.logits[:, cut:], "cached continuation")

    def test_bfloat16_logits_match_transformers(self, variant, checkpoints):
        reference, directory = checkpoints(variant, "causal-lm")
        hf_class = getattr(transformers, self.CLASSES[self.VARIANTS[variant].model_type]["causal-lm"][0])
        options = self.VARIANTS[variant].hf_options
        theirs_model = hf_class.from_pretrained(directory, dtype=torch.bfloat16, **options).eval()
        _, model = self.native(variant, "causal-lm", checkpoints)
        model = model.to(torch.bfloat16)
        ids, mask = make_inputs()
        with torch.no_grad():
            theirs = theirs_model(input_ids=ids, attention_mask=mask).logits
            ours = model(ids, attention_mask=mask).logits
        assert ours.dtype == torch.bfloat16
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)

    # --- building and saving ----------------------------------------------------------
    def test_factory_save_loads_in_transformers(self, variant, checkpoints, tmp_path):
        reference, model = self.native(variant, "causal-lm", checkpoints)
        factory.save(model, tmp_path / "saved")
        hf_class = getattr(transformers, self.CLASSES[self.VARIANTS[variant].model_type]["causal-lm"][0])
        reloaded = hf_class.from_pretrained(tmp_path / "saved", **self.VARIANTS[variant].hf_options).eval()
        ids, mask = make_inputs()
        with torch.no_grad():
            close(reloaded(input_ids=ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits, "saved")
        assert build_native("causal-lm", tmp_path / "saved", type(model)) is not None

    def test_builds_without_importing_transformers(self, checkpoints):
        """Every architecture's causal LM, built in one fresh process."""
        builds, expected = [], []
        for model_type, classes in self.CLASSES.items():
            variant = next(name for name, spec in self.VARIANTS.items() if spec.model_type == model_type)
            builds.append(("causal-lm", checkpoints(variant, "causal-lm")[1]))
            expected.append(f"{classes['causal-lm'][1].__module__}:{classes['causal-lm'][1].__qualname__}")
        assert build_in_fresh_process(builds) == expected

    def test_config_defaults_match_transformers(self, model_type):
        native_cls = self.CLASSES[model_type]["model"][1]
        ours = native_cls.config_class()
        theirs = transformers.AutoConfig.for_model(model_type)
        declared = [k for k in type(theirs).__annotations__ if not k.startswith("_")]
        assert declared
        for key in declared:
            if hasattr(theirs, key) and not callable(getattr(theirs, key)):
                assert getattr(ours, key) == getattr(theirs, key), key
        assert ours.to_dict()["model_type"] == model_type
        # what we write, transformers reads back to the same config
        again = type(theirs).from_dict(ours.to_dict())
        for key in declared:
            if hasattr(theirs, key) and not callable(getattr(theirs, key)):
                assert getattr(again, key) == getattr(theirs, key), key
