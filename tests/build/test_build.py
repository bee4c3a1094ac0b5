"""factory.build: every resolution branch, custom registrations, rules, provenance, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import factory
from factory.build.resolve import UntrustedCodeWarning
from factory.errors import (
    CheckpointError,
    ConfigError,
    IntegrityError,
    NoRegistrationError,
    UnknownCheckpointError,
    UnknownTaskError,
)

TOY_MODULE = """
import torch
from torch import nn
from factory.models.configuration import Config


class ToyConfig(Config):
    model_type = "toy"
    hidden_size: int = 8
    vocab_size: int = 16


class Toy2Config(ToyConfig):
    model_type = "toy2"


class ToyModel(nn.Module):
    config_class = ToyConfig
    base_model_prefix = "toy"

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, input_ids):
        return self.proj(self.embed(input_ids))


class Toy2Model(ToyModel):
    config_class = Toy2Config
"""

TOY_YAML = """
schema_version: 1
kind: architecture
architecture: toy
summary: a toy model for tests
config: toy_models:ToyConfig
tasks:
  model: toy_models:ToyModel
rules:
  - when: {has_key: layer_types}
    dispatch_as: toy2
    reason: toy2 checkpoints say model_type toy
"""

TOY2_YAML = """
schema_version: 1
kind: architecture
architecture: toy2
config: toy_models:Toy2Config
tasks:
  model:
    target: toy_models:Toy2Model
    deprecated: {since: "0.1", remove_in: "9.0", replacement: toy}
"""


@pytest.fixture()
def toy(tmp_path, monkeypatch):
    """A custom model registered by YAML files in a temporary directory."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "toy_models.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(code))
    reg = tmp_path / "registry"
    reg.mkdir()
    (reg / "toy.yaml").write_text(TOY_YAML)
    (reg / "toy2.yaml").write_text(TOY2_YAML)
    table = factory.load_registry(paths=[reg], packs=False)
    yield table
    sys.modules.pop("toy_models", None)


def _save_toy(directory: Path, config: dict, model=None) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    import toy_models

    model = model or toy_models.ToyModel(toy_models.ToyConfig())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))


def test_architecture_name_builds_fresh_model(toy):
    model = factory.build("model", "toy", registry=toy)
    assert type(model).__name__ == "ToyModel"
    assert not model.training
    assert model.embed.weight.device.type == "cpu"
    assert model.factory_provenance["source"] == "architecture"
    config = factory.build("config", "toy", registry=toy, config_overrides={"hidden_size": 4})
    assert type(config).__name__ == "ToyConfig" and config.hidden_size == 4


def test_local_directory_and_config_path(toy, tmp_path):
    import toy_models

    src = toy_models.ToyModel(toy_models.ToyConfig())
    _save_toy(tmp_path / "ckpt", {"model_type": "toy"}, src)
    for name in (tmp_path / "ckpt", tmp_path / "ckpt" / "config.json", str(tmp_path / "ckpt")):
        model = factory.build("model", name, registry=toy)
        assert torch.equal(model.embed.weight, src.embed.weight)
        assert model.factory_provenance["source"] == "local"
        assert model.factory_provenance["registration"].endswith("toy.yaml:8")
        assert model.factory_provenance["table_digest"] == toy.digest


def test_weights_false_and_overrides(toy, tmp_path):
    _save_toy(tmp_path / "ckpt", {"model_type": "toy"})
    model = factory.build("model", tmp_path / "ckpt", registry=toy, weights=False, config_overrides={"hidden_size": 4})
    assert model.proj.weight.shape == (4, 4)


def test_dtype_from_argument_and_config(toy, tmp_path):
    _save_toy(tmp_path / "ckpt", {"model_type": "toy", "torch_dtype": "bfloat16"})
    assert factory.build("model", tmp_path / "ckpt", registry=toy).proj.weight.dtype == torch.bfloat16
    assert factory.build("model", tmp_path / "ckpt", registry=toy, dtype="float64").proj.weight.dtype == torch.float64
    assert (
        factory.build("model", tmp_path / "ckpt", registry=toy, dtype=torch.float16).proj.weight.dtype == torch.float16
    )
    with pytest.raises(ConfigError, match="dtype .float7. is not a floating-point torch dtype"):
        factory.build("model", tmp_path / "ckpt", registry=toy, dtype="float7")


