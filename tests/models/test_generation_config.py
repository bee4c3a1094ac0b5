"""generation_config.json: native generate takes a checkpoint's generation defaults (several EOS ids, pad,
lengths, sampling) as transformers does, the call's arguments win, and factory.save writes the file back."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.errors import ConfigError
from factory.models.generation_config import GenerationConfig, GenerationConfigWarning
from factory.models.llama import LlamaForCausalLM
from tests.models.tiny import TINY_LLAMA

TINY = dict(TINY_LLAMA, bos_token_id=1, eos_token_id=None, pad_token_id=None)
PROMPT = torch.tensor([[5, 17, 42, 8], [9, 3, 61, 22]])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Llama saved by transformers, without EOS in config.json, and its greedy continuation."""
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY)).eval()
    directory = tmp_path_factory.mktemp("llama")
    reference.save_pretrained(directory)
    (directory / "generation_config.json").unlink(missing_ok=True)
    model = factory.build("causal-lm", directory)
    free = model.generate(PROMPT, max_new_tokens=10, pad_token_id=0)  # nothing stops it
    return directory, reference, free


def with_generation_config(directory, tmp_path, values: dict):
    """A copy of the checkpoint with ``values`` as its generation_config.json."""
    target = tmp_path / "ckpt"
    target.mkdir()
    for path in directory.iterdir():
        (target / path.name).symlink_to(path)
    (target / "generation_config.json").write_text(json.dumps(values))
    return target


def test_several_eos_ids_stop_each_row_like_transformers(checkpoint, tmp_path):
    directory, _, free = checkpoint
    new = free[:, PROMPT.shape[1] :]
    eos = [int(new[0, 2]), int(new[1, 4]), 98]  # Llama 3 Instruct style: a list of stop tokens
    ckpt = with_generation_config(directory, tmp_path, {"eos_token_id": eos, "pad_token_id": 0, "max_new_tokens": 10})
    model = factory.build("causal-lm", ckpt)
    assert isinstance(model, LlamaForCausalLM) and model.generation_config.eos_token_id == eos
    out = model.generate(PROMPT)
    hf = transformers.LlamaForCausalLM.from_pretrained(ckpt).eval()
    assert hf.generation_config.eos_token_id == eos
    assert torch.equal(out, hf.generate(PROMPT, attention_mask=torch.ones_like(PROMPT)))
    first_stop = min(int((new[0] == e).nonzero()[0]) for e in eos if (new[0] == e).any())
    assert out.shape[1] < free.shape[1]  # stopped early: every row emitted one of the EOS ids
    assert int(out[0, PROMPT.shape[1] + first_stop]) in eos
    assert (out[0, PROMPT.shape[1] + first_stop + 1 :] == 0).all()  # then padded with pad_token_id


def test_lengths_from_the_file_and_the_call_wins(checkpoint, tmp_path):
    directory, _, free = checkpoint
    ckpt = with_generation_config(directory, tmp_path, {"max_length": 7, "pad_token_id": 0})
    model = factory.build("causal-lm", ckpt)
    assert torch.equal(model.generate(PROMPT), free[:, :7])  # max_length counts the prompt, as in transformers
    assert model.generate(PROMPT, max_new_tokens=5).shape[1] == PROMPT.shape[1] + 5
    assert model.generate(PROMPT, max_length=6).shape[1] == 6
    model.generation_config.max_new_tokens = 2  # set on the attached config
    assert model.generate(PROMPT).shape[1] == PROMPT.shape[1] + 2
    assert factory.build("causal-lm", directory).generate(PROMPT, pad_token_id=0).shape[1] == PROMPT.shape[1] + 20


def test_sampling_defaults_from_the_file_match_transformers(checkpoint, tmp_path):
    directory, _, _ = checkpoint
    values = {"do_sample": True, "temperature": 0.7, "top_k": 7, "top_p": 0.9, "pad_token_id": 0, "max_new_tokens": 6}
    ckpt = with_generation_config(directory, tmp_path, values)
    model = factory.build("causal-lm", ckpt)
    hf = transformers.LlamaForCausalLM.from_pretrained(ckpt).eval()
    torch.manual_seed(5)
    expected = hf.generate(PROMPT, attention_mask=torch.ones_like(PROMPT))
    torch.manual_seed(5)
    assert torch.equal(model.generate(PROMPT), expected)
    greedy = model.generate(PROMPT, do_sample=False)  # the call's argument wins over the file
    assert torch.equal(greedy, hf.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), do_sample=False))


def test_save_writes_the_generation_config_back(checkpoint, tmp_path):
    directory, _, _ = checkpoint
    values = {"eos_token_id": [3, 4], "pad_token_id": 0, "max_length": 4096, "transformers_version": "5.23.0"}
    model = factory.build("causal-lm", with_generation_config(directory, tmp_path, values))
    saved = factory.save(model, tmp_path / "saved")
    assert json.loads((saved / "generation_config.json").read_text()) == values
    assert factory.build("causal-lm", saved).generation_config == model.generation_config
    fresh = factory.build("causal-lm", "llama", config_overrides=TINY)
    assert getattr(fresh, "generation_config", None) is None
    factory.save(fresh, saved)  # a model without generation defaults: the old file goes with the old weights
    assert not (saved / "generation_config.json").exists()


def test_a_field_native_generate_does_not_implement_is_named(checkpoint, tmp_path):
    directory, _, _ = checkpoint
    ckpt = with_generation_config(directory, tmp_path, {"repetition_penalty": 1.2, "num_beams": 1})
    with pytest.warns(GenerationConfigWarning, match=r"does not implement repetition_penalty=1.2; ignored"):
        factory.build("causal-lm", ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GenerationConfig.from_dict({"num_beams": 1, "transformers_version": "5.0"})  # defaults: nothing to say


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"eos_token_id": "2"}', r"eos_token_id must be an int or a list of ints, found '2'"),
        ('{"top_p": 1.5}', r"top_p must be a number in \(0, 1\]"),
        ('{"max_new_tokens": -1}', "max_new_tokens must be an int >= 0"),
        ('{"do_sample": "yes"}', "do_sample must be true or false"),
        ("[1, 2]", "must hold an object, found list"),
        ('{"eos_token_id": [1,', "is not valid JSON"),
    ],
)
def test_a_bad_generation_config_names_the_file(checkpoint, tmp_path, text, match):
    directory, _, _ = checkpoint
    ckpt = with_generation_config(directory, tmp_path, {})
    (ckpt / "generation_config.json").write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        factory.build("causal-lm", ckpt)
    assert err.value.file == str(ckpt / "generation_config.json")
