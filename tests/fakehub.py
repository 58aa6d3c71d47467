"""Loopback fake of the Hugging Face Hub HTTP API, enough for ``push_to_hub`` / ``load_dataset`` round-trips.

Routes mirror what the installed ``huggingface_hub`` calls. Repo ids must be ``namespace/name``. Every commit keeps
a full snapshot, so reads pinned to an old sha (as ``datasets`` does) see that commit's files.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict
from urllib.parse import unquote, urlencode, urlparse

import datasets.config
import pytest
import yaml
from aiohttp import web

_LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".pt", ".npy", ".zip", ".gz", ".zst", ".tar")
_LFS_MIN_SIZE = 10 * 1024 * 1024  # above this the Hub sends any file to LFS
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


class HubError(Exception):
    """An error answer; ``code`` becomes ``X-Error-Code``, from which the client picks its exception type."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class StoredFile:
    """One file version, with the hashes the client compares against."""

    data: bytes
    lfs: bool
    sha256: str = field(init=False)
    oid: str = field(init=False)
    pointer_size: int = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
        # git stores the pointer, not the content, for LFS files: the blob id hashes what git stores
        blob = pointer.encode() if self.lfs else self.data
        self.oid = hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()
        self.pointer_size = len(pointer)


@dataclass
class Repo:
    """Server-side state of one repo."""

    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)  # sha -> full snapshot (files shared)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> tuple[str, dict[str, StoredFile]]:
        """(sha, files) of a branch name or a full commit sha."""
        if (sha := self.branches.get(revision, revision)) not in self.commits:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha, self.commits[sha]


# what FakeHub.repos exposes per repo; "files" and "sha" are the main branch's
class RepoSnapshot(TypedDict):
    type: str
    private: bool
    sha: str
    files: dict[str, bytes]
    lfs_files: set[str]


Args = dict[str, str]
Handler = Callable[[web.Request, Args], Awaitable[web.Response]]
# the client quotes revisions with safe="", so "refs/pr/1" is one segment
_T, _R, _REV = r"api/(?P<type>models|datasets|spaces)", r"(?P<repo>[^/]+/[^/]+)", r"(?P<rev>[^/]+)"
_PT = r"(?:(?P<type>datasets|spaces)/)?"  # git-style URLs: no prefix for models