def test_dispatch_rule_applied_and_deprecation_warned(toy, tmp_path):
    import toy_models

    _save_toy(
        tmp_path / "ckpt", {"model_type": "toy", "layer_types": ["full"]}, toy_models.Toy2Model(toy_models.Toy2Config())
    )
    with pytest.warns(FutureWarning, match=r"deprecated since 0.1 and will be removed in 9.0; use toy"):
        model = factory.build("model", tmp_path / "ckpt", registry=toy)
    assert type(model).__name__ == "Toy2Model"
    chain = factory.explain("model", tmp_path / "ckpt", registry=toy)
    rule_steps = [s for s in chain if s["step"] == "dispatch rule"]
    assert rule_steps and "toy -> toy2" in rule_steps[0]["result"].replace("config that has key 'layer_types' ", "")
    assert rule_steps[0]["provenance"].endswith("toy.yaml:10")


def test_architectures_fallback_without_model_type(toy, tmp_path):
    _save_toy(tmp_path / "ckpt", {"architectures": ["ToyModel"]})
    assert type(factory.build("model", tmp_path / "ckpt", registry=toy)).__name__ == "ToyModel"
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"architectures": ["Nope"]}))
    with pytest.raises(ConfigError, match="no registered class matches architectures") as info:
        factory.build("model", tmp_path / "ckpt", registry=toy)
    assert info.value.file.endswith("config.json")


def test_auto_map_is_ignored_with_warning(toy, tmp_path):
    _save_toy(tmp_path / "ckpt", {"model_type": "toy", "auto_map": {"AutoModel": "evil.Model"}})
    with pytest.warns(UntrustedCodeWarning, match="ignoring auto_map.*register it in a YAML|ignoring auto_map"):
        model = factory.build("model", tmp_path / "ckpt", registry=toy)
    assert type(model).__name__ == "ToyModel"
    assert "evil" not in sys.modules


def test_named_checkpoint_path_with_sha256(toy, tmp_path):
    from factory.build.integrity import sha256_file

    _save_toy(tmp_path / "ckpt", {"model_type": "toy"})
    digest = sha256_file(tmp_path / "ckpt" / "model.safetensors")
    reg = tmp_path / "registry2"
    reg.mkdir()
    (reg / "ckpts.yaml").write_text(
        textwrap.dedent(f"""
        schema_version: 1
        kind: checkpoints
        checkpoints:
          good:
            path: ../ckpt
            architecture: toy
            sha256: {{model.safetensors: {digest}}}
          bad:
            path: ../ckpt
            sha256: {{model.safetensors: "{"0" * 64}"}}
    """)
    )
    table = factory.load_registry(paths=[tmp_path / "registry", reg], packs=False)
    model = factory.build("model", "good", registry=table)
    assert model.factory_provenance["source"] == "checkpoint"
    assert "ckpts.yaml" in model.factory_provenance["checkpoint"]
    with pytest.raises(IntegrityError) as info:
        factory.build("model", "bad", registry=table)
    message = str(info.value)
    assert "model.safetensors" in message and digest in message and "0" * 64 in message


def test_named_checkpoint_in_installed_distribution(toy, tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "toy_weights-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-weights\nVersion: 1.0\n")
    _save_toy(site / "toy_weights" / "model", {"model_type": "toy"})
    monkeypatch.syspath_prepend(str(site))
    reg = tmp_path / "registry3"
    reg.mkdir()
    (reg / "c.yaml").write_text(
        textwrap.dedent("""
        schema_version: 1
        kind: checkpoints
        checkpoints:
          packaged: {package: {distribution: toy-weights, path: toy_weights/model}}
          missing: {package: {distribution: no-such-dist, path: x}}
    """)
    )
    table = factory.load_registry(paths=[tmp_path / "registry", reg], packs=False)
    assert type(factory.build("model", "packaged", registry=table)).__name__ == "ToyModel"
    with pytest.raises(CheckpointError, match="pip install --no-deps no-such-dist"):
        factory.build("model", "missing", registry=table)


def test_unknown_name_lists_what_was_tried(toy):
    with pytest.raises(UnknownCheckpointError) as info:
        factory.build("model", "tyo", registry=toy)
    message = str(info.value)
    for tried in ("named checkpoint", "local directory", "registered architecture", "Hub repo id"):
        assert tried in message
    assert "did you mean 'toy'" in message


def test_task_errors(toy, tmp_path):
    with pytest.raises(UnknownTaskError, match="did you mean 'causal-lm'"):
        factory.build("casual-lm", "toy", registry=toy)
    with pytest.raises(NoRegistrationError, match="architecture 'toy' supports: config, model"):
        factory.build("causal-lm", "toy", registry=toy)
    with pytest.raises(CheckpointError, match="needs files"):
        factory.build("tokenizer", "gpt2")


