"""A Hugging Face Hub stand-in on 127.0.0.1 for tests: the endpoints the real ``huggingface_hub`` client calls.

It keeps git-like state in memory (repos, branches, PR refs, commits of whole trees, an LFS object store) and
records every request, so tests can count what a push sent and inject failures. Implemented:

==========================================================  =========================================================
``GET  /api/whoami-v2``                                     ``whoami``: 401 unless ``Authorization: Bearer <token>``
``POST /api/repos/create``                                  ``create_repo``: 409 when it exists
``POST /api/validate-yaml``                                 ``create_commit`` checks a committed README.md with it
``GET  /api/datasets/{repo}[/revision/{rev}]``              ``repo_info`` / ``dataset_info`` (HfFileSystem, datasets)
``GET  /api/datasets/{repo}/tree/{rev}[/{path}]``           ``list_repo_tree`` (recursive, Link-header pagination)
``POST /api/datasets/{repo}/paths-info/{rev}``              ``get_paths_info``
``GET  /api/datasets/{repo}/refs``                          ``list_repo_refs``
``POST /api/datasets/{repo}/branch/{branch}``               ``create_branch``
``POST /api/datasets/{repo}/preupload/{rev}``               upload modes: ``*.parquet`` (``lfs_suffixes``) "lfs",
                                                            the rest "regular", plus the remote oid of each path
``POST /datasets/{repo}.git/info/lfs/objects/batch``        LFS batch API, "basic" transfer; known objects get no action
``PUT  /_lfs/{sha256}``                                     the basic-transfer upload (content checked against it)
``POST /api/datasets/{repo}/commit/{rev}``                  NDJSON commit: ``file``, ``lfsFile``, ``deletedFile``,
                                                            ``deletedFolder``; ``parentCommit``; ``?create_pr=1``
``HEAD|GET /datasets/{repo}/resolve/{rev}/{path}``          downloads, with ``X-Repo-Commit``, ``ETag``
                                                            (``X-Linked-Etag``/``X-Linked-Size`` for LFS) and ``Range``
==========================================================  =========================================================

Writes need the token; private repos are invisible (404) without it; repos can be created under the user or
its orgs only. ``validate-yaml`` only checks that the metadata parses and that configs are named.

Not implemented: Xet storage, multipart LFS, tags, gated repos. ``huggingface_hub`` uploads LFS files through
Xet whenever ``hf_xet`` is installed, so tests set ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True`` to take
the LFS path the stand-in serves. Downloads never use Xet because responses carry no ``X-Xet-Hash``.

Usage::

    with HubStandIn(token="hf_test") as hub:
        api = HfApi(endpoint=hub.endpoint, token="hf_test")
        api.create_repo("org/data", repo_type="dataset")
        hub.fail_next("commit")                     # the next commit answers 500
        reached = hub.hold_next("commit", after=1)  # the 2nd next commit waits (kill the client), then fails
        hub.count("lfs_upload")                     # requests of a kind so far
        hub.files("org/data")                       # {path: bytes} at main
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

NULL_OID = "0" * 40
_REPO = r"(?P<kind>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"


class HubHTTPError(Exception):
    """An error answer: status, message and the ``X-Error-Code`` header the client maps to exception types."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass(frozen=True)
