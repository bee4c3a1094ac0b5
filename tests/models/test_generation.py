"""Generation with the KV cache, checked against transformers' ``generate``."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import factory
from factory.errors import ConfigError
from factory.models.generation import (
    GenerationError,
    Seq2SeqGenerationMixin,
    generate,
    generation_defaults,
    warp_logits,
)
from factory.models.generation_config import GenerationConfig
from factory.models.gpt2 import GPT2Config, GPT2LMHeadModel

VOCAB = 99
PAD = 0
NEW = 12


@pytest.fixture(scope="module")
def pair():
    """(transformers GPT-2 LM, native copy). No EOS in the config, so nothing stops unless asked."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, bos_token_id=1, eos_token_id=None, pad_token_id=PAD
    )
    ref = transformers.GPT2LMHeadModel(config).eval()
    model = GPT2LMHeadModel(GPT2Config.from_dict(config.to_dict()))
    model.load_state_dict(ref.state_dict())
    return ref, model.eval()


@pytest.fixture
def batch():
    """Three prompts of lengths 7, 4 and 1, left-padded with PAD."""
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(3, VOCAB, (3, 7), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :6] = 0
    return ids.masked_fill(mask == 0, PAD), mask


def _hf_greedy(ref, ids, mask=None, **kwargs):
    return ref.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, pad_token_id=PAD, **kwargs)


def test_greedy_single_prompt_matches_transformers(pair, batch):
    ref, model = pair
    ids = batch[0][:1]
    expected = _hf_greedy(ref, ids, torch.ones_like(ids))
    out = model.generate(ids, max_new_tokens=NEW)
    assert out.dtype == torch.long and out.shape == (1, 7 + NEW)
    assert torch.equal(out, expected)


def test_greedy_left_padded_batch_matches_transformers(pair, batch):
    ref, model = pair
    ids, mask = batch
    expected = _hf_greedy(ref, ids, mask)
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=NEW), expected)
    # Without a mask the padding is inferred from pad_token_id, as transformers does.
    assert torch.equal(model.generate(ids, max_new_tokens=NEW), expected)
    # Each row equals its unpadded prompt generated alone.
    for row, length in enumerate([7, 4, 1]):
        alone = model.generate(ids[row : row + 1, 7 - length :], max_new_tokens=NEW)
        assert torch.equal(alone[0], expected[row, 7 - length :])


def _emitted_token(model, ids, mask, row, step):
    return int(model.generate(ids, attention_mask=mask, max_new_tokens=NEW)[row, ids.shape[1] + step])


def test_eos_stops_each_row_like_transformers(pair, batch):
    ref, model = pair
    ids, mask = batch
    eos = _emitted_token(model, ids, mask, row=0, step=2)
    expected = _hf_greedy(ref, ids, mask, eos_token_id=eos)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=PAD)
    assert torch.equal(out, expected)
    generated = out[0, 7:]
    first = int((generated == eos).nonzero()[0])
    assert first <= 2 and torch.all(generated[first + 1 :] == PAD)


def test_eos_list_and_early_stop_of_whole_batch(pair, batch):
    ref, model = pair
    ids, mask = batch
    full = model.generate(ids, attention_mask=mask, max_new_tokens=NEW)
    eos = sorted({int(full[r, 7 + 1]) for r in range(3)})  # every row emits one of these by step 1
    expected = _hf_greedy(ref, ids, mask, eos_token_id=eos)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=PAD)
    assert torch.equal(out, expected)
    assert out.shape[1] < 7 + NEW  # stopped once all rows finished


def test_eos_and_pad_default_to_config(pair, batch, monkeypatch):
    _, model = pair
    ids, mask = batch
    eos = _emitted_token(model, ids, mask, row=0, step=1)
    explicit = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[eos], pad_token_id=PAD)
    monkeypatch.setattr(model.config, "eos_token_id", [eos])
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=NEW), explicit)
    # No pad id anywhere: the first EOS id pads finished rows.
    monkeypatch.setattr(model.config, "pad_token_id", None)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW)
    generated = out[0, 7:]
    first = int((generated == eos).nonzero()[0])
    assert torch.all(generated[first:] == eos)


def test_kv_cache_decoding_equals_full_recompute(pair, batch):
    _, model = pair
    ids, mask = batch
    cached = model.generate(ids, attention_mask=mask, max_new_tokens=NEW)
    seq, full_mask = ids, mask
    with torch.no_grad():
        for _ in range(NEW):
            positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(seq, attention_mask=full_mask, position_ids=positions).logits[:, -1]
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=-1)
            full_mask = torch.cat([full_mask, torch.ones_like(full_mask[:, :1])], dim=-1)
    assert torch.equal(cached, seq)