def test_bad_config_json(toy, tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        factory.build("model", tmp_path / "ckpt", registry=toy)
    assert info.value.file.endswith("config.json") and info.value.line == 1
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "tyo"}))
    with pytest.raises(factory.UnknownArchitectureError, match="did you mean 'toy'"):
        factory.build("model", tmp_path / "ckpt", registry=toy)


def test_explain_does_not_import_torch(tmp_path):
    code = (
        "import sys, factory; chain = factory.explain('causal-lm', 'gpt2');"
        "assert chain[0]['step'] == 'name';"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "factory", "explain", "text-generation", "gpt2"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "causal-lm / gpt2 -> factory.models.gpt2:GPT2LMHeadModel" in out
    assert "registry.d/models/gpt2.yaml:" in out


def test_cli_build(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "factory", "build", "model", "gpt2", "--dtype", "float16"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "factory.models.gpt2.GPT2Model" in out and "torch.float16" in out and "parameters:" in out
    bad = subprocess.run(
        [sys.executable, "-m", "factory", "build", "model", "no-such-thing"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "cannot resolve 'no-such-thing'" in bad.stderr
    assert "Traceback" not in bad.stderr


# --- the Hub branch, end to end through factory.build ------------------------------
from tests.build.hub_server import FakeHub


@pytest.fixture(scope="module")
def hf_gpt2_dir(tmp_path_factory):
    """A tiny GPT-2 saved by transformers (the reference implementation)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99, n_positions=64)
    model = transformers.GPT2LMHeadModel(config).eval()
    directory = tmp_path_factory.mktemp("hf-gpt2")
    model.save_pretrained(directory)
    (directory / "README.md").write_text("not needed by the build")
    return directory, model


def test_hub_repo_builds_and_matches_transformers_then_offline(fake_hub: FakeHub, hf_gpt2_dir, monkeypatch):
    directory, reference = hf_gpt2_dir
    commit = fake_hub.add_commit("org/tiny-gpt2", directory)
    model = factory.build("text-generation", "org/tiny-gpt2")
    assert sorted(set(fake_hub.fetched())) == ["config.json", "model.safetensors"]
    assert model.factory_provenance["source"] == "hub"
    assert model.factory_provenance["commit"] == commit
    ids = torch.tensor([[1, 5, 7, 9, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)

    fake_hub.reset()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = factory.build("causal-lm", "org/tiny-gpt2")
    assert fake_hub.requests == []
    assert torch.equal(again.transformer.wte.weight, model.transformer.wte.weight)


def test_hub_pinned_revision_and_named_checkpoint(fake_hub: FakeHub, hf_gpt2_dir, tmp_path):
    directory, _ = hf_gpt2_dir
    commit = fake_hub.add_commit("org/tiny-gpt2", directory)
    reg = tmp_path / "reg"
    reg.mkdir()
    (reg / "c.yaml").write_text(
        textwrap.dedent(f"""
        schema_version: 1
        kind: checkpoints
        checkpoints:
          tiny-gpt2: {{hub: {{repo: org/tiny-gpt2, revision: {commit}}}, architecture: gpt2}}
    """)
    )
    table = factory.load_registry(paths=[reg])
    model = factory.build("causal-lm", "tiny-gpt2", registry=table)
    assert model.factory_provenance["commit"] == commit
    assert model.factory_provenance["revision"] == commit
    config = factory.build("config", "org/tiny-gpt2", revision=commit)
    assert type(config).__name__ == "GPT2Config" and config.hidden_size == 32


def test_local_transformers_checkpoint_parity_and_save_round_trip(hf_gpt2_dir, tmp_path):
    directory, reference = hf_gpt2_dir
    model = factory.build("causal-lm", directory)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)
    factory.save(model, tmp_path / "saved")
    again = factory.build("causal-lm", tmp_path / "saved")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert again.lm_head.weight is again.transformer.wte.weight


def test_unavailable_or_unknown_device_is_a_clear_error(toy, tmp_path):
    _save_toy(tmp_path / "ckpt", {"model_type": "toy"})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda' is not available"):
            factory.build("model", tmp_path / "ckpt", registry=toy, device="cuda")
        with pytest.raises(ConfigError, match="device 'cuda' is not available"):
            factory.build("model", "toy", registry=toy, device="cuda")
    with pytest.raises(ConfigError, match="device 'nonsense' is not a torch device"):
        factory.build("model", tmp_path / "ckpt", registry=toy, device="nonsense")


def test_config_overrides_must_be_a_mapping(toy):
    with pytest.raises(ConfigError, match="config_overrides must be a mapping .* found list"):
        factory.build("model", "toy", registry=toy, config_overrides=[("hidden_size", 4)])
