"""A fake Hugging Face Hub on loopback, for tests that go through the real huggingface_hub client.

It speaks the file endpoint ``hf_hub_download`` uses (huggingface_hub 2.x)::

    HEAD|GET /{repo_id}/resolve/{revision}/{filename}

answering with ``X-Repo-Commit``, ``ETag`` and ``Content-Length`` like the Hub, and
with the Hub's error codes (``X-Error-Code``: RepoNotFound, RevisionNotFound,
EntryNotFound, GatedRepo). Every request is recorded so a test can assert exactly
which files were fetched, or that none was.

Use the ``fake_hub`` fixture (import it into a test module or a conftest)::

    # tests/build/conftest.py registers the fixture

    def test_x(fake_hub):
        commit = fake_hub.add_commit("org/tiny", {"config.json": b"{}"})
        ...
        assert fake_hub.fetched() == ["config.json"]

The fixture points the client at the server (``HF_ENDPOINT`` and huggingface_hub's
import-time constants), uses a fresh HF cache under ``tmp_path`` (``HF_HOME``,
``HF_HUB_CACHE``), clears offline/token variables, and disables telemetry so that the
client sends nothing but file requests.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest


@dataclass(frozen=True)
class Request:
    """One request the fake Hub received."""

    method: str
    path: str
    repo_id: str | None
    revision: str | None
    filename: str | None
    authorization: str | None


@dataclass
class _Repo:
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files
    token: str | None = None  # gated: only this bearer token may read


class FakeHub:
    """The server and its repositories. ``url`` is the endpoint; ``requests`` what it saw."""

    def __init__(self) -> None:
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # --- lifecycle ---
    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # --- repositories ---
    def add_commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str | Path] | Path,
        *,
        branch: str | None = "main",
        token: str | None = None,
    ) -> str:
        """Add a commit holding ``files`` (name -> content, or a directory to copy); returns its hash.

        ``branch`` is moved to the new commit; ``token`` makes the repo gated.
        """
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p for p in sorted(files.rglob("*")) if p.is_file()}
        content = {
            name: data.read_bytes() if isinstance(data, Path) else data.encode() if isinstance(data, str) else data
            for name, data in files.items()
        }
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            digest = hashlib.sha1(repo_id.encode())
            digest.update(str(len(repo.commits)).encode())
            for name in sorted(content):
                digest.update(name.encode() + hashlib.sha256(content[name]).digest())
            commit = digest.hexdigest()
            repo.commits[commit] = content
            if branch is not None:
                repo.refs[branch] = commit
            if token is not None:
                repo.token = token
        return commit

    # --- what was asked ---
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def fetched(self) -> list[str]:
        """File names downloaded (GET), in order."""
        return [r.filename for r in self.requests if r.method == "GET" and r.filename is not None]

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- serving ---
    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _answer(self, method: str, path: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        repo_id = revision = filename = None
        if "/resolve/" in path:
            repo_part, rest = path.lstrip("/").split("/resolve/", 1)
            revision_part, _, filename_part = rest.partition("/")
            repo_id, revision, filename = unquote(repo_part), unquote(revision_part), unquote(filename_part)
        self._record(Request(method, path, repo_id, revision, filename, authorization))
        if repo_id is None:
            return 404, {}, b"Not Found"
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return 401, _error("RepoNotFound", "Repository not found"), b"Repository not found"
            if repo.token is not None and authorization != f"Bearer {repo.token}":
                status = 401 if authorization is None else 403
                return status, _error("GatedRepo", "Access to this model is restricted"), b"Gated"
            commit = repo.refs.get(revision or "", revision if revision in repo.commits else None)
            if commit is None:
                return 404, _error("RevisionNotFound", "Invalid rev id"), b"Revision not found"
            files = repo.commits[commit]
            if filename not in files:
                headers = _error("EntryNotFound", "Entry not found")
                headers["X-Repo-Commit"] = commit
                return 404, headers, b"Entry not found"
            data = files[filename]
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Type": "application/octet-stream",
        }
        return 200, headers, data


def _error(code: str, message: str) -> dict[str, str]:
    return {"X-Error-Code": code, "X-Error-Message": message}


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, *, body: bool) -> None:
            status, headers, data = hub._answer(
                self.command, urlsplit(self.path).path, self.headers.get("Authorization")
            )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A started FakeHub, the huggingface_hub client pointed at it, and an empty HF cache."""
    from huggingface_hub import constants

    hub = FakeHub()
    home, cache = tmp_path / "hf_home", tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_OIDC_RESOURCE",
        "HUGGINGFACE_HUB_CACHE",
    ):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub reads these once, at import: point them at the fake Hub and the temporary cache.
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    # Telemetry off: otherwise the client asks {ENDPOINT}/api/agent-harnesses once per process.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
