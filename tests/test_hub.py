"""Publishing: the real ``huggingface_hub`` client (and ``datasets`` reading back) against the Hub stand-in.

Each test points huggingface_hub and datasets at a fresh stand-in (``tests/hub_server.py``) and goes online
for that test only (the conftest makes the hub offline by default). Xet is off: the stand-in serves LFS.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, constants

from synth.publish.card import build_card, validate_card
from synth.publish.hub import HubError, PlannedFile, PushOptions, plan_commits, push
from synth.store.manifest import Manifest
from tests.hub_server import HubStandIn
from tests.test_card import make_output

# huggingface_hub's LFS upload passes a file as `data=`, which its HTTP client deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_StandInSecret0123456789abcdef"
REPO = "org/polysynth-sap"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A stand-in Hub, with huggingface_hub and datasets online and pointed at it, and HF_TOKEN set."""
    with HubStandIn(token=TOKEN) as server:
        endpoint = server.endpoint
        # huggingface_hub reads these at import time: patch the module constants it consults per call.
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(constants, "HF_URL_HOSTS", frozenset(constants.HF_URL_HOSTS | {"127.0.0.1"}))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        # A developer's own `hf auth login` must never be used (or needed) here.
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-token"))
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", endpoint)
        datasets_url = endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
        monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", datasets_url)
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


def _parquet_paths(files: dict[str, bytes]) -> set[str]:
    return {path for path in files if path.endswith(".parquet")}


def _local_shards(out: Path, *, rejected: bool = False) -> set[str]:
    return {s["path"] for s in Manifest(out).recipes["sap"]["shards"] if rejected or s["group"] != "_rejected"}


def _every_file_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_push_then_load_back_through_the_hub(hub, tmp_path):
    out = tmp_path / "out"
    make_output(out, languages=("de", "hi"), rows=5, rejected=2)
    result = push(out, PushOptions(repo_id=REPO))
    assert result.user == "tester" and len(result.commit_urls) == 1
    remote = hub.files(REPO)
    # shards of kept rows, the card and the provenance manifest; no rejected rows, no .work/.lock/.push
    assert _parquet_paths(remote) == _local_shards(out)
    assert set(remote) == _local_shards(out) | {".gitattributes", "README.md", "manifest.json"}
    for path in _local_shards(out):
        assert remote[path] == (out / path).read_bytes()
    card = remote["README.md"].decode()
    assert card == str(build_card(out, Manifest(out), include_rejected=False, repo_id=REPO))
    assert validate_card(card) == [] and "sap-rejected" not in card
    DatasetCard(card).validate(repo_type="dataset")  # huggingface_hub's own check: POST /api/validate-yaml
    published = json.loads(remote["manifest.json"])
    assert str(out) not in remote["manifest.json"].decode() and "batches" not in published["recipes"]["sap"]
    assert {s["group"] for s in published["recipes"]["sap"]["shards"]} == {"de", "hi"}

    for config, lang in (("sap-de", "de"), ("sap-hi", "hi")):
        loaded = datasets.load_dataset(REPO, config, split="train", cache_dir=str(tmp_path / "cache"))
        local = [pq.read_table(out / p) for p in sorted(_local_shards(out)) if f"/{lang}/" in p]
        expected = sorted((row for t in local for row in t.to_pylist()), key=lambda r: r["id"])
        assert sorted(loaded.to_list(), key=lambda r: r["id"]) == expected
    with pytest.raises(ValueError, match="sap-rejected"):
        datasets.load_dataset(REPO, "sap-rejected", split="train", cache_dir=str(tmp_path / "cache"))


def test_second_push_sends_nothing(hub, tmp_path):
    make_output(tmp_path, rows=5, rejected=2)
    push(tmp_path, PushOptions(repo_id=REPO, include_rejected=True))
    history = hub.history(REPO)
    hub.reset_requests()
    again = push(tmp_path, PushOptions(repo_id=REPO, include_rejected=True))
    assert again.uploads == [] and again.deletes == [] and again.commits == [] and again.commit_urls == []
    assert hub.count("preupload", "lfs_batch", "lfs_upload", "commit", "validate_yaml") == 0
    assert hub.history(REPO) == history
    assert "nothing to commit" in again.describe()


