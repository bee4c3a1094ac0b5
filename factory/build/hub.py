"""Fetching a checkpoint from the Hugging Face Hub, only the files a task needs.

Files go through the real ``huggingface_hub`` client into the standard HF cache.
``HF_ENDPOINT``, ``HF_HUB_CACHE``/``HF_HOME``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN``
are read when ``download`` is called (not only when huggingface_hub was imported),
and offline means no request at all. ``config.json`` is fetched first and its
commit pins every later file, so a snapshot never mixes two commits.

This module does not import torch or huggingface_hub at import time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from factory.errors import CheckpointError, HubError, PickleRefusedError

# --- checkpoint layout (shared with factory.build.weights) ---------------------------
CONFIG_FILE = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"

#: Files a preprocessing component (tokenizer, feature extractor, processor) may need.
PREPROCESSING_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "chat_template.jinja",
    "chat_template.json",
)

Kind = Literal["config", "model", "component"]
KINDS: tuple[str, ...] = ("config", "model", "component")
_MAX_PARALLEL = 8


def read_index(index: str | Path) -> list[str]:
    """Shard file names named by a ``*.index.json`` (unique, in first-mention order), validated."""
    index = Path(index)
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"index is not valid JSON: {exc.msg}", file=index, line=exc.lineno, column=exc.colno
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"index cannot be read: {exc}", file=index) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if (
        not isinstance(weight_map, dict)
        or not weight_map
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items())
    ):
        raise CheckpointError(
            "index has no usable 'weight_map' (a non-empty mapping of tensor name -> shard file)",
            file=index,
        )
    names = list(dict.fromkeys(weight_map.values()))
    for name in names:
        if Path(name).name != name or name in ("", ".", ".."):
            raise CheckpointError(
                f"index names shard {name!r}, which is not a plain file name next to the index",
                file=index,
            )
    return names


# --- environment, read at call time --------------------------------------------
def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline(local_files_only: bool = False) -> bool:
    """True when no network request may be made (argument, HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    if local_files_only or _truthy(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The HF hub cache: ``cache_dir``, else HF_HUB_CACHE, else HF_HOME/hub, else huggingface_hub's default."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_endpoint() -> str:
    """The Hub URL in use: HF_ENDPOINT, else huggingface_hub's default."""
    env = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if env:
        return env
    from huggingface_hub import constants

    return constants.ENDPOINT


def looks_like_repo_id(name: str) -> bool:
    """Whether ``name`` is a syntactically valid Hub model repo id (``owner/name`` or ``name``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or name.startswith((".", "/", "~")) or "\\" in name:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


# --- the download --------------------------------------------------------------
@dataclass(frozen=True)
class HubSnapshot:
    """Where a download landed: ``path`` is the snapshot folder of ``commit`` in the HF cache."""

    repo_id: str
    revision: str  # as asked ("main" when not given)
    commit: str
    path: Path  # the checkpoint directory: snapshot folder (/ subfolder)
    files: tuple[str, ...]  # file names (relative to path) fetched or found in the cache


def download(
    repo_id: str,
    *,
    kind: Kind = "model",
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    allow_pickle: bool = False,
    extra_files: Iterable[str] = (),
    subfolder: str | None = None,
) -> HubSnapshot:
    """Fetch what ``kind`` needs from Hub repo ``repo_id`` into the HF cache.

    * ``"config"``: ``config.json``;
    * ``"model"``: ``config.json`` + ``model.safetensors``, or its index + the shards it
      names (pickle weights only with ``allow_pickle``);
    * ``"component"``: the preprocessing files that exist (``PREPROCESSING_FILES``) and
      ``config.json`` if present.

    ``extra_files`` are fetched too when the repo has them (e.g. ``generation_config.json``).
    With ``subfolder`` the checkpoint lives in that folder of the repo; ``path`` points there.
    """
    if kind not in KINDS:
        raise HubError(f"unknown download kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    fetch = _Fetcher(
        repo_id,
        revision or "main",
        hub_cache_dir(cache_dir),
        token,
        is_offline(local_files_only),
        (subfolder or "").strip("/"),
    )
    fetch.get(CONFIG_FILE, required=kind != "component")
    if kind == "model":
        _fetch_weights(fetch, allow_pickle)
    optional = [*(PREPROCESSING_FILES if kind == "component" else ()), *extra_files]
    fetch.get_many(optional, required=False)
    if fetch.snapshot is None:
        raise HubError(
            f"Hub repository {repo_id!r} (revision {fetch.revision}) has none of the files a {kind} needs "
            f"({CONFIG_FILE}, {', '.join(PREPROCESSING_FILES[:4])}, ...)",
            repo_id=repo_id,
            revision=fetch.revision,
            hint="check that this is the repository of a model or its preprocessing files",
        )
    return HubSnapshot(repo_id, fetch.revision, fetch.snapshot.name, fetch.directory, tuple(fetch.fetched))


def _fetch_weights(fetch: _Fetcher, allow_pickle: bool) -> None:
    if fetch.get(SAFE_WEIGHTS, required=False) is not None:
        return
    index = fetch.get(SAFE_INDEX, required=False)
    if index is not None:
        fetch.get_many(read_index(index), required=True, index=SAFE_INDEX)
        return
    if allow_pickle:
        if fetch.get(PICKLE_WEIGHTS, required=False) is not None:
            return
        index = fetch.get(PICKLE_INDEX, required=False)
        if index is not None:
            fetch.get_many(read_index(index), required=True, index=PICKLE_INDEX)
            return
    elif fetch.exists(PICKLE_WEIGHTS) or fetch.exists(PICKLE_INDEX):
        raise PickleRefusedError(
            f"Hub repository {fetch.repo_id!r} (commit {fetch.commit}) has only pickle weights "
            f"({PICKLE_WEIGHTS}); pickle files can run arbitrary code and are refused by default",
            repo_id=fetch.repo_id,
            hint="use a revision with safetensors weights, or pass allow_pickle=True to load them with "
            "torch.load(weights_only=True)",
        )
    where = "in the HF cache (offline)" if fetch.offline else "in the repository"
    looked = f"{SAFE_WEIGHTS}, {SAFE_INDEX}" + (f", {PICKLE_WEIGHTS}, {PICKLE_INDEX}" if allow_pickle else "")
    raise CheckpointError(
        f"no weights for Hub repository {fetch.repo_id!r} (revision {fetch.revision}) {where}: looked for {looked}",
        file=fetch.directory,
        repo_id=fetch.repo_id,
        hint="build with weights=False for a freshly initialised model"
        + ("; or go online once to populate the cache" if fetch.offline else ""),
    )


class _Fetcher:
    """One download session: settings, the pinned commit, and error translation."""

    def __init__(
        self, repo_id: str, revision: str, cache_dir: Path, token: str | bool | None, offline: bool, subfolder: str = ""
    ):
        self.repo_id = repo_id
        self.subfolder = subfolder
        self.revision = revision
        self.cache_dir = cache_dir
        self.token = token
        self.offline = offline
        self.endpoint = hub_endpoint()
        self.snapshot: Path | None = None  # snapshots/<commit> in the cache
        self.fetched: list[str] = []

    @property
    def commit(self) -> str | None:
        return self.snapshot.name if self.snapshot is not None else None

    @property
    def directory(self) -> Path | None:
        """The checkpoint directory in the cache (snapshot, or its subfolder)."""
        if self.snapshot is None:
            return None
        return self.snapshot / self.subfolder if self.subfolder else self.snapshot

    def get_many(self, names: Iterable[str], *, required: bool, index: str | None = None) -> list[Path | None]:
        """``get`` for several files, in parallel once the commit is pinned; recorded in the given order."""
        names = [n for n in dict.fromkeys(names) if n not in self.fetched]
        if len(names) <= 1 or self.snapshot is None:
            return [self.get(n, required=required, index=index) for n in names]
        with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(names))) as pool:
            paths = list(pool.map(lambda n: self._get(n, required=required, index=index), names))
        self.fetched.extend(n for n, path in zip(names, paths) if path is not None)
        return paths

    def get(self, filename: str, *, required: bool, index: str | None = None) -> Path | None:
        """The cached path of ``filename``; None when it does not exist and is not ``required``."""
        path = self._get(filename, required=required, index=index)
        if path is not None:
            self.fetched.append(filename)
        return path

    def _get(self, filename: str, *, required: bool, index: str | None = None) -> Path | None:
        from huggingface_hub import _CACHED_NO_EXIST, hf_hub_download, try_to_load_from_cache
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        revision = self.commit or self.revision
        repo_name = f"{self.subfolder}/{filename}" if self.subfolder else filename
        if (
            self.commit is not None
            and try_to_load_from_cache(self.repo_id, repo_name, cache_dir=self.cache_dir, revision=self.commit)
            is _CACHED_NO_EXIST
        ):
            return self._absent(filename, required, index)
        try:
            path = hf_hub_download(
                self.repo_id,
                repo_name,
                revision=revision,
                cache_dir=self.cache_dir,
                token=self.token,
                local_files_only=self.offline,
                endpoint=self.endpoint,
                library_name="factory",
            )
        except LocalEntryNotFoundError as exc:
            if self.offline:
                if required:
                    raise self._offline_error(filename) from None
                return None
            raise HubError(
                f"could not reach {self.endpoint} for {filename} of {self.repo_id!r} (revision {revision}), and it "
                f"is not in the HF cache {self.cache_dir}: {_first_line(exc)}",
                repo_id=self.repo_id,
                revision=revision,
                hint="check the network connection and HF_ENDPOINT, or populate the cache while online",
            ) from None
        except EntryNotFoundError:
            return self._absent(filename, required, index)
        except Exception as exc:
            raise self._translate(exc, filename, revision) from None
        if self.snapshot is None:
            self.snapshot = Path(path).parents[repo_name.count("/")]
        return Path(path)

    def exists(self, filename: str) -> bool:
        """Whether the repo has ``filename`` at the pinned commit (one HEAD request; False offline)."""
        if self.offline:
            return False
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(
            self.repo_id,
            filename,
            subfolder=self.subfolder or None,
            revision=self.commit or self.revision,
            endpoint=self.endpoint,
        )
        try:
            get_hf_file_metadata(url, token=self.token, endpoint=self.endpoint)
        except Exception:
            return False
        return True

    def _absent(self, filename: str, required: bool, index: str | None) -> None:
        if not required:
            return None
        revision = self.commit or self.revision
        if index is not None:
            raise CheckpointError(
                f"{index} of Hub repository {self.repo_id!r} (commit {revision}) names shard {filename}, "
                "which the repository does not have",
                file=self.directory / index if self.directory else None,
                repo_id=self.repo_id,
                shard=filename,
                hint="the repository is inconsistent at this revision; try another revision",
            )
        raise HubError(
            f"Hub repository {self.repo_id!r} has no {filename} at revision {revision}"
            + (": it is not a transformers-style model repository" if filename == CONFIG_FILE else ""),
            repo_id=self.repo_id,
            revision=revision,
            hint="factory reads config.json to choose the architecture; check the repo id and revision",
        )

    def _offline_error(self, filename: str) -> HubError:
        reason = "local_files_only=True" if not is_offline() else "HF_HUB_OFFLINE=1"
        return HubError(
            f"{filename} of Hub repository {self.repo_id!r} (revision {self.commit or self.revision}) is not in "
            f"the HF cache {self.cache_dir}, and network access is disabled ({reason})",
            repo_id=self.repo_id,
            revision=self.revision,
            hint="run once with network access to populate the cache, or unset HF_HUB_OFFLINE / pass "
            "local_files_only=False; HF_HUB_CACHE or HF_HOME select the cache",
        )

    def _translate(self, exc: Exception, filename: str, revision: str) -> HubError:
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            HFValidationError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        fields = {"repo_id": self.repo_id, "revision": revision}
        if isinstance(exc, GatedRepoError):
            return HubError(
                f"Hub repository {self.repo_id!r} is gated: downloading it needs accepted terms and a token",
                hint=f"accept the terms at {self.endpoint}/{self.repo_id}, then set HF_TOKEN (or pass token=...)",
                **fields,
            )
        if isinstance(exc, RepositoryNotFoundError):
            return HubError(
                f"Hub repository {self.repo_id!r} was not found at {self.endpoint} (or it is private and no "
                "valid token was sent)",
                hint="check the repo id (owner/name); for a private repo set HF_TOKEN or pass token=...; "
                "a local checkpoint must be an existing directory",
                **fields,
            )
        if isinstance(exc, RevisionNotFoundError):
            return HubError(
                f"revision {revision!r} was not found in Hub repository {self.repo_id!r}",
                hint="use a branch, tag or full commit hash that exists in the repository (default: main)",
                **fields,
            )
        if isinstance(exc, HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", "?")
            hint = (
                "the token was refused: check HF_TOKEN / token=..."
                if status in (401, 403)
                else "retry later, or check HF_ENDPOINT"
            )
            return HubError(
                f"Hub request for {filename} of {self.repo_id!r} (revision {revision}) failed with HTTP "
                f"{status}: {_first_line(exc)}",
                hint=hint,
                **fields,
            )
        if isinstance(exc, HFValidationError):
            return HubError(
                f"{self.repo_id!r} is not a valid Hub repo id: {_first_line(exc)}",
                hint="a Hub repo id looks like 'owner/name'; a local checkpoint must be an existing directory",
                **fields,
            )
        return HubError(
            f"downloading {filename} of Hub repository {self.repo_id!r} (revision {revision}) failed: "
            f"{type(exc).__name__}: {_first_line(exc)}",
            hint="check the network, the disk space of the HF cache and HF_ENDPOINT",
            **fields,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
