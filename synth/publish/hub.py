"""Publish an output directory to the Hugging Face Hub as a dataset repository.

What a push sends: the finished shards ``<recipe>/<lang>/train-*.parquet`` (``<recipe>/_rejected/`` only with
``include_rejected``), a dataset card generated for exactly those configs (``README.md``), and the manifest's
provenance (``manifest.json``: run configs without local paths, shard checksums, totals). Never ``.polysynth/`` (the ledger),
``.lock``, ``.push/`` or temp files.

It is idempotent. The remote tree is listed once (LFS files carry their sha256, regular files their git blob id)
and a file is sent only when its remote copy differs from the manifest's checksum, so a second push of an
unchanged output sends nothing and makes no commit. Remote shards of the pushed recipes that are no longer part
of the output (a language dropped, a shard count changed, rejected rows no longer included) are deleted in the
same commit as their config's new shards. Large pushes are split into several commits, each carrying whole
configs (a config is split only when it alone exceeds the limits); the card and manifest go in the last commit,
so the card never announces data that is not there yet. Each commit names its parent, so a concurrent change
to the branch fails the push instead of being overwritten. A push that dies midway is simply rerun: committed
files are skipped, and LFS objects uploaded without a commit are known to the Hub and not sent again.

Authentication: ``token`` or, by default, ``HF_TOKEN`` / the login stored by ``hf auth login``. The token is
checked with ``whoami`` before anything is read or sent, and never appears in results, logs or errors (error
messages from the Hub client are scrubbed). A dry run needs no token and no network: it writes the card to
``OUT/.push/README.md`` and returns the plan.

What to push where is one :class:`PushOptions`: ``synth push`` builds it from its flags, the publish flows take it as
their ``options`` parameter (Prefect validates it), and :func:`push` takes it.

Usage::

    from synth.publish.hub import PushOptions, push

    plan = push(Path("out/demo"), PushOptions(repo_id="my-org/polysynth-demo", dry_run=True))
    print(plan.describe())                                  # files, sizes, configs, commits
    result = push(Path("out/demo"), PushOptions(repo_id="my-org/polysynth-demo", private=True))
    print(result.commit_urls)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from synth.publish.card import build_card, config_name, public_config, published_groups, validate_card
from synth.errors import SynthError
from synth.store.files import atomic_write_bytes, sha256_file
from synth.store.lock import OutputLock
from synth.store.manifest import MANIFEST, Manifest

log = logging.getLogger(__name__)

PUSH_DIR = ".push"
CARD = "README.md"
# The Hub accepts far bigger commits, but smaller ones fail (and are retried) more cheaply.
MAX_FILES_PER_COMMIT = 100
MAX_BYTES_PER_COMMIT = 8 * 2**30
_TOKEN_LIKE = re.compile(r"\bhf_[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


class HubError(SynthError):
    """Publishing failed; ``transient`` says whether rerunning the same push may succeed (network, 5xx)."""

    def __init__(self, message: str, *, file: str | None = None, transient: bool = False):
        super().__init__(message, file=file)
        self.transient = transient


class PushOptions(BaseModel):
    """What a push publishes and where (everything but the output directory and the token): the flags of
    ``synth push``, the ``options`` parameter of the publish flows and deployment, the options of :func:`push`.

    The token is never one of them: Prefect stores flow parameters in its database.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_id: str = Field(description="Target dataset repo, ORG/NAME; created if missing (private if `private`).")
    private: bool = Field(False, description="Create the repo private (an existing repo keeps its visibility).")
    revision: str | None = Field(None, description="Branch to push to (created from main if missing); default main.")
    create_pr: bool = Field(False, description="Open a pull request instead of committing to the branch.")
    include_rejected: bool = Field(False, description="Also publish the <recipe>-rejected configs.")
    allow_incomplete: bool = Field(
        False, description="Publish the finished recipes even if another recipe of the output is unfinished."
    )
    dry_run: bool = Field(False, description="Write the card to OUT/.push/README.md and report the plan; no network.")


@dataclass
class PlannedFile:
    """One file of the publication: a shard on disk (``local``) or generated content (``content``)."""

    path: str
    size: int
    sha256: str
    config: str | None = None  # None for README.md and manifest.json
    rows: int = 0
    local: Path | None = field(default=None, repr=False)
    content: bytes | None = field(default=None, repr=False)


@dataclass
class PlannedCommit:
    """One commit of a push: whole configs (or a slice of a very large one), deletions, maybe the metadata."""

    title: str
    uploads: list[PlannedFile]
    deletes: list[str]

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.uploads)


