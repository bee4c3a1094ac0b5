"""factory.hub: downloads through the real huggingface_hub client from a fake Hub on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from factory.build.hub import download, looks_like_repo_id
from factory.errors import CheckpointError, HubError, PickleRefusedError
from tests.build.hub_server import FakeHub

REPO = "acme/tiny"
CONFIG = json.dumps({"model_type": "tiny", "hidden_size": 4})


def weights(**tensors: torch.Tensor) -> bytes:
    return safetensors_bytes(tensors or {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)})


def sharded_files() -> dict[str, bytes | str]:
    index = {
        "metadata": {"total_size": 40},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    return {
        "config.json": CONFIG,
        "model.safetensors.index.json": json.dumps(index),
        "model-00001-of-00002.safetensors": weights(a=torch.ones(2)),
        "model-00002-of-00002.safetensors": weights(b=torch.zeros(3)),
        "consolidated.safetensors": weights(x=torch.ones(1)),
        "README.md": "# tiny",
    }


def test_model_download_fetches_only_config_and_weights(fake_hub: FakeHub, tmp_path: Path):
    commit = fake_hub.add_commit(
        REPO,
        {
            "config.json": CONFIG,
            "model.safetensors": weights(),
            "README.md": "# tiny",
            "tokenizer.json": "{}",
            "pytorch_model.bin": b"pickle",
            "consolidated.safetensors": weights(),
        },
    )
    snap = download(REPO)
    assert fake_hub.fetched() == ["config.json", "model.safetensors"]
    assert snap.commit == commit and snap.revision == "main" and snap.repo_id == REPO
    assert snap.files == ("config.json", "model.safetensors")
    assert snap.path == tmp_path / "hf_home" / "hub" / "models--acme--tiny" / "snapshots" / commit
    assert json.loads((snap.path / "config.json").read_text()) == json.loads(CONFIG)
    assert (snap.path / "model.safetensors").read_bytes() == weights()


def test_sharded_download_fetches_index_and_named_shards(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, sharded_files())
    snap = download(REPO)
    assert sorted(fake_hub.fetched()) == sorted(
        [
            "config.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ]
    )
    probed = [(r.method, r.filename) for r in fake_hub.requests if r.filename == "model.safetensors"]
    assert probed == [("HEAD", "model.safetensors")]  # asked once, found absent, never downloaded
    assert (snap.path / "model-00002-of-00002.safetensors").is_file()
    fake_hub.reset()
    assert download(REPO, revision=snap.commit) == download(REPO, revision=snap.commit)
    assert fake_hub.requests == []  # pinned and cached, the known-absent model.safetensors included


def test_index_naming_a_missing_shard_is_a_checkpoint_error(fake_hub: FakeHub):
    files = sharded_files()
    del files["model-00002-of-00002.safetensors"]
    fake_hub.add_commit(REPO, files)
    with pytest.raises(CheckpointError, match="names shard model-00002-of-00002.safetensors") as err:
        download(REPO)
    assert err.value.shard == "model-00002-of-00002.safetensors"


def test_pinned_commit_and_branch(fake_hub: FakeHub):
    old = fake_hub.add_commit(
        REPO, {"config.json": '{"model_type": "tiny", "hidden_size": 2}', "model.safetensors": weights()}
    )
    new = fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights()})
    pinned = download(REPO, revision=old)
    assert pinned.commit == old and pinned.revision == old
    assert json.loads((pinned.path / "config.json").read_text())["hidden_size"] == 2
    latest = download(REPO)
    assert latest.commit == new and json.loads((latest.path / "config.json").read_text())["hidden_size"] == 4

    fake_hub.reset()
    assert download(REPO, revision=old).path == pinned.path
    assert fake_hub.requests == []  # a cached commit needs no request, even online
    download(REPO)
    assert fake_hub.fetched() == [] and fake_hub.requests  # a branch is re-checked (HEAD) but not re-downloaded


def test_offline_resolves_from_populated_cache_without_any_request(fake_hub: FakeHub, monkeypatch):
    fake_hub.add_commit(REPO, sharded_files())
    online = download(REPO)
    fake_hub.reset()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = download(REPO)
    assert fake_hub.requests == []
    assert offline == online


def test_offline_with_empty_cache_is_a_hub_error(fake_hub: FakeHub, monkeypatch):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights()})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        HubError, match=r"config.json of Hub repository 'acme/tiny'.*not in the HF cache.*HF_HUB_OFFLINE"
    ):
        download(REPO)
    assert fake_hub.requests == []


def test_local_files_only_makes_no_request(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights()})
    with pytest.raises(HubError, match="local_files_only=True") as err:
        download(REPO, local_files_only=True)
    assert "populate the cache" in str(err.value)
    assert fake_hub.requests == []


def test_offline_with_config_but_no_weights_cached(fake_hub: FakeHub, monkeypatch):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights()})
    download(REPO, kind="config")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"no weights .* in the HF cache \(offline\)"):
        download(REPO)
    assert fake_hub.fetched() == ["config.json"]


def test_missing_repo_is_a_hub_error(fake_hub: FakeHub):
    with pytest.raises(HubError, match="'acme/nope' was not found") as err:
        download("acme/nope")
    assert "HF_TOKEN" in err.value.hint and err.value.repo_id == "acme/nope"


def test_missing_revision_is_a_hub_error(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights()})
    with pytest.raises(HubError, match="revision 'v9' was not found in Hub repository 'acme/tiny'"):
        download(REPO, revision="v9")


def test_gated_repo_needs_a_token(fake_hub: FakeHub, monkeypatch):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights()}, token="hf_secret")
    with pytest.raises(HubError, match="is gated") as err:
        download(REPO)
    assert f"{fake_hub.url}/{REPO}" in err.value.hint
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    fake_hub.reset()
    download(REPO)
    assert fake_hub.fetched() == ["config.json", "model.safetensors"]
    assert {r.authorization for r in fake_hub.requests} == {"Bearer hf_secret"}


def test_explicit_token_argument(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights()}, token="hf_arg")
    assert download(REPO, token="hf_arg").files == ("config.json", "model.safetensors")


def test_repo_without_config_is_a_hub_error(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"model.safetensors": weights()})
    with pytest.raises(HubError, match="has no config.json .*not a transformers-style model repository"):
        download(REPO)


def test_pickle_only_repo_is_refused_unless_allowed(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "pytorch_model.bin": b"not really a pickle"})
    with pytest.raises(PickleRefusedError, match="only pickle weights") as err:
        download(REPO)
    assert "allow_pickle=True" in err.value.hint
    assert "pytorch_model.bin" not in fake_hub.fetched()
    assert download(REPO, allow_pickle=True).files == ("config.json", "pytorch_model.bin")


def test_repo_without_weights_is_a_checkpoint_error(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"config.json": CONFIG})
    with pytest.raises(CheckpointError, match="no weights for Hub repository 'acme/tiny'.*model.safetensors"):
        download(REPO)


def test_config_kind_fetches_only_config(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights(), "tokenizer.json": "{}"})
    assert download(REPO, kind="config").files == ("config.json",)
    assert fake_hub.fetched() == ["config.json"]


def test_component_kind_fetches_preprocessing_files_not_weights(fake_hub: FakeHub):
    fake_hub.add_commit(
        REPO,
        {
            "config.json": CONFIG,
            "model.safetensors": weights(),
            "tokenizer.json": '{"model": {}}',
            "tokenizer_config.json": '{"do_lower_case": true}',
            "vocab.txt": "a\nb\n",
            "notes.txt": "x",
        },
    )
    snap = download(REPO, kind="component")
    assert sorted(fake_hub.fetched()) == ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert (snap.path / "vocab.txt").read_text() == "a\nb\n"


def test_component_without_config_json(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"tokenizer.json": "{}"})
    assert download(REPO, kind="component").files == ("tokenizer.json",)


def test_component_repo_with_nothing_useful(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"README.md": "# empty"})
    with pytest.raises(HubError, match="has none of the files a component needs"):
        download(REPO, kind="component")


def test_extra_files_fetched_when_present(fake_hub: FakeHub):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights(), "generation_config.json": "{}"})
    snap = download(REPO, extra_files=["generation_config.json", "absent.json"])
    assert snap.files == ("config.json", "model.safetensors", "generation_config.json")


def test_subfolder(fake_hub: FakeHub):
    commit = fake_hub.add_commit(
        REPO, {"sub/config.json": CONFIG, "sub/model.safetensors": weights(), "model.safetensors": weights()}
    )
    snap = download(REPO, subfolder="sub")
    assert snap.commit == commit and snap.path.name == "sub" and snap.path.parent.name == commit
    assert fake_hub.fetched() == ["sub/config.json", "sub/model.safetensors"]


def test_unknown_kind():
    with pytest.raises(HubError, match="unknown download kind 'weights'"):
        download(REPO, kind="weights")  # type: ignore[arg-type]


def test_cache_location_read_when_called(fake_hub: FakeHub, tmp_path: Path, monkeypatch):
    fake_hub.add_commit(REPO, {"config.json": CONFIG, "model.safetensors": weights()})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert download(REPO).path.is_relative_to(tmp_path / "elsewhere")
    explicit = download(REPO, cache_dir=tmp_path / "explicit")
    assert explicit.path.is_relative_to(tmp_path / "explicit")


def test_downloaded_weights_load(fake_hub: FakeHub):
    from factory.build.weights import find_weight_files

    fake_hub.add_commit(REPO, sharded_files())
    snap = download(REPO)
    assert [p.name for p in find_weight_files(snap.path)] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("acme/tiny", True),
        ("gpt2", True),
        ("./local", False),
        ("/abs/path", False),
        ("a/b/c", False),
        ("bad name", False),
        ("", False),
        ("~/ckpt", False),
    ],
)
def test_looks_like_repo_id(name, expected):
    assert looks_like_repo_id(name) is expected
