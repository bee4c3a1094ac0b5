"""The parity suite every native encoder family runs against transformers (RoBERTa, XLM-RoBERTa, DistilBERT,
MPNet, ModernBERT).

A family's test module subclasses :class:`EncoderSuite` with a :class:`Family` (its tiny config and
``task -> (transformers class, native class, extra config)``) and a ``tokenizer_dir`` fixture; the
suite checks, for every registered task, that ``factory.build`` returns the native class and that its
outputs and losses equal transformers' (fp32, atol 1e-5) with right and left padding, plus hidden
states, attentions, ``inputs_embeds``, checkpoint keys, ``factory.save`` -> transformers, a fresh
model, the tokenizer, config defaults and a build that never imports transformers.
``tests/models/conftest.py`` parametrises ``task`` from ``FAMILY.heads``.
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
from factory.errors import ModelInputError
from tests.models.parity import build_native

transformers = pytest.importorskip("transformers")

ATOL = 1e-5
#: BERT-style tiny sizes: 3 heads of 10 (neither a power of two), an odd feed-forward and vocabulary size.
TINY_ENCODER = dict(hidden_size=30, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37, vocab_size=99)
TEXTS = ["Hello, the quick brown fox jumped!", "a b c", "The lazy dog? It isn't.", "", "héllo wörld café"]
PAIRS = ["the fox", "Over the lazy dog", "b", "hello", "?"]


@dataclass(frozen=True)
class Family:
    hf_config: str  # transformers config class
    config: dict[str, Any]  # the tiny config every checkpoint shares
    heads: dict[str, tuple[str, type, dict[str, Any]]]  # task -> (transformers class, native class, extra config)
    token_types: bool = False  # the forward takes token_type_ids
    no_labels: tuple[str, ...] = ("model", "text-encoding")  # tasks without a loss
    extra_defaults: tuple[str, ...] = field(default=())  # config keys to compare besides the common ones
    trunk_source: str = "token-classification"  # a head whose checkpoint holds the whole trunk (pooler too)
    length_limit: bool = True  # inputs longer than max_position_embeddings are refused (not with rotary)


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, (what, a.shape, b.shape)
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5, msg=lambda m: f"{what}: {m}")


TENSOR_FIELDS = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits", "loss")


def compare(ours: Any, theirs: Any, what: str) -> None:
    """Every tensor field transformers returns, equal; fields it leaves None are None here too."""
    compared = 0
    for name in TENSOR_FIELDS:
        expected = getattr(theirs, name, None)
        if expected is None:
            assert getattr(ours, name, None) is None, (what, name)
            continue
        close(getattr(ours, name), expected, f"{what}.{name}")
        compared += 1
    assert compared, what


def save_reference(family: Family, directory: Path, hf_class: str, seed: int = 0, **extra: Any) -> torch.nn.Module:
    """A tiny random transformers model (every parameter perturbed), saved with ``save_pretrained``."""
    torch.manual_seed(seed)
    config = getattr(transformers, family.hf_config)(**{**family.config, **extra})
    model = getattr(transformers, hf_class)(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(directory)
    return model


def make_inputs(family: Family, shape: tuple[int, ...] = (3, 9), pad: bool = True, seed: int = 1) -> dict:
    """Ids above the special ids; with ``pad``: the second row right-padded, the last row left-padded (with the
    config's pad id: RoBERTa's positions skip it)."""
    g = torch.Generator().manual_seed(seed)
    vocab = family.config["vocab_size"]
    pad_id = family.config.get("pad_token_id", getattr(transformers, family.hf_config)().pad_token_id)
    ids = torch.randint(4, vocab, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    if pad:
        mask[..., 1, 6:] = 0
        mask[..., -1, :3] = 0
        ids[mask == 0] = pad_id
    inputs = {"input_ids": ids, "attention_mask": mask}
    if family.token_types:
        token_types = torch.zeros(shape, dtype=torch.long)
        token_types[..., shape[-1] // 2 :] = 1
        inputs["token_type_ids"] = token_types
    return inputs


def task_inputs(family: Family, task: str, pad: bool = True) -> dict:
    return make_inputs(family, (2, 3, 9) if task == "multiple-choice" else (3, 9), pad=pad)


def labels_for(task: str, inputs: dict, num_labels: int) -> dict:
    g = torch.Generator().manual_seed(3)
    ids = inputs["input_ids"]
    if task in ("masked-lm", "pretraining", "causal-lm"):
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.4, ids, -100)
        labels[0, 2] = ids[0, 2]
        return {"labels": labels}
    if task == "sequence-classification":
        return {"labels": torch.randint(0, num_labels, ids.shape[:1], generator=g)}
    if task == "multiple-choice":
        return {"labels": torch.tensor([2, 0])}
    if task == "token-classification":
        labels = torch.randint(0, num_labels, ids.shape, generator=g)
        labels[inputs["attention_mask"] == 0] = -100
        return {"labels": labels}
    if task == "question-answering":
        # the last pair is outside the 9 tokens: clamped, then ignored
        return {"start_positions": torch.tensor([1, 3, 40]), "end_positions": torch.tensor([[4], [3], [50]])}
    raise AssertionError(task)


# --- tokenizers, trained here on a few sentences ----------------------------------------
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Héllo wörld, naïve café.",
    "Tokenizers split text into pieces; 123 456 789.",
    "It isn't a b c, is it? The dog jumped.",
]


def _trained(model: Any, pre_tokenizer: Any, trainer: Any) -> Any:
    from tokenizers import Tokenizer

    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizer
    backend.train_from_iterator(CORPUS * 3, trainer)
    return backend


def byte_level_bpe(specials: list[str], vocab_size: int = 300) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2 style byte-level BPE ``(vocab, merges)``, the special tokens first."""
    from tokenizers import models, pre_tokenizers, trainers

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False, initial_alphabet=pre.alphabet()
    )
    model = json.loads(_trained(models.BPE(), pre, trainer).to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def unigram(specials: list[str], vocab_size: int = 150) -> list[tuple[str, float]]:
    """A sentencepiece-style Unigram vocabulary ``[(piece, score)]``, the special tokens first."""
    from tokenizers import models, pre_tokenizers, trainers

    pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    return [tuple(entry) for entry in json.loads(_trained(models.Unigram(), pre, trainer).to_str())["model"]["vocab"]]


def wordpiece_vocab(specials: list[str]) -> dict[str, int]:
    """A WordPiece vocabulary: the special tokens, then every lower-cased word and letter of the corpus."""
    words = {w.strip(".,!?;'") for line in CORPUS for w in line.lower().split()} | set("abcdefghijklmnopqrstuvwxyz")
    pieces = [*specials, *sorted(w for w in words if w), "##s", "##ed", "!", ",", ".", "?", "'", ";"]
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}