def test_cached_step_logits_equal_full_forward(pair, batch):
    _, model = pair
    ids, mask = batch
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        prefix = model(ids[:, :-2], attention_mask=mask[:, :-2], position_ids=positions[:, :-2], use_cache=True)
        step = model(ids[:, -2:], attention_mask=mask, position_ids=positions[:, -2:], past_key_values=prefix.past_key_values,
                     use_cache=True)  # fmt: skip
        full = model(ids, attention_mask=mask, position_ids=positions)
    torch.testing.assert_close(step.logits, full.logits[:, -2:], atol=1e-5, rtol=0)
    assert len(step.past_key_values) == 2
    key, value = step.past_key_values[0]
    assert key.shape == value.shape == (3, 4, 7, 8)  # [batch, heads, seq, head_dim]


def test_sampling_is_reproducible_with_a_seeded_generator(pair, batch):
    _, model = pair
    ids, mask = batch

    def sample(seed):
        return model.generate(
            ids, attention_mask=mask, max_new_tokens=NEW, do_sample=True, temperature=1.5, top_k=20, top_p=0.9,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip

    first = sample(7)
    assert torch.equal(first, sample(7))
    assert not torch.equal(first, sample(8))
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=NEW)
    top1 = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=True, top_k=1,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(top1, greedy)


def test_sampling_matches_transformers_under_the_same_seed(pair, batch):
    ref, model = pair
    ids, mask = batch
    kwargs = dict(max_new_tokens=NEW, do_sample=True, temperature=0.8, top_k=30, top_p=0.95, pad_token_id=PAD)
    torch.manual_seed(11)
    expected = ref.generate(ids, attention_mask=mask, **kwargs)
    torch.manual_seed(11)
    assert torch.equal(model.generate(ids, attention_mask=mask, **kwargs), expected)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(0.7, None, None), (1.0, 5, None), (1.0, None, 0.8), (1.3, 10, 0.5)]
)
def test_warp_logits_matches_transformers_warpers(temperature, top_k, top_p):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = torch.randn(4, VOCAB)
    expected = scores
    if temperature != 1.0:
        expected = TemperatureLogitsWarper(temperature)(None, expected)
    if top_k is not None:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p is not None:
        expected = TopPLogitsWarper(top_p)(None, expected)
    torch.testing.assert_close(warp_logits(scores, temperature, top_k, top_p), expected)


def test_zero_new_tokens_returns_the_prompt(pair, batch):
    _, model = pair
    ids, mask = batch
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=0), ids)
    assert torch.equal(generate(model, ids, attention_mask=mask, max_new_tokens=0), ids)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_ids": torch.tensor([5, 6])}, r"shape \[batch, seq\], got a 1-d"),
        ({"input_ids": torch.zeros(1, 3)}, "integer tensor"),
        ({"input_ids": torch.zeros(1, 0, dtype=torch.long)}, "empty prompt"),
        ({"attention_mask": torch.ones(1, 2)}, r"shaped like input_ids \(1, 3\), got \(1, 2\)"),
        ({"max_new_tokens": -1}, "max_new_tokens must be an int >= 0, got -1"),
        ({"do_sample": True, "temperature": 0.0}, "temperature must be a number > 0"),
        ({"do_sample": True, "top_k": -2}, "top_k must be a positive int"),
        ({"do_sample": True, "top_p": 1.5}, r"top_p must be a number in \(0, 1\], got 1.5"),
        ({"eos_token_id": "eos"}, "eos_token_id must be an int or a list of ints, got 'eos'"),
        ({"pad_token_id": 1.5}, "pad_token_id must be an int, got 1.5"),
    ],
)
def test_bad_arguments(pair, kwargs, match):
    _, model = pair
    kwargs = {"input_ids": torch.tensor([[5, 6, 7]]), **kwargs}
    with pytest.raises(GenerationError, match=match):
        model.generate(**kwargs)


# --- logits processors, defaults and the generation config -----------------------------------------------
def test_processors_match_transformers_for_a_decoder(pair, batch):
    """suppress_tokens, begin_suppress_tokens and forced_eos_token_id act as transformers' processors."""
    ref, model = pair
    ids, mask = batch
    first = model.generate(ids, attention_mask=mask, max_new_tokens=NEW)[:, 7:]
    kwargs = dict(
        suppress_tokens=first[0, 1:3].tolist(),
        begin_suppress_tokens=first[:, 0].tolist(),
        forced_eos_token_id=int(first[1, 4]),
        eos_token_id=int(first[1, 4]),
    )
    expected = _hf_greedy(ref, ids, mask, **kwargs)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, pad_token_id=PAD, **kwargs)
    assert torch.equal(out, expected)
    assert not set(out[:, 7].tolist()) & set(kwargs["begin_suppress_tokens"])