class FakeHub:
    """In-memory Hub on ``127.0.0.1:port``, served by aiohttp from a background thread with its own event loop.

    Any bearer token is accepted; without one, writes get 401 and private repos look missing.
    """

    def __init__(self, port: int, *, user: str = "fake-user", page_size: int = 1000) -> None:
        self.port, self.user, self.page_size = port, user, page_size
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[tuple[str, str, int]] = []  # (method, raw path, status): for debugging and assertions
        self._repos: dict[str, Repo] = {}
        self._lfs: dict[str, bytes] = {}  # LFS objects by sha256, PUT before the commit that references them
        self._lock = threading.RLock()  # handlers run on the server thread, inspection helpers on the test thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        routes: list[tuple[str, str, Handler]] = [
            ("POST", r"api/repos/create", self._create_repo),
            ("POST", r"api/validate-yaml", self._validate_yaml),
            ("GET", rf"{_T}/{_R}(?:/revision/{_REV})?", self._repo_info),
            ("GET", rf"{_T}/{_R}/tree/{_REV}(?:/(?P<path>.*))?", self._tree),
            ("POST", rf"{_T}/{_R}/paths-info/{_REV}", self._paths_info),
            ("POST", rf"{_T}/{_R}/preupload/{_REV}", self._preupload),
            ("POST", rf"{_T}/{_R}/commit/{_REV}", self._commit),
            ("POST", rf"{_PT}{_R}\.git/info/lfs/objects/batch", self._lfs_batch),
            ("PUT", r"lfs-upload/(?P<oid>[0-9a-f]{64})", self._lfs_upload),
            ("GET|HEAD", rf"{_PT}{_R}/resolve/{_REV}/(?P<path>.+)", self._resolve),
        ]
        self._routes = [(tuple(m.split("|")), re.compile(p), h) for m, p, h in routes]

    def start(self) -> FakeHub:
        """Bind and serve; returns once the socket listens (raises ``OSError`` if the port is taken)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"fakehub-{self.port}", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    async def _setup(self) -> None:
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        """Close the server and its loop; idempotent."""
        loop, thread, runner = self._loop, self._thread, self._runner
        self._loop = self._thread = self._runner = None
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def repos(self) -> dict[str, RepoSnapshot]:
        """A copy of every repo's state, keyed by repo id."""
        with self._lock:
            out: dict[str, RepoSnapshot] = {}
            for rid, r in self._repos.items():
                sha, files = r.resolve("main")
                out[rid] = RepoSnapshot(
                    type=r.repo_type, private=r.private, sha=sha,
                    files={p: f.data for p, f in files.items()}, lfs_files={p for p, f in files.items() if f.lfs},
                )  # fmt: skip
            return out

    def read_file(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        """Content of ``path`` at ``revision``; ``KeyError`` if the repo, revision or file is missing."""
        with self._lock:
            repo = self._repos[repo_id]
            return repo.commits[repo.branches.get(revision, revision)][path].data

    def reset(self) -> None:
        """Forget all repos, uploads and logged requests; new shas stay unique, so client caches never alias."""
        with self._lock:
            self._repos.clear()
            self._lfs.clear()
            self.requests.clear()

    async def _dispatch(self, request: web.Request) -> web.Response:
        raw = request.rel_url.raw_path.lstrip("/")  # raw, because %2F inside a segment must not split it
        try:
            for methods, pattern, handler in self._routes:
                if request.method in methods and (m := pattern.fullmatch(raw)):
                    response = await handler(request, {k: unquote(v) for k, v in m.groupdict().items() if v})
                    break
            else:
                raise HubError(404, None, f"FakeHub has no route for {request.method} /{raw}")
        except HubError as err:
            headers = {"X-Error-Message": err.message} | ({"X-Error-Code": err.code} if err.code else {})
            response = web.json_response({"error": err.message}, status=err.status, headers=headers)
        with self._lock:
            self.requests.append((request.method, "/" + raw, response.status))
        return response

    def _repo(self, request: web.Request, a: Args, *, write: bool = False) -> Repo:
        authed = _authed(request, required=write)
        repo = self._repos.get(a["repo"])
        # the Hub hides private repos from anonymous callers behind the same 404 as a missing repo
        if repo is None or repo.repo_type != _TYPES.get(a.get("type", "models")) or (repo.private and not authed):
            raise HubError(404, "RepoNotFound", f"Repository {a['repo']} not found")
        return repo

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}"

    async def _create_repo(self, request: web.Request, a: Args) -> web.Response:
        _authed(request, required=True)
        body = await request.json()
        repo_id = f"{body.get('organization') or self.user}/{body['name']}"
        with self._lock:
            if (existing := self._repos.get(repo_id)) is not None:
                # with exist_ok=True the client still reads "url" from this 409
                return web.json_response({"error": "Repo already exists", "url": self._repo_url(existing)}, status=409)
            private = body.get("visibility", "private" if body.get("private") else "public") != "public"
            repo = self._repos[repo_id] = Repo(repo_id, body.get("type") or "model", private)
            repo.branches["main"] = sha = secrets.token_hex(20)
            repo.commits[sha] = {}
            return web.json_response({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    async def _validate_yaml(self, request: web.Request, a: Args) -> web.Response:
        match = re.match(r"^---\s*\n(.*?)\n---\s*(?:\n|$)", (await request.json()).get("content", ""), re.DOTALL)
        try:  # YAML syntax only, not the Hub's metadata schema
            yaml.safe_load(match[1] if match else "")
        except yaml.YAMLError as err:
            return web.json_response({"errors": [{"message": f"Invalid YAML in README.md: {err}"}]}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    async def _repo_info(self, request: web.Request, a: Args) -> web.Response:
        with self._lock:
            r = self._repo(request, a)
            sha, files = r.resolve(a.get("rev", "main"))
            siblings = [
                {"rfilename": p, "size": len(f.data), "blobId": f.oid}
                | ({"lfs": {"sha256": f.sha256, "size": len(f.data), "pointerSize": f.pointer_size}} if f.lfs else {})
                for p, f in sorted(files.items())
            ]
            info = {"id": r.repo_id, "sha": sha, "private": r.private, "gated": False, "disabled": False}
            return web.json_response(info | {"siblings": siblings})

    async def _tree(self, request: web.Request, a: Args) -> web.Response:
        path, q = a.get("path", "").strip("/"), request.query
        recursive = q.get("recursive", "").lower() in ("1", "true")
        with self._lock:
            _, files = self._repo(request, a).resolve(a["rev"])
            prefix, names = f"{path}/" if path else "", set[str]()
            for p in files:
                if p.startswith(prefix):
                    parts = p[len(prefix) :].split("/")
                    names.update(prefix + "/".join(parts[:d]) for d in range(1, len(parts) + 1 if recursive else 2))
            if path and not names:  # also for a file path: HfFileSystem.ls then falls back to listing the parent
                raise HubError(404, "EntryNotFound", f"{path} is not a folder at {a['rev']}")
            ordered = sorted(names, key=lambda n: (n.count("/"), n in files, n))  # per level, folders first
            start = int(q.get("cursor", "0"))
            page = [_entry(files, n) for n in ordered[start : start + self.page_size]]
        headers = {}
        if start + self.page_size < len(ordered):  # cursor pagination via a GitHub-style Link header, like the Hub
            query = urlencode({**q, "cursor": str(start + self.page_size)})
            headers["Link"] = f'<{self.url}{request.rel_url.raw_path}?{query}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def _paths_info(self, request: web.Request, a: Args) -> web.Response:
        paths = [str(p).strip("/") for p in (await request.post()).getall("paths", [])]
        with self._lock:
            _, files = self._repo(request, a).resolve(a["rev"])
            # missing paths are left out, not an error
            found = [p for p in paths if p in files or any(f.startswith(p + "/") for f in files)]
            return web.json_response([_entry(files, p) for p in found])

    async def _resolve(self, request: web.Request, a: Args) -> web.Response:
        with self._lock:
            sha, files = self._repo(request, a).resolve(a["rev"])
            if (f := files.get(a["path"])) is None:
                raise HubError(404, "EntryNotFound", f"{a['path']} does not exist at {a['rev']}")
        # hf_hub_download's HEAD needs X-Repo-Commit, ETag and Content-Length (aiohttp keeps the latter on HEAD)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{f.sha256 if f.lfs else f.oid}"', "Accept-Ranges": "bytes"}
        if not (rng := re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("Range", ""))):
            return web.Response(body=f.data, headers=headers, content_type="application/octet-stream")
        # HfFileSystem reads files in blocks through Range requests
        size = len(f.data)
        start = int(rng[1]) if rng[1] else max(size - int(rng[2] or 0), 0)
        end = min(int(rng[2]), size - 1) if rng[1] and rng[2] else size - 1
        if start >= size:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return web.Response(status=206, body=f.data[start : end + 1], headers=headers)

    async def _preupload(self, request: web.Request, a: Args) -> web.Response:
        body = await request.json()
        with self._lock:
            r = self._repo(request, a, write=True)
            current = r.resolve(a["rev"])[1] if a["rev"] in r.branches else {}
            out = []
            for item in body["files"]:
                path, size, sample = item["path"], int(item["size"]), base64.b64decode(item["sample"])
                lfs = path.endswith(_LFS_SUFFIXES) or size >= _LFS_MIN_SIZE or b"\0" in sample
                # the client drops unchanged files when "oid" matches: sha256 for LFS, git blob id otherwise
                old = current.get(path)
                oid = None if old is None or old.lfs != lfs else (old.sha256 if lfs else old.oid)
                out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return web.json_response({"files": out})

    async def _lfs_batch(self, request: web.Request, a: Args) -> web.Response:
        body = json.loads(await request.read())
        with self._lock:
            self._repo(request, a, write=True)
            objects = [{"oid": o["oid"], "size": int(o["size"]), "authenticated": True} for o in body["objects"]]
            for o in objects:
                if o["oid"] not in self._lfs:  # no "actions" means "already stored": the client skips the PUT
                    o["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"}}
        payload = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return web.json_response(payload, content_type="application/vnd.git-lfs+json")

    async def _lfs_upload(self, request: web.Request, a: Args) -> web.Response:
        data = await request.read()  # the client sends no token to the upload href (it is a presigned S3 URL)
        if hashlib.sha256(data).hexdigest() != a["oid"]:
            raise HubError(400, None, f"Uploaded content does not match oid {a['oid']}")
        with self._lock:
            self._lfs[a["oid"]] = data
        return web.Response()

    async def _commit(self, request: web.Request, a: Args) -> web.Response:
        lines = [json.loads(line) for line in (await request.read()).splitlines() if line.strip()]
        if request.query.get("create_pr") in ("1", "true"):
            raise HubError(501, None, "FakeHub does not support pull requests")
        parent, branch = lines[0]["value"].get("parentCommit"), a["rev"]  # line 0 is the header
        with self._lock:
            r = self._repo(request, a, write=True)
            if branch not in r.branches:
                raise HubError(404, "RevisionNotFound", f"Cannot commit to {branch}: not a branch")
            head, files = r.resolve(branch)
            if parent and not head.startswith(parent):  # datasets' push_to_hub re-reads the card and retries
                raise HubError(412, None, f"Parent commit {parent} is not the head of {branch} ({head})")
            files = dict(files)
            for op in lines[1:]:
                files = self._apply(files, op["key"], op["value"])
            r.branches[branch] = sha = secrets.token_hex(20)
            r.commits[sha] = files
            commit_url = f"{self._repo_url(r)}/commit/{sha}"
            return web.json_response({"commitUrl": commit_url, "commitOid": sha, "pullRequestUrl": None})

    def _apply(self, files: dict[str, StoredFile], key: str, value: dict[str, Any]) -> dict[str, StoredFile]:
        path = value["path"].strip("/")
        if key == "file":
            files[path] = StoredFile(base64.b64decode(value["content"]), lfs=False)
        elif key == "lfsFile":
            if (data := self._lfs.get(value["oid"])) is None:
                raise HubError(422, None, f"LFS object {value['oid']} for {path} was never uploaded")
            files[path] = StoredFile(data, lfs=True)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, "EntryNotFound", f"Cannot delete {path}: no such file")
        elif key == "deletedFolder":
            files = {p: f for p, f in files.items() if not p.startswith(path + "/")}
        else:
            raise HubError(400, None, f"Unsupported commit operation {key!r}")
        return files