def tokenizer_checkpoint(family: Family, tokenizer: Any, directory: Path) -> Path:
    """``tokenizer.save_pretrained`` next to the family's config.json, as a checkpoint has it."""
    tokenizer.save_pretrained(directory)
    getattr(transformers, family.hf_config)(**family.config).save_pretrained(directory)
    return directory


def _build_in_fresh_process(task: str, directory: Path) -> str:
    code = (
        "import sys, factory\n"
        f"model = factory.build({task!r}, {str(directory)!r})\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
        "print(type(model).__module__ + ':' + type(model).__qualname__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def with_labels(test: Any) -> Any:
    """Run ``test`` over the tasks that have a loss only (conftest.py reads the mark)."""
    test.labelled_tasks = True
    return test


class EncoderSuite:
    """Tests every encoder family runs; subclasses set ``FAMILY`` and define a ``tokenizer_dir`` fixture."""

    FAMILY: ClassVar[Family]

    @pytest.fixture(scope="class")
    @classmethod
    def checkpoints(cls, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
        """task -> (directory, transformers model); each saved once."""
        out = {}
        for i, (task, (hf_class, _, extra)) in enumerate(cls.FAMILY.heads.items()):
            directory = tmp_path_factory.mktemp(task)
            out[task] = (directory, save_reference(cls.FAMILY, directory, hf_class, seed=i, **extra))
        return out

    def native(self, task: str, checkpoints: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
        directory, reference = checkpoints[task]
        return build_native(task, directory, self.FAMILY.heads[task][1]), reference

    # --- parity -------------------------------------------------------------------
    @pytest.mark.parametrize("pad", [True, False], ids=["padded", "unpadded"])
    def test_outputs_match_transformers(self, checkpoints, task, pad):
        model, reference = self.native(task, checkpoints)
        inputs = task_inputs(self.FAMILY, task, pad=pad)
        with torch.no_grad():
            compare(model(**inputs), reference(**inputs), task)

    @with_labels
    def test_losses_match_transformers(self, checkpoints, task):
        model, reference = self.native(task, checkpoints)
        inputs = task_inputs(self.FAMILY, task)
        inputs.update(labels_for(task, inputs, model.config.num_labels))
        with torch.no_grad():
            ours, theirs = model(**inputs), reference(**inputs)
        assert ours.loss is not None and ours.loss.dim() == 0
        compare(ours, theirs, task)

    def test_checkpoint_keys_are_transformers_keys(self, checkpoints, task):
        from safetensors import safe_open

        directory, _ = checkpoints[task]
        with safe_open(str(directory / "model.safetensors"), "pt") as f:
            saved = set(f.keys())
        model_cls = self.FAMILY.heads[task][1]
        config = model_cls.config_class.from_dict(json.loads((directory / "config.json").read_text()))
        with torch.device("meta"):
            model = model_cls(config)
        tied = getattr(model, "tied_weights", {})  # a bare trunk ties nothing
        assert set(model.state_dict()) - set(tied) == saved
        for dest, source in tied.items():
            assert model.get_parameter(dest) is model.get_parameter(source), dest

    def test_hidden_states_match_transformers(self, checkpoints):
        model, reference = self.native("model", checkpoints)
        inputs = make_inputs(self.FAMILY)
        with torch.no_grad():
            ours = model(**inputs, output_hidden_states=True)
            theirs = reference(**inputs, output_hidden_states=True)
        assert len(ours.hidden_states) == model.config.num_hidden_layers + 1 == len(theirs.hidden_states)
        for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
            close(a, b, f"hidden_states[{i}]")
        assert ours.attentions is None

    def test_attentions_match_transformers_eager(self, checkpoints):
        directory, _ = checkpoints["model"]
        model, _ = self.native("model", checkpoints)
        hf_class = getattr(transformers, self.FAMILY.heads["model"][0])
        reference = hf_class.from_pretrained(directory, attn_implementation="eager").eval()
        inputs = make_inputs(self.FAMILY)
        with torch.no_grad():
            ours = model(**inputs, output_attentions=True)
            theirs = reference(**inputs, output_attentions=True)
            plain = model(**inputs)
        assert len(ours.attentions) == model.config.num_hidden_layers == len(theirs.attentions)
        for i, (a, b) in enumerate(zip(ours.attentions, theirs.attentions)):
            close(a, b, f"attentions[{i}]")
        # padded queries can see no key at all (ModernBERT's local layers): there eager and SDPA differ, as in transformers
        valid = inputs["attention_mask"].bool()
        close(ours.last_hidden_state[valid], plain.last_hidden_state[valid], "explicit softmax vs sdpa")

    def test_inputs_embeds_match_transformers(self, checkpoints):
        model, reference = self.native("model", checkpoints)
        inputs = make_inputs(self.FAMILY)
        ids = inputs.pop("input_ids")
        embeds = reference.get_input_embeddings()(ids).detach()
        with torch.no_grad():
            compare(model(inputs_embeds=embeds, **inputs), reference(inputs_embeds=embeds, **inputs), "inputs_embeds")

    def test_fully_padded_row_matches_transformers(self, checkpoints):
        model, reference = self.native("model", checkpoints)
        inputs = make_inputs(self.FAMILY)
        inputs["attention_mask"][1] = 0
        with torch.no_grad():
            compare(model(**inputs), reference(**inputs), "fully padded")

    # --- building and saving ----------------------------------------------------------
    def test_builds_without_importing_transformers(self, checkpoints):
        task = "masked-lm"
        directory, _ = checkpoints[task]
        model_cls = self.FAMILY.heads[task][1]
        assert _build_in_fresh_process(task, directory) == f"{model_cls.__module__}:{model_cls.__qualname__}"

    def test_factory_save_loads_in_transformers(self, checkpoints, tmp_path):
        model, reference = self.native("masked-lm", checkpoints)
        factory.save(model, tmp_path / "saved")
        hf_class = getattr(transformers, self.FAMILY.heads["masked-lm"][0])
        reloaded = hf_class.from_pretrained(tmp_path / "saved").eval()
        inputs = make_inputs(self.FAMILY)
        with torch.no_grad():
            compare(reloaded(**inputs), reference(**inputs), "saved by factory, loaded by transformers")
        assert build_native("masked-lm", tmp_path / "saved", type(model)) is not None

    def test_fresh_model_is_initialised_and_tied(self, checkpoints):
        directory, _ = checkpoints["masked-lm"]
        model = factory.build("masked-lm", directory, weights=False)
        embeddings = model.get_input_embeddings().weight
        assert not embeddings.is_meta and 0.01 < embeddings.std().item() < 0.04  # initializer_range 0.02
        assert model.get_output_embeddings().weight is embeddings
        with torch.no_grad():
            assert torch.isfinite(model(**make_inputs(self.FAMILY)).logits).all()

    def test_trunk_loads_a_head_checkpoint(self, checkpoints):
        """The bare trunk from a head's checkpoint: the prefix stripped, the head skipped."""
        directory, reference = checkpoints[self.FAMILY.trunk_source]
        model = factory.build("model", directory)
        assert type(model) is self.FAMILY.heads["model"][1]
        trunk = getattr(reference, reference.base_model_prefix)
        inputs = make_inputs(self.FAMILY)
        with torch.no_grad():
            close(model(**inputs).last_hidden_state, trunk(**inputs).last_hidden_state, "trunk of a head checkpoint")

    # --- config, tokenizer, errors ------------------------------------------------------
    def test_config_defaults_match_transformers(self):
        ours = self.FAMILY.heads["model"][1].config_class()
        theirs = getattr(transformers, self.FAMILY.hf_config)()
        assert ours.model_type == theirs.model_type
        for key in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
            "initializer_range",
            "pad_token_id",
            "bos_token_id",
            "eos_token_id",
            "num_labels",
            "id2label",
            "problem_type",
            "tie_word_embeddings",
            *self.FAMILY.extra_defaults,
        ):
            assert getattr(ours, key) == getattr(theirs, key), key

    def test_tokenizer_matches_transformers(self, tokenizer_dir):
        ours = factory.build("tokenizer", tokenizer_dir)
        assert type(ours).__module__ == "factory.components.tokenizer"
        theirs = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
        for kwargs in ({}, {"padding": True}, {"padding": True, "return_tensors": "pt"}):
            a, b = ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs)
            assert set(a) == set(b), kwargs
            for key in b:
                want = b[key].tolist() if hasattr(b[key], "tolist") else b[key]
                got = a[key].tolist() if hasattr(a[key], "tolist") else a[key]
                assert got == want, (kwargs, key)
        assert ours(TEXTS, PAIRS)["input_ids"] == theirs(TEXTS, PAIRS)["input_ids"]
        ids = theirs(TEXTS[0])["input_ids"]
        assert ours.decode(ids) == theirs.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)

    def test_bad_inputs_are_model_input_errors(self, checkpoints):
        model, _ = self.native("model", checkpoints)
        ids = make_inputs(self.FAMILY)["input_ids"]
        too_long = torch.full((1, model.config.max_position_embeddings + 1), 5)
        calls = [
            (lambda: model(), "exactly one of input_ids or inputs_embeds"),
            (lambda: model(ids, inputs_embeds=torch.zeros(3, 9, model.config.hidden_size)), "found both"),
            (lambda: model(ids[0]), r"\(batch, seq_len\)"),
            (lambda: model(ids, attention_mask=torch.ones(3, 8)), "attention_mask must have"),
        ]
        if self.FAMILY.length_limit:
            calls.append((lambda: model(too_long), "exceeds max_position_embeddings"))
        for call, match in calls:
            with pytest.raises(ModelInputError, match=match):
                call()