@dataclass
class PushResult:
    """What a push did (or, for a dry run, would do). Never holds the token; its reports name no local path
    other than ``card_path``."""

    repo_id: str
    revision: str
    dry_run: bool
    configs: dict[str, dict[str, int]]  # config -> {"rows", "files", "bytes"}
    files: list[PlannedFile]
    uploads: list[PlannedFile]
    deletes: list[str]
    commits: list[PlannedCommit]
    remote_checked: bool
    user: str | None = None
    commit_urls: list[str] = field(default_factory=list)
    pr_url: str | None = None
    # Remote data files of recipes this output does not have: kept, but the new card does not describe them.
    untracked: list[str] = field(default_factory=list)
    card_path: Path | None = None

    @property
    def unchanged(self) -> list[PlannedFile]:
        sent = {f.path for f in self.uploads}
        return [f for f in self.files if f.path not in sent]

    @property
    def upload_bytes(self) -> int:
        return sum(f.size for f in self.uploads)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (a flow's return value)."""
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "dry_run": self.dry_run,
            "remote_checked": self.remote_checked,
            "configs": self.configs,
            "uploads": [{"path": f.path, "bytes": f.size, "sha256": f.sha256} for f in self.uploads],
            "unchanged": [f.path for f in self.unchanged],
            "deletes": self.deletes,
            "commits": [
                {"title": c.title, "files": len(c.uploads), "deletes": len(c.deletes), "bytes": c.bytes}
                for c in self.commits
            ],
            "commit_urls": self.commit_urls,
            "pr_url": self.pr_url,
            "untracked": self.untracked,
            "card_path": str(self.card_path) if self.card_path else None,
        }

    def describe(self, *, files: bool = False) -> str:
        """The plan and outcome as plain text (what ``synth push`` prints); ``files`` lists every file."""
        head = f"{'dry run: ' if self.dry_run else ''}push to {self.repo_id} (revision {self.revision})"
        lines = [head + (f" as {self.user}" if self.user else "")]
        for name, info in self.configs.items():
            lines.append(f"  config {name}: {info['rows']} rows in {info['files']} file(s), {_size(info['bytes'])}")
        if not self.remote_checked:
            lines.append("  remote not checked (dry run): every file is listed; a push skips what the Hub already has")
        lines.append(
            f"  upload {len(self.uploads)} file(s), {_size(self.upload_bytes)}; unchanged {len(self.unchanged)}; "
            f"delete {len(self.deletes)}"
        )
        for i, commit in enumerate(self.commits, 1):
            lines.append(
                f"  commit {i}/{len(self.commits)}: {commit.title} "
                f"({len(commit.uploads)} upload(s), {len(commit.deletes)} deletion(s), {_size(commit.bytes)})"
            )
            if files:
                lines += [f"    + {f.path} ({_size(f.size)})" for f in commit.uploads]
                lines += [f"    - {path}" for path in commit.deletes]
        if not self.commits:
            lines.append("  nothing to commit: the Hub already has this output")
        if self.untracked:
            lines.append(
                f"  note: the repo also holds {len(self.untracked)} data file(s) of recipes not in this output "
                f"(e.g. {self.untracked[0]}); they are kept, but the card no longer lists them"
            )
        lines += [f"  commit {url}" for url in self.commit_urls]
        if self.pr_url:
            lines.append(f"  pull request {self.pr_url}")
        if self.card_path:
            lines.append(f"  card written to {self.card_path}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """A markdown report (the publish flow's artifact)."""
        title = "Dry run of a push" if self.dry_run else "Pushed"
        lines = [
            f"## {title} to `{self.repo_id}` (revision `{self.revision}`)",
            "",
            "| config | rows | files | size |",
            "|---|---:|---:|---:|",
            *(f"| `{n}` | {i['rows']} | {i['files']} | {_size(i['bytes'])} |" for n, i in self.configs.items()),
            "",
            f"Uploaded {len(self.uploads)} file(s) ({_size(self.upload_bytes)}), {len(self.unchanged)} unchanged, "
            f"{len(self.deletes)} deleted, in {len(self.commits)} commit(s).",
        ]
        if not self.remote_checked:
            lines.append("The remote was not consulted (dry run): every file is listed as an upload.")
        lines += [f"- commit: {url}" for url in self.commit_urls]
        if self.pr_url:
            lines.append(f"- pull request: {self.pr_url}")
        return "\n".join(lines)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise HubError(f"invalid repo id {repo_id!r}: {' '.join(str(exc).split())}") from None
    if repo_id.count("/") != 1:
        raise HubError(f"repo id must be ORG/NAME (or USER/NAME), got {repo_id!r}")


def _check_complete(manifest: Manifest, allow_incomplete: bool) -> None:
    if not manifest.recipes:
        raise HubError("the manifest lists no recipe: nothing to publish", file=str(manifest.path))
    unfinished = {r: s.get("status") for r, s in sorted(manifest.recipes.items()) if s.get("status") != "complete"}
    if unfinished and not allow_incomplete:
        listed = ", ".join(f"{r} ({status})" for r, status in unfinished.items())
        raise HubError(
            f"not every recipe is complete: {listed}; finish the run (rerun it to resume) or pass --allow-incomplete",
            file=str(manifest.path),
        )


def published_manifest(manifest: Manifest, groups: dict[str, dict[str, list[dict[str, Any]]]]) -> bytes:
    """The manifest as published: pushed recipes and shards only, no per-batch parts, no local paths."""
    recipes = {}
    for recipe, by_group in groups.items():
        state = manifest.recipes[recipe]
        recipes[recipe] = {
            "config_hash": state["config_hash"],
            "config": public_config(state.get("config", {})),
            "status": state.get("status"),
            "started_at": state.get("started_at"),
            "finished_at": state.get("finished_at"),
            "units_total": state.get("units_total"),
            "totals": state.get("totals", {}),
            "shards": [shard for shards in by_group.values() for shard in shards],
        }
    return json.dumps({"format": 1, "recipes": recipes}, indent=1, sort_keys=True).encode("utf-8")


def _local_files(
    out: Path, manifest: Manifest, include_rejected: bool, repo_id: str
) -> tuple[list[PlannedFile], dict[str, dict[str, int]]]:
    """Every file this push publishes, with the manifest's checksums; the card and manifest come last."""
    groups = published_groups(manifest, include_rejected=include_rejected)
    if not groups:
        raise HubError("no finished shards to publish (has any recipe finished?)", file=str(manifest.path))
    files: list[PlannedFile] = []
    configs: dict[str, dict[str, int]] = {}
    for recipe, by_group in groups.items():
        for group, shards in by_group.items():
            name = config_name(recipe, group)
            for shard in shards:
                local = out / shard["path"]
                if not local.is_file() or local.stat().st_size != shard["bytes"]:
                    raise HubError(
                        "shard is missing or differs from the manifest; rerun the recipe to rebuild it", file=str(local)
                    )
                files.append(
                    PlannedFile(shard["path"], shard["bytes"], shard["sha256"], name, shard["rows"], local=local)
                )
            configs[name] = {
                "rows": sum(s["rows"] for s in shards),
                "files": len(shards),
                "bytes": sum(s["bytes"] for s in shards),
            }
    card = str(build_card(out, manifest, include_rejected=include_rejected, repo_id=repo_id)).encode("utf-8")
    problems = validate_card(card.decode("utf-8"))
    if problems:
        raise HubError("the generated dataset card is invalid: " + "; ".join(problems))
    for path, content in ((CARD, card), (MANIFEST, published_manifest(manifest, groups))):
        files.append(PlannedFile(path, len(content), hashlib.sha256(content).hexdigest(), content=content))
    return files, configs


def _git_blob_oid(file: PlannedFile) -> str:
    """The git blob id of a file (how the Hub identifies files it stores outside LFS)."""
    digest = hashlib.sha1(b"blob %d\0" % file.size)
    if file.content is not None:
        digest.update(file.content)
    else:
        with open(file.local, "rb") as handle:  # type: ignore[arg-type]
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _same_as_remote(file: PlannedFile, remote: Any) -> bool:
    if remote is None or remote.size != file.size:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == file.sha256
    return remote.blob_id == _git_blob_oid(file)


def _stale_paths(remote_paths: set[str], files: list[PlannedFile], recipes: set[str]) -> list[str]:
    """Remote shards of the pushed recipes that a config glob would load but this output no longer has."""
    local = {f.path for f in files}
    pattern = re.compile(r"^(?P<recipe>[^/]+)/[^/]+/train-[^/]*\.parquet$")
    return sorted(
        p for p in remote_paths if (m := pattern.match(p)) and m["recipe"] in recipes and p not in local
    )


def _group_of(path: str) -> str:
    recipe, group = path.split("/")[:2]
    return config_name(recipe, group)


def plan_commits(
    uploads: list[PlannedFile],
    deletes: list[str],
    *,
    max_files: int = MAX_FILES_PER_COMMIT,
    max_bytes: int = MAX_BYTES_PER_COMMIT,
) -> list[PlannedCommit]:
    """Pack per-config changes into commits of at most ``max_files`` operations and ``max_bytes`` uploaded.

    Configs are kept whole where they fit; a config that alone exceeds a limit is sliced, with its deletions in
    its last slice (so its data is never missing, only briefly doubled, if the push stops between slices).
    The card and manifest (files without a config) go in the last commit.
    """
    units: dict[str, tuple[list[PlannedFile], list[str]]] = {}
    for file in uploads:
        if file.config is not None:
            units.setdefault(file.config, ([], []))[0].append(file)
    for path in deletes:
        units.setdefault(_group_of(path), ([], []))[1].append(path)
    metadata = [f for f in uploads if f.config is None]

    slices: list[tuple[str, list[PlannedFile], list[str]]] = []
    for name, (files, removed) in sorted(units.items()):
        current: list[PlannedFile] = []
        for file in files:
            if current and (len(current) + 1 > max_files or sum(f.size for f in current) + file.size > max_bytes):
                slices.append((name, current, []))
                current = []
            current.append(file)
        slices.append((name, current, removed))

    commits: list[PlannedCommit] = []
    names: list[list[str]] = []
    for name, files, removed in slices:
        last = commits[-1] if commits else None
        fits = last is not None and (
            len(last.uploads) + len(last.deletes) + len(files) + len(removed) <= max_files
            and last.bytes + sum(f.size for f in files) <= max_bytes
        )
        if fits:
            last.uploads.extend(files)
            last.deletes.extend(removed)
            if name not in names[-1]:
                names[-1].append(name)
        else:
            commits.append(PlannedCommit("", list(files), list(removed)))
            names.append([name])
    if metadata:
        if not commits:
            commits.append(PlannedCommit("", [], []))
            names.append([])
        commits[-1].uploads.extend(metadata)
        names[-1].extend(f.path for f in metadata)
    for i, (commit, listed) in enumerate(zip(commits, names), 1):
        part = f" ({i}/{len(commits)})" if len(commits) > 1 else ""
        commit.title = f"polysynth: publish {', '.join(listed)}{part}"
    return commits


def _scrub(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    return _BEARER.sub(r"\1***", _TOKEN_LIKE.sub("hf_***", text))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if exc.__cause__ is not None:  # e.g. "Error while uploading 'x'" wraps the HTTP error that says why
        text += f" ({' '.join(str(exc.__cause__).split())})"
    return text[:500]


@contextmanager
def _hub_errors(token: str | None, endpoint: str) -> Iterator[None]:
    """Turn Hub client and network errors into one-line HubErrors with the token scrubbed out."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except SynthError:  # ours (HubError, OutputError): already one line and token-free
        raise
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 412:
            message = "the branch changed while pushing (another commit landed); rerun the push to publish on top of it"
        else:
            message = f"Hub request failed ({status}): {_one_line(exc)}"
        # A rerun starts from a fresh listing, so a conflict is as retryable as an outage.
        transient = status is None or status >= 500 or status in (412, 429)
        raise HubError(_scrub(message, token), transient=transient) from None
    except Exception as exc:  # network errors, client-side checks: one line, never a traceback with headers
        message = f"cannot publish to {endpoint}: {type(exc).__name__}: {_one_line(exc)}"
        # The client raises ValueError/TypeError for what a retry cannot fix; the rest is network trouble.
        transient = not isinstance(exc, (ValueError, TypeError, KeyError))
        raise HubError(_scrub(message, token), transient=transient) from None


def push(
    out: Path,
    options: PushOptions,
    *,
    token: str | None = None,
    max_files_per_commit: int = MAX_FILES_PER_COMMIT,
    max_bytes_per_commit: int = MAX_BYTES_PER_COMMIT,
) -> PushResult:
    """Publish the output directory ``out`` as ``options`` say (see the module docstring and :class:`PushOptions`).

    ``options.private`` applies when the repo is created (an existing repo keeps its visibility);
    ``options.revision`` is a branch (created from ``main`` if missing); ``options.create_pr`` opens a pull request
    against it instead of committing to it (later commits of the same push go into that pull request; a push with
    nothing new opens none). ``token``: default ``HF_TOKEN`` or the stored login. ``max_files_per_commit`` and
    ``max_bytes_per_commit`` bound each commit. Raises :class:`HubError` (one line, token-free) on any failure.
    """
    from huggingface_hub import constants

    out = Path(out).resolve()
    repo_id = options.repo_id
    _check_repo_id(repo_id)
    branch = options.revision or constants.DEFAULT_REVISION
    if not (out / MANIFEST).is_file():
        raise HubError("not a polysynth output directory (no manifest.json)", file=str(out))
    endpoint = constants.ENDPOINT
    if not options.dry_run:
        if constants.is_offline_mode():
            raise HubError("HF_HUB_OFFLINE is set: unset it to push (or use --dry-run)")
        token = _resolve_token(token)
    with OutputLock(out):
        manifest = Manifest(out)
        _check_complete(manifest, options.allow_incomplete)
        if options.dry_run:
            files, configs = _local_files(out, manifest, options.include_rejected, repo_id)
            card_path = out / PUSH_DIR / CARD
            atomic_write_bytes(card_path, next(f.content for f in files if f.path == CARD))  # type: ignore[arg-type]
            commits = plan_commits(files, [], max_files=max_files_per_commit, max_bytes=max_bytes_per_commit)
            return PushResult(
                repo_id=repo_id, revision=branch, dry_run=True, configs=configs, files=files, uploads=files,
                deletes=[], commits=commits, remote_checked=False, card_path=card_path,
            )
        with _hub_errors(token, endpoint):
            return _push(out, manifest, options, branch, token, endpoint, max_files_per_commit, max_bytes_per_commit)


def _resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a --dry-run needs none)")
    return token


def _push(
    out: Path,
    manifest: Manifest,
    options: PushOptions,
    branch: str,
    token: str,
    endpoint: str,
    max_files: int,
    max_bytes: int,
) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    repo_id, create_pr = options.repo_id, options.create_pr
    api = HfApi(endpoint=endpoint, token=token, library_name="polysynth")
    try:
        user = api.whoami()["name"]  # first request: a bad token fails here, before any work
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code == 401:
            raise HubError(
                "the Hugging Face token was rejected (401): set a valid HF_TOKEN or run `hf auth login`"
            ) from None
        raise
    files, configs = _local_files(out, manifest, options.include_rejected, repo_id)
    # Not asking for private leaves the visibility to the Hub (an organisation may default to private).
    api.create_repo(repo_id, repo_type="dataset", private=options.private or None, exist_ok=True)
    if branch != constants.DEFAULT_REVISION and not branch.startswith("refs/"):
        api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
    head = api.repo_info(repo_id, repo_type="dataset", revision=branch).sha
    # List the tree at the commit, not the branch name, so the listing and the parent commit agree.
    remote = {
        entry.path: entry
        for entry in api.list_repo_tree(repo_id, repo_type="dataset", revision=head, recursive=True)
        if isinstance(entry, RepoFile)
    }
    uploads = [f for f in files if not _same_as_remote(f, remote.get(f.path))]
    recipes = {f.path.split("/")[0] for f in files if f.config is not None}
    deletes = _stale_paths(set(remote), files, recipes)
    commits = plan_commits(uploads, deletes, max_files=max_files, max_bytes=max_bytes)
    untracked = sorted(p for p in remote if p.endswith(".parquet") and p.split("/")[0] not in recipes)
    result = PushResult(
        repo_id=repo_id, revision=branch, dry_run=False, configs=configs, files=files, uploads=uploads,
        deletes=deletes, commits=commits, remote_checked=True, user=user, untracked=untracked,
    )

    target, parent = branch, head
    for commit in commits:
        operations: list[Any] = []
        for file in commit.uploads:
            if file.local is not None:
                # One hashing pass: it checks the shard against the manifest and spares the client its own.
                if sha256_file(file.local) != file.sha256:
                    raise HubError(
                        "shard changed since the manifest was written; rerun the recipe", file=str(file.local)
                    )
                op = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=str(file.local))
            else:
                op = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=file.content)  # type: ignore[arg-type]
            op.upload_info.sha256 = bytes.fromhex(file.sha256)
            operations.append(op)
        operations += [CommitOperationDelete(path_in_repo=path, is_folder=False) for path in commit.deletes]
        opening_pr = create_pr and result.pr_url is None
        log.info("%s: %d upload(s), %d deletion(s)", commit.title, len(commit.uploads), len(commit.deletes))
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit.title,
            commit_description=f"Published by polysynth ({len(configs)} config(s)); manifest.json has the provenance.",
            repo_type="dataset",
            revision=target,
            create_pr=opening_pr,
            parent_commit=parent,
        )
        result.commit_urls.append(info.commit_url)
        parent = info.oid
        if opening_pr:
            # Later slices of the same push go into the pull request this commit opened.
            result.pr_url, target = info.pr_url, info.pr_revision
    return result