def test_generation_config_overrides_config_key_by_key(pair, batch, monkeypatch):
    _, model = pair
    ids, mask = batch
    eos = _emitted_token(model, ids, mask, row=0, step=1)
    explicit = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=PAD)
    monkeypatch.setattr(model, "generation_config", {"eos_token_id": eos, "lang_to_id": {"<|en|>": 3}}, raising=False)
    defaults = generation_defaults(model)
    assert defaults.eos_token_id == [eos] and defaults.pad_token_id == PAD  # the pad id still from the config
    assert defaults.extra == {"lang_to_id": {"<|en|>": 3}}
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=NEW), explicit)
    monkeypatch.setattr(model, "generation_config", {"eos_token_id": "x"}, raising=False)
    with pytest.raises(GenerationError, match="eos_token_id must be an int or a list of ints, got 'x'"):
        model.generate(ids, max_new_tokens=2)


def test_builder_attaches_generation_config_json(pair, tmp_path):
    _, model = pair
    factory.save(model, tmp_path / "lm")
    assert not hasattr(factory.build("causal-lm", tmp_path / "lm"), "generation_config")
    (tmp_path / "lm" / "generation_config.json").write_text(json.dumps({"eos_token_id": [5, 6], "max_length": 9}))
    built = factory.build("causal-lm", tmp_path / "lm").generation_config
    assert built.to_dict() == {"eos_token_id": [5, 6], "max_length": 9}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "generation_config.json is not valid JSON"),
        ("[1, 2]", "generation_config.json must hold an object, found list"),
        ("[" * 100000 + "]" * 100000, "nested too deeply|not valid JSON"),
    ],
)
def test_bad_generation_config_json(pair, tmp_path, content, match):
    _, model = pair
    factory.save(model, tmp_path / "lm")
    (tmp_path / "lm" / "generation_config.json").write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        factory.build("causal-lm", tmp_path / "lm")
    assert str(info.value.file).endswith("generation_config.json")


def test_oversized_or_irregular_generation_config(tmp_path, monkeypatch):
    (tmp_path / "generation_config.json").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        GenerationConfig.from_file(tmp_path / "generation_config.json")
    monkeypatch.setattr("factory.models.generation_config.MAX_FILE_BYTES", 10)
    (tmp_path / "big.json").write_text(json.dumps({"eos_token_id": 1, "pad_token_id": 0}))
    with pytest.raises(ConfigError, match="more than 10"):
        GenerationConfig.from_file(tmp_path / "big.json")


class _EchoSeq2Seq(torch.nn.Module, Seq2SeqGenerationMixin):
    """A stand-in encoder-decoder: the next token is always ``(last + 1) % vocab``."""

    def __init__(self, **config):
        super().__init__()
        self.config = type("Config", (), config)()

    def get_encoder(self):
        return lambda **inputs: inputs

    def forward(self, decoder_input_ids, past_key_values=None, **_):
        logits = torch.nn.functional.one_hot((decoder_input_ids[:, -1:] + 1) % VOCAB, VOCAB).float()
        return type("Out", (), {"logits": logits, "past_key_values": (past_key_values or 0) + 1})()


def test_seq2seq_decoding_loop():
    model = _EchoSeq2Seq(decoder_start_token_id=4, eos_token_id=8, pad_token_id=0)
    ids = torch.tensor([[5, 6], [7, 0]])
    assert model.generate(ids, max_new_tokens=6).tolist() == [[4, 5, 6, 7, 8]] * 2  # stops at EOS
    assert model.generate(ids, max_new_tokens=2, forced_eos_token_id=8).tolist() == [[4, 5, 8]] * 2
    prompt = torch.tensor([[7], [2]])
    assert model.generate(ids, decoder_input_ids=prompt, max_new_tokens=3).tolist() == [[7, 8, 0, 0], [2, 3, 4, 5]]
    assert model.generate(ids, max_new_tokens=1, forced_bos_token_id=9).tolist() == [[4, 9]] * 2
    assert model.generate(ids, max_new_tokens=2, begin_suppress_tokens=[5]).tolist() == [[4, 0, 1]] * 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_ids": None}, "needs the encoder's inputs"),
        ({"decoder_start_token_id": None, "config": {}}, "needs decoder_start_token_id"),
        ({"decoder_input_ids": torch.tensor([[1]])}, "decoder_input_ids has 1 rows for a batch of 2"),
        ({"decoder_input_ids": torch.zeros(2, 0, dtype=torch.long)}, "empty prompt"),
        ({"suppress_tokens": [VOCAB + 5]}, r"token ids \[104\] are outside the vocabulary of 99 logits"),
        ({"forced_bos_token_id": 1.5}, "forced_bos_token_id must be an int, got 1.5"),
    ],
)
def test_bad_seq2seq_arguments(kwargs, match):
    config = kwargs.pop("config", {"decoder_start_token_id": 4})
    model = _EchoSeq2Seq(**config)
    kwargs = {"input_ids": torch.tensor([[5, 6], [7, 0]]), "max_new_tokens": 2, **kwargs}
    with pytest.raises(GenerationError, match=match):
        model.generate(**kwargs)