def test_commit_failure_then_retry_converges(hub, tmp_path):
    make_output(tmp_path, rows=5, rejected=2)
    hub.fail_next("commit")
    with pytest.raises(HubError) as failed:
        push(tmp_path, PushOptions(repo_id=REPO))
    assert failed.value.transient and "\n" not in str(failed.value)
    assert _parquet_paths(hub.files(REPO)) == set()  # nothing committed
    uploaded = hub.count("lfs_upload")
    assert uploaded == len(_local_shards(tmp_path))
    hub.reset_requests()
    push(tmp_path, PushOptions(repo_id=REPO))
    assert hub.count("lfs_upload") == 0  # the Hub kept the LFS objects of the failed attempt
    assert hub.count("commit") == 1
    assert _parquet_paths(hub.files(REPO)) == _local_shards(tmp_path)


def test_push_killed_between_commits_converges(hub, tmp_path):
    """A push in another process is SIGKILLed while its second commit is in flight; a rerun finishes the job."""
    make_output(tmp_path, languages=("de", "hi", "sw"), rows=5, rejected=0, shard_rows=3)  # 2 shards per config
    script = (
        "from pathlib import Path; from synth.publish.hub import PushOptions, push; "
        f"push(Path({str(tmp_path)!r}), PushOptions(repo_id={REPO!r}), max_files_per_commit=2)"
    )
    env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1", HF_TOKEN=TOKEN,
               HF_HOME=str(tmp_path / "hf-home"))
    second_commit = hub.hold_next("commit", after=1)
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert second_commit.wait(timeout=120), process.communicate(timeout=30)[0].decode()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        hub.release("commit")  # the held commit fails without effect: the client died before its answer
    assert hub.history(REPO)[0] == "polysynth: publish sap-de (1/3)"
    assert _parquet_paths(hub.files(REPO)) == {p for p in _local_shards(tmp_path) if "/de/" in p}
    assert (tmp_path / ".lock").exists()  # left by the killed push: the rerun takes the stale lock over
    hub.reset_requests()
    result = push(tmp_path, PushOptions(repo_id=REPO), max_files_per_commit=2)
    assert {f.config for f in result.uploads if f.config} == {"sap-hi", "sap-sw"}
    assert hub.count("lfs_upload") == 2  # sw only: hi's LFS objects reached the Hub before the kill
    assert _parquet_paths(hub.files(REPO)) == _local_shards(tmp_path)
    assert set(hub.files(REPO)) == _local_shards(tmp_path) | {".gitattributes", "README.md", "manifest.json"}


def test_concurrent_commit_fails_the_push_instead_of_being_overwritten(hub, tmp_path, monkeypatch):
    from huggingface_hub import CommitOperationAdd, HfApi

    make_output(tmp_path, languages=("de",), rows=2, rejected=0)
    listing = HfApi.list_repo_tree

    def listing_then_someone_commits(self, *args, **kwargs):
        entries = list(listing(self, *args, **kwargs))
        other = HfApi(endpoint=hub.endpoint, token=TOKEN)
        other.create_commit(REPO, [CommitOperationAdd("notes.md", b"hi")], commit_message="elsewhere", repo_type="dataset")
        return entries

    monkeypatch.setattr(HfApi, "list_repo_tree", listing_then_someone_commits)
    with pytest.raises(HubError, match="branch changed while pushing") as error:
        push(tmp_path, PushOptions(repo_id=REPO))
    assert error.value.transient and hub.history(REPO)[0] == "elsewhere"
    monkeypatch.setattr(HfApi, "list_repo_tree", listing)
    push(tmp_path, PushOptions(repo_id=REPO))  # a rerun publishes on top of the other commit
    assert {"notes.md", "README.md"} <= set(hub.files(REPO))


def test_token_missing_is_one_line_and_sends_nothing(hub, tmp_path, monkeypatch):
    make_output(tmp_path, languages=("de",), rows=2, rejected=0)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError) as error:
        push(tmp_path, PushOptions(repo_id=REPO))
    message = str(error.value)
    assert "\n" not in message and "HF_TOKEN" in message and "hf auth login" in message
    assert hub.requests == []