def _authed(request: web.Request, *, required: bool) -> bool:
    if not (authed := bool(request.headers.get("Authorization", "").removeprefix("Bearer ").strip())) and required:
        raise HubError(401, None, "Invalid credentials in Authorization header")
    return authed


def _entry(files: dict[str, StoredFile], path: str) -> dict[str, Any]:
    """Tree / paths-info entry for a file or folder (no ``lastCommit``: ``expand`` is ignored)."""
    if (f := files.get(path)) is None:
        under = sorted((p, f.oid) for p, f in files.items() if p.startswith(path + "/"))
        return {"type": "directory", "path": path, "oid": hashlib.sha1(json.dumps(under).encode()).hexdigest()}
    entry: dict[str, Any] = {"type": "file", "path": path, "oid": f.oid, "size": len(f.data)}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": f.pointer_size}
    return entry


_HUB = pytest.StashKey[FakeHub]()


@pytest.fixture(scope="session")
def fake_hub(request: pytest.FixtureRequest) -> FakeHub:
    """The session's FakeHub on the port of ``HF_ENDPOINT`` (set by ``tests/conftest.py``), started on first use.

    Kept in the config stash because each test module importing this fixture gets its own fixture definition.
    Also turns off ``datasets``' parquet-export lookup: its host, ``datasets-server.127.0.0.1``, means a DNS query.
    """
    if (hub := request.config.stash.get(_HUB, None)) is None:
        hub = request.config.stash[_HUB] = FakeHub(urlparse(os.environ["HF_ENDPOINT"]).port or 80).start()
        request.config.add_cleanup(hub.stop)
        mp = pytest.MonkeyPatch()
        mp.setattr(datasets.config, "USE_PARQUET_EXPORT", False)
        request.config.add_cleanup(mp.undo)
    return hub