class Blob:
    """File content; LFS files are stored as pointers in git, so their blob oid is the pointer's."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def oid(self) -> str:
        return git_blob_oid(self.pointer if self.lfs else self.data)

    def entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.oid, "size": len(self.data), "path": path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(self.pointer)}
        return entry


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _folder_entry(path: str) -> dict[str, Any]:
    # Folder oids only need to be stable here; the client does not check them.
    return {"type": "directory", "oid": git_blob_oid(path.encode()), "size": 0, "path": path}


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    tree: dict[str, Blob]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)  # "main", "refs/pr/1" -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    prs: int = 0

    def head(self, revision: str) -> Commit:
        oid = self.refs.get(revision)
        if oid is None and revision in self.commits:
            oid = revision
        if oid is None:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]


@dataclass
class RecordedRequest:
    method: str
    path: str
    kind: str
    authorized: bool


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubStandIn:
    """The stand-in server; see the module docstring. ``page_size`` caps tree pages to exercise pagination."""

    def __init__(
        self,
        *,
        token: str = "hf_standin_token",
        user: str = "tester",
        orgs: tuple[str, ...] = ("org",),
        lfs_suffixes: tuple[str, ...] = (".parquet",),
        page_size: int = 1000,
    ):
        self.token, self.user, self.orgs = token, user, orgs
        self.lfs_suffixes = lfs_suffixes
        self.page_size = page_size
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[RecordedRequest] = []
        self._failures: dict[str, list[str]] = {}
        self._holds: dict[str, list[Any]] = {}  # kind -> [requests to let through first, reached, release]
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubStandIn":
        hub = self

        class Handler(_Handler):
            stand_in = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for kind in list(self._holds):
            self.release(kind)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "HubStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers ---------------------------------------------------------------------------
    def fail_next(self, kind: str, times: int = 1, message: str | None = None) -> None:
        """Answer the next ``times`` requests of ``kind`` (e.g. "commit", "lfs_upload") with a 500.

        ``message`` is the error text the client sees (a test can make it echo a secret).
        """
        with self._lock:
            self._failures.setdefault(kind, []).extend([message or f"stand-in: injected failure of {kind}"] * times)

    def hold_next(self, kind: str, *, after: int = 0) -> threading.Event:
        """Let ``after`` requests of ``kind`` through, then make the next one wait until :meth:`release` (or the
        server stops) and fail with a 500 without taking effect: a client killed meanwhile never gets an answer.
        Returns an event that is set when the held request has arrived."""
        reached = threading.Event()
        with self._lock:
            self._holds[kind] = [after, reached, threading.Event()]
        return reached

    def release(self, kind: str) -> None:
        with self._lock:
            held = self._holds.pop(kind, None)
        if held:
            held[2].set()

    def count(self, *kinds: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.kind in kinds)

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            return {path: blob.data for path, blob in repo.head(revision).tree.items()}

    def history(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> list[str]:
        """Commit titles from the newest back to the repo's creation."""
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            commit: Commit | None = repo.head(revision)
            titles = []
            while commit is not None:
                titles.append(commit.title)
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return titles

    # -- state changes (called by the handler under the lock) -----------------------------------
    def _take_failure(self, kind: str) -> str | None:
        """The injected failure for a request of ``kind``, if any; a held request first waits for its release."""
        with self._lock:
            held = self._holds.get(kind)
            if held is not None and held[0] > 0:
                held[0] -= 1
                held = None
            if held is None or held[1].is_set():
                queued = self._failures.get(kind)
                return queued.pop(0) if queued else None
            held[1].set()
        held[2].wait(timeout=300)
        return f"stand-in: held {kind} dropped"

    def _repo(self, kind: str, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get((kind.rstrip("s"), repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, parent: Commit | None, title: str, tree: dict[str, Blob]) -> Commit:
        seed = f"{parent.oid if parent else ''}\n{title}\n{len(repo.commits)}\n" + "\n".join(
            f"{p} {b.oid}" for p, b in sorted(tree.items())
        )
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent.oid if parent else None, title, tree, _now())
        repo.commits[commit.oid] = commit
        return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stand_in: HubStandIn

    # Routes: (method, regex on the raw path, kind, handler name). Raw paths keep %2F in revisions.
    ROUTES = [
        ("GET", r"^/api/whoami-v2$", "whoami", "whoami"),
        ("POST", r"^/api/repos/create$", "create_repo", "create_repo"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml", "validate_yaml"),
        ("POST", rf"^/api/{_REPO}/preupload/(?P<rev>[^/]+)$", "preupload", "preupload"),
        ("POST", rf"^/api/{_REPO}/commit/(?P<rev>[^/]+)$", "commit", "commit"),
        ("GET", rf"^/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree", "tree"),
        ("POST", rf"^/api/{_REPO}/paths-info/(?P<rev>[^/]+)$", "paths_info", "paths_info"),
        ("GET", rf"^/api/{_REPO}/refs$", "refs", "refs"),
        ("POST", rf"^/api/{_REPO}/branch/(?P<rev>[^/]+)$", "create_branch", "create_branch"),
        ("GET", rf"^/api/{_REPO}/revision/(?P<rev>[^/]+)$", "repo_info", "repo_info"),
        ("GET", rf"^/api/{_REPO}$", "repo_info", "repo_info"),
        ("POST", rf"^/{_REPO}\.git/info/lfs/objects/batch$", "lfs_batch", "lfs_batch"),
        ("PUT", r"^/_lfs/(?P<oid>[0-9a-f]{64})$", "lfs_upload", "lfs_upload"),
        ("HEAD", rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve", "resolve"),
        ("GET", rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve", "resolve"),
    ]

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not access logs
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # -- plumbing -------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        hub = self.stand_in
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.body = self._read_body()
        self.authorized = self.headers.get("Authorization", "") == f"Bearer {hub.token}"
        for route_method, pattern, kind, name in self.ROUTES:
            match = re.match(pattern, split.path)
            if route_method == method and match:
                with hub._lock:
                    hub.requests.append(RecordedRequest(method, split.path, kind, self.authorized))
                failure = hub._take_failure(kind)
                try:
                    if failure is not None:
                        raise HubHTTPError(500, failure)
                    getattr(self, f"_{name}")(**{k: v for k, v in match.groupdict().items()})
                except HubHTTPError as error:
                    self._error(error)
                return
        with hub._lock:
            hub.requests.append(RecordedRequest(method, split.path, "unknown", self.authorized))
        self._error(HubHTTPError(404, f"stand-in has no route for {method} {split.path}"))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, content_type: str = "application/json"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, error: HubHTTPError) -> None:
        headers = {"X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._json({"error": error.message, **error.extra}, error.status, headers)

    def _require_auth(self) -> None:
        if not self.authorized:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    def _repo(self, kind: str, repo: str) -> Repo:
        return self.stand_in._repo(kind, repo, self.authorized)

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError:
            raise HubHTTPError(400, "body is not JSON") from None

    # -- endpoints ------------------------------------------------------------------------------
    def _whoami(self) -> None:
        self._require_auth()
        hub = self.stand_in
        self._json(
            {
                "type": "user",
                "name": hub.user,
                "orgs": [{"name": org, "type": "org"} for org in hub.orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": "stand-in", "role": "write"}},
            }
        )

    def _create_repo(self) -> None:
        self._require_auth()
        hub = self.stand_in
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or hub.user
        if namespace not in (hub.user, *hub.orgs):
            raise HubHTTPError(403, f"You don't have the rights to create a repo under the namespace {namespace}")
        repo_id = f"{namespace}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{hub.endpoint}/{prefix}{repo_id}"
        with hub._lock:
            if (repo_type, repo_id) in hub.repos:
                # The Hub answers a conflict with the repo's URL; create_repo(exist_ok=True) returns it.
                raise HubHTTPError(409, "You already created this repo", url=url)
            repo = Repo(repo_type, repo_id, private=payload.get("visibility") == "private")
            # The Hub starts every repo with a .gitattributes that routes big/binary files to LFS.
            attrs = Blob(b"*.parquet filter=lfs diff=lfs merge=lfs -text\n", lfs=False)
            repo.refs["main"] = hub._commit(repo, None, "initial commit", {".gitattributes": attrs}).oid
            hub.repos[(repo_type, repo_id)] = repo
        self._json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _validate_yaml(self) -> None:
        payload = self._json_body()
        content = payload.get("content", "")
        lines = content.splitlines()
        errors: list[dict[str, str]] = []
        if lines[:1] == ["---"] and "---" in lines[1:]:
            block = "\n".join(lines[1 : lines[1:].index("---") + 1])
            try:
                metadata = yaml.safe_load(block) or {}
                if not isinstance(metadata, dict):
                    errors.append({"message": "metadata must be a mapping"})
                for config in metadata.get("configs", []) if isinstance(metadata, dict) else []:
                    if "config_name" not in config:
                        errors.append({"message": f"config without config_name: {config}"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        if errors:
            self._json({"errors": errors}, 400)
        else:
            self._json({"errors": [], "warnings": []})

    def _preupload(self, kind: str, repo: str, rev: str) -> None:
        self._require_auth()
        hub = self.stand_in
        with hub._lock:
            tree = self._repo(kind, repo).head(unquote(rev)).tree
        files = []
        for item in self._json_body().get("files", []):
            path = item["path"]
            lfs = path.endswith(hub.lfs_suffixes)
            remote = tree.get(path)
            # The client compares this oid with its own: sha256 for LFS files, the git blob oid otherwise.
            oid = None if remote is None else (remote.sha256 if remote.lfs else remote.oid)
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": files, "commitOid": NULL_OID})

    def _lfs_batch(self, kind: str, repo: str) -> None:
        self._require_auth()
        hub = self.stand_in
        self._repo(kind, repo)
        objects = []
        for obj in self._json_body().get("objects", []):
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            with hub._lock:
                known = obj["oid"] in hub.lfs_objects
            if not known:
                answer["actions"] = {"upload": {"href": f"{hub.endpoint}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(answer)
        self._json({"transfer": "basic", "objects": objects})

    def _lfs_upload(self, oid: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubHTTPError(400, "uploaded content does not match its sha256")
        with self.stand_in._lock:
            self.stand_in.lfs_objects[oid] = self.body
        self._send(200, b"", content_type="text/plain")

    def _commit(self, kind: str, repo: str, rev: str) -> None:
        self._require_auth()
        hub = self.stand_in
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        create_pr = self.query.get("create_pr", ["0"])[0] == "1"
        with hub._lock:
            target = self._repo(kind, repo)
            revision = unquote(rev)
            base = target.head(revision)
            if header.get("parentCommit") and not base.oid.startswith(header["parentCommit"]):
                raise HubHTTPError(412, "A commit has happened since the parent commit. Please retry.")
            tree = dict(base.tree)
            for line in lines:
                key, value = line["key"], line.get("value", {})
                if key == "file":
                    tree[value["path"]] = Blob(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    data = hub.lfs_objects.get(value["oid"])
                    if data is None:
                        raise HubHTTPError(422, f"LFS object {value['oid']} was not uploaded ({value['path']})")
                    tree[value["path"]] = Blob(data, lfs=True)
                elif key == "deletedFile":
                    if tree.pop(value["path"], None) is None:
                        raise HubHTTPError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [p for p in tree if p.startswith(prefix)]:
                        del tree[path]
            commit = hub._commit(target, base, header.get("summary", ""), tree)
            prefix = "" if target.repo_type == "model" else f"{target.repo_type}s/"
            url = f"{hub.endpoint}/{prefix}{target.repo_id}"
            answer = {"commitUrl": f"{url}/commit/{commit.oid}", "commitOid": commit.oid}
            if create_pr:
                target.prs += 1
                target.refs[f"refs/pr/{target.prs}"] = commit.oid
                answer["pullRequestUrl"] = f"{url}/discussions/{target.prs}"
            else:
                target.refs[revision] = commit.oid
        self._json(answer)

    def _entries(self, tree: dict[str, Blob], base: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = f"{base}/" if base else ""
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(tree):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if depth == 1 or recursive:
                    entries.setdefault(folder, _folder_entry(folder))
                if not recursive:
                    break
            if len(parts) == 1 or recursive:
                entries[path] = tree[path].entry(path)
        return list(entries.values())

    def _tree(self, kind: str, repo: str, rev: str, path: str | None) -> None:
        hub = self.stand_in
        base = unquote(path or "").strip("/")
        with hub._lock:
            tree = self._repo(kind, repo).head(unquote(rev)).tree
        if base and not any(p.startswith(base + "/") for p in tree):
            raise HubHTTPError(404, f"{base} does not exist", "EntryNotFound")
        recursive = self.query.get("recursive", ["False"])[0].lower() == "true"
        entries = self._entries(tree, base, recursive)
        size = min(hub.page_size, 50) if self.query.get("expand", ["False"])[0].lower() == "true" else hub.page_size
        cursor = int(self.query.get("cursor", ["0"])[0])
        headers = {}
        if cursor + size < len(entries):
            query = "&".join(f"{k}={quote(v[0])}" for k, v in self.query.items() if k != "cursor")
            headers["Link"] = f'<{hub.endpoint}{urlsplit(self.path).path}?{query}&cursor={cursor + size}>; rel="next"'
        self._json(entries[cursor : cursor + size], headers=headers)

    def _paths_info(self, kind: str, repo: str, rev: str) -> None:
        hub = self.stand_in
        form = parse_qs(self.body.decode())
        with hub._lock:
            tree = self._repo(kind, repo).head(unquote(rev)).tree
        answer = []
        for path in form.get("paths", []):
            if path in tree:
                answer.append(tree[path].entry(path))
            elif any(p.startswith(path.rstrip("/") + "/") for p in tree):
                answer.append(_folder_entry(path))
        self._json(answer)

    def _refs(self, kind: str, repo: str) -> None:
        with self.stand_in._lock:
            target = self._repo(kind, repo)
            refs = dict(target.refs)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in refs.items()
            if not name.startswith("refs/")
        ]
        self._json({"branches": branches, "tags": [], "converts": []})

    def _create_branch(self, kind: str, repo: str, rev: str) -> None:
        self._require_auth()
        hub = self.stand_in
        payload = self._json_body()
        with hub._lock:
            target = self._repo(kind, repo)
            branch = unquote(rev)
            if branch in target.refs:
                raise HubHTTPError(409, "Reference already exists")
            target.refs[branch] = target.head(payload.get("startingPoint") or "main").oid
        self._json({})

    def _repo_info(self, kind: str, repo: str, rev: str | None = None) -> None:
        hub = self.stand_in
        with hub._lock:
            target = self._repo(kind, repo)
            commit = target.head(unquote(rev or "main"))
            siblings = [{"rfilename": p} for p in sorted(commit.tree)]
        self._json(
            {
                "id": target.repo_id,
                "_id": hashlib.sha1(target.repo_id.encode()).hexdigest()[:24],
                "author": target.repo_id.split("/")[0],
                "sha": commit.oid,
                "private": target.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "createdAt": commit.date,
                "lastModified": commit.date,
            }
        )

    def _resolve(self, kind: str, repo: str, rev: str, path: str) -> None:
        hub = self.stand_in
        with hub._lock:
            commit = self._repo(kind, repo).head(unquote(rev))
        blob = commit.tree.get(unquote(path))
        if blob is None:
            raise HubHTTPError(404, "Entry not found", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.oid}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data, status = blob.data, 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            start_s, end_s = ranged.groups()
            if start_s:
                start = int(start_s)
                end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            else:  # "bytes=-N": the last N bytes
                start, end = max(len(data) - int(end_s), 0), len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")