def test_invalid_token_is_rejected_before_any_work(hub, tmp_path, monkeypatch):
    make_output(tmp_path, languages=("de",), rows=2, rejected=0)
    wrong = "hf_WrongToken9876543210zyxwvu"
    monkeypatch.setenv("HF_TOKEN", wrong)
    with pytest.raises(HubError, match=r"token was rejected \(401\)") as error:
        push(tmp_path, PushOptions(repo_id=REPO))
    assert wrong not in str(error.value) and "\n" not in str(error.value)
    assert [r.kind for r in hub.requests] == ["whoami"]


def test_token_never_appears_in_outputs_logs_or_errors(hub, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    make_output(out, rows=4, rejected=1)
    # A server error that echoes the credentials must come out scrubbed.
    hub.fail_next("commit", message=f"bad request from Bearer {TOKEN} ({TOKEN})")
    with pytest.raises(HubError) as error:
        push(out, PushOptions(repo_id=REPO))
    assert TOKEN not in str(error.value) and "***" in str(error.value)
    # (The HTTP library's own debug log shows that echoing response as received: not ours to scrub.)
    caplog.clear()
    capfd.readouterr()
    result = push(out, PushOptions(repo_id=REPO, include_rejected=True))
    texts = [
        str(error.value),
        json.dumps(result.as_dict()),
        result.describe(),
        result.markdown(),
        caplog.text,
        *capfd.readouterr(),
        _every_file_text(out),
        *(content.decode("latin-1") for content in hub.files(REPO).values()),
    ]
    assert [i for i, text in enumerate(texts) if TOKEN in text] == []


def test_dry_run_touches_no_network_and_needs_no_token(hub, tmp_path, monkeypatch):
    make_output(tmp_path, rows=5, rejected=2)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # any request would raise
    result = push(tmp_path, PushOptions(repo_id=REPO, dry_run=True, include_rejected=True))
    assert hub.requests == []
    assert result.dry_run and not result.remote_checked and result.commit_urls == []
    assert {f.path for f in result.uploads} == _local_shards(tmp_path, rejected=True) | {"README.md", "manifest.json"}
    card = (tmp_path / ".push" / "README.md").read_text()
    assert card == result.card_path.read_text() and "sap-rejected" in card
    text = result.describe(files=True)
    needles = ("dry run", "config sap-de: 5 rows in 2 file(s)", "config sap-rejected: 4 rows", "commit 1/1",
               "    + sap/de/train-", "    + README.md (", str(result.card_path))
    assert all(needle in text for needle in needles), text
    assert json.loads(json.dumps(result.as_dict()))["configs"]["sap-hi"]["rows"] == 5
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set"):  # a real push says why it cannot go online
        push(tmp_path, PushOptions(repo_id=REPO))
    assert hub.requests == []


def test_incomplete_run_is_refused_unless_allowed(hub, tmp_path):
    make_output(tmp_path, languages=("de",), rows=3, rejected=0)
    manifest = Manifest(tmp_path)
    manifest.set_status("cod", "running")  # a second recipe still running in the same output
    with pytest.raises(HubError, match=r"not every recipe is complete: cod \(running\).*--allow-incomplete"):
        push(tmp_path, PushOptions(repo_id=REPO))
    with pytest.raises(HubError, match="not every recipe is complete"):
        push(tmp_path, PushOptions(repo_id=REPO, dry_run=True))
    assert hub.requests == []
    result = push(tmp_path, PushOptions(repo_id=REPO, allow_incomplete=True))  # publishes what is finished: sap
    assert list(result.configs) == ["sap-de"]
    assert _parquet_paths(hub.files(REPO)) == _local_shards(tmp_path)


def test_running_recipe_without_shards_has_nothing_to_publish(hub, tmp_path):
    make_output(tmp_path, languages=("de",), rows=3, rejected=0, finish=False)
    with pytest.raises(HubError, match="no finished shards"):
        push(tmp_path, PushOptions(repo_id=REPO, allow_incomplete=True))


def test_changed_output_replaces_stale_remote_shards(hub, tmp_path):
    big, small = tmp_path / "big", tmp_path / "small"
    make_output(big, languages=("de", "hi"), rows=5, rejected=2, shard_rows=3)  # of-00002 shards
    push(big, PushOptions(repo_id=REPO, include_rejected=True))
    make_output(small, languages=("de",), rows=2, rejected=1, shard_rows=3)  # of-00001, no hi
    result = push(small, PushOptions(repo_id=REPO))  # rejected rows no longer included either
    remote = hub.files(REPO)
    assert _parquet_paths(remote) == _local_shards(small)
    assert set(result.deletes) == _local_shards(big, rejected=True)
    assert len(result.commit_urls) == 1  # new shards and deletions of a config land together
    card = remote["README.md"].decode()
    assert "sap-hi" not in card and "sap-rejected" not in card


def test_data_of_other_recipes_is_kept_and_reported(hub, tmp_path):
    from huggingface_hub import CommitOperationAdd, HfApi

    make_output(tmp_path, languages=("de",), rows=2, rejected=0)
    push(tmp_path, PushOptions(repo_id=REPO))
    foreign = "cod/ar/train-00000-of-00001.parquet"
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_commit(REPO, [CommitOperationAdd(foreign, b"PAR1 not ours")], commit_message="x", repo_type="dataset")
    result = push(tmp_path, PushOptions(repo_id=REPO))
    assert result.untracked == [foreign] and result.deletes == [] and foreign in hub.files(REPO)
    assert "1 data file(s) of recipes not in this output" in result.describe()


def test_large_push_is_split_into_config_commits(hub, tmp_path):
    make_output(tmp_path, languages=("de", "hi", "sw"), rows=5, rejected=0, shard_rows=3)  # 2 shards each
    result = push(tmp_path, PushOptions(repo_id=REPO), max_files_per_commit=4)
    titles = hub.history(REPO)[: len(result.commits)][::-1]
    assert [c.title for c in result.commits] == titles == [
        "polysynth: publish sap-de, sap-hi (1/2)",  # whole configs per commit
        "polysynth: publish sap-sw, README.md, manifest.json (2/2)",  # the card comes last
    ]
    assert _parquet_paths(hub.files(REPO)) == _local_shards(tmp_path)


def test_plan_commits_slices_only_oversized_configs():
    def shard(config: str, i: int, size: int = 10) -> PlannedFile:
        recipe, lang = config.split("-")
        return PlannedFile(f"{recipe}/{lang}/train-{i:05d}-of-00009.parquet", size, f"{i:064x}", config)

    uploads = [shard("sap-de", i) for i in range(5)] + [shard("sap-hi", 0)]
    uploads.append(PlannedFile("README.md", 5, "0" * 64))
    commits = plan_commits(uploads, ["sap/de/train-00000-of-00001.parquet"], max_files=3, max_bytes=10**6)
    assert [[f.path.split("/")[-1] if f.config is None else f.config for f in c.uploads] for c in commits] == [
        ["sap-de"] * 3,
        ["sap-de", "sap-de"],  # + the deletion: 3 operations
        ["sap-hi", "README.md"],
    ]
    assert commits[0].deletes == [] and commits[1].deletes == ["sap/de/train-00000-of-00001.parquet"]
    by_bytes = plan_commits([shard("sap-de", 0, 60), shard("sap-de", 1, 60)], [], max_files=10, max_bytes=100)
    assert [len(c.uploads) for c in by_bytes] == [1, 1]


def test_revision_branch_and_pull_request(hub, tmp_path):
    make_output(tmp_path, languages=("de", "hi"), rows=5, rejected=0)
    push(tmp_path, PushOptions(repo_id=REPO, revision="dev"))
    assert _parquet_paths(hub.files(REPO, "dev")) == _local_shards(tmp_path)
    assert _parquet_paths(hub.files(REPO, "main")) == set()
    result = push(tmp_path, PushOptions(repo_id=REPO, create_pr=True), max_files_per_commit=2)
    assert len(result.commits) > 1 and result.pr_url.endswith("/discussions/1")
    assert _parquet_paths(hub.files(REPO, "refs/pr/1")) == _local_shards(tmp_path)  # every slice in one PR
    assert _parquet_paths(hub.files(REPO, "main")) == set()
    assert hub.repos[("dataset", REPO)].prs == 1


def test_private_repo_and_bad_repo_id(hub, tmp_path):
    make_output(tmp_path, languages=("de",), rows=2, rejected=0)
    push(tmp_path, PushOptions(repo_id=REPO, private=True))
    assert hub.repos[("dataset", REPO)].private
    for bad in ("no-namespace", "a/b/c", "org/bad name"):
        with pytest.raises(HubError, match="repo id"):
            push(tmp_path, PushOptions(repo_id=bad, dry_run=True))


def test_not_an_output_directory(tmp_path):
    with pytest.raises(HubError, match="no manifest.json"):
        push(tmp_path, PushOptions(repo_id=REPO, dry_run=True))


def test_push_real_entitycs_output(hub, tmp_path):
    """The EntityCS recipe (no LLM) on real sentences, pushed and read back."""
    # The shipped sample the config reads: its absence is a failure, never a skip.
    assert (ROOT / "data" / "samples" / "wiki_sentences.jsonl").is_file()
    from synth.config_file import load_config
    from synth.pipeline import run_recipe

    out = tmp_path / "entitycs"
    config = load_config(
        ROOT / "data" / "configs" / "entitycs.yaml", overrides={"input.limit": 50, "output.dir": str(out)}
    )
    summary = run_recipe(config)
    result = push(out, PushOptions(repo_id="org/polysynth-entitycs"))
    assert result.configs and _parquet_paths(hub.files("org/polysynth-entitycs")) == {
        s["path"] for s in summary.shards if s["group"] != "_rejected"
    }
    name = next(iter(result.configs))
    lang = name.split("-", 1)[1]
    loaded = datasets.load_dataset("org/polysynth-entitycs", name, split="train", cache_dir=str(tmp_path / "cache"))
    expected = [r for s in summary.shards if s["group"] == lang for r in pq.read_table(out / s["path"]).to_pylist()]
    assert sorted(loaded.to_list(), key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    assert validate_card(hub.files("org/polysynth-entitycs")["README.md"].decode()) == []


@pytest.mark.slow
def test_publish_flow_pushes_and_attaches_a_token_free_artifact(hub, tmp_path, monkeypatch):
    """The Prefect flow on the ephemeral server: a push, its markdown artifact, and a rerun that sends nothing."""
    from prefect.artifacts import Artifact
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.publish import publish_flow

    make_output(tmp_path, rows=4, rejected=1)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        summary = publish_flow(out=str(tmp_path), options=PushOptions(repo_id=REPO))
        artifact = Artifact.get("publish-org-polysynth-sap")
        again = publish_flow(out=str(tmp_path), options=PushOptions(repo_id=REPO))
    assert summary["commit_urls"] and {u["path"] for u in summary["uploads"]} >= _local_shards(tmp_path)
    assert again["uploads"] == [] and again["commit_urls"] == []
    assert artifact is not None and "Pushed to `org/polysynth-sap`" in artifact.data
    assert "| `sap-de` | 4 |" in artifact.data
    assert TOKEN not in artifact.data and TOKEN not in json.dumps(summary)
    assert _parquet_paths(hub.files(REPO)) == _local_shards(tmp_path)


@pytest.mark.slow
def test_generate_and_publish_flow_runs_the_recipe_then_pushes(hub, tmp_path, monkeypatch):
    """EntityCS (no LLM) as a subflow, then its output pushed: the repo serves exactly the run's kept shards."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.publish import generate_and_publish_flow
    from synth.config_file import load_config

    config = load_config(
        ROOT / "data" / "configs" / "entitycs.yaml",
        overrides={"input.limit": 20, "output.dir": str(tmp_path / "entitycs")},
    )
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        summary = generate_and_publish_flow(config=config, options=PushOptions(repo_id="org/polysynth-entitycs"))
    kept = {s["path"] for s in summary["run"]["shards"] if s["group"] != "_rejected"}
    assert kept and _parquet_paths(hub.files("org/polysynth-entitycs")) == kept
    assert summary["publish"]["commit_urls"]
