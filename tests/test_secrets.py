"""Secrets never leak: with ``HF_TOKEN`` and the engine's API key set, run a pipeline, a report and pushes, then
look for the secrets everywhere something could be written.

The run is ``synth run sap`` through its Prefect flow (a fresh ``PREFECT_HOME``, so its database holds exactly this
run's flow parameters, logs and artifacts) against a fake OpenAI-compatible engine that must receive the API key;
then ``synth report``, ``synth push --dry-run``, a real ``synth push`` to the Hub stand-in of ``tests/hub_server.py``
and a push with a wrong token (whose error message must not echo it). Searched, as bytes: every file under OUT
(manifest, card, .push/ card, report, Parquet shards and parts), every file under PREFECT_HOME (SQLite database
and WAL: artifacts, logs, parameters), every file the stand-in Hub received, and every command's stdout/stderr.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bad_inputs.cli_harness import CORPUS, cli_env, sap_config_text, synth_cli
from tests.hub_server import HubStandIn
from tests.llm_fixtures import FakeOpenAIServer

pytestmark = pytest.mark.slow

HF_TOKEN = "hf_secretPolysynthLeakCheck0123456789abcdefXYZ"
API_KEY = "sk-secretPolysynthEngineKey0123456789"
SECRETS = (HF_TOKEN, API_KEY, HF_TOKEN[3:], API_KEY[3:])  # also without their prefixes
REPO = "org/polysynth-secrets"


def _leaks(data: bytes) -> list[str]:
    return [secret for secret in SECRETS if secret.encode() in data]


def _files_with_secrets(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            leaks = _leaks(path.read_bytes())
            if leaks:
                found[str(path)] = leaks
    return found


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


@pytest.mark.timeout(600)
def test_no_secret_in_outputs_logs_artifacts_or_published_files(tmp_path):
    out, prefect_home = tmp_path / "out", tmp_path / "prefect"
    engine = FakeOpenAIServer()
    hub = HubStandIn(token=HF_TOKEN).start()
    try:
        config = tmp_path / "sap.yaml"
        config.write_text(sap_config_text(CORPUS / "sap" / "smaller_than_batch.jsonl", engine.url), encoding="utf-8")
        env = cli_env(
            HF_TOKEN=HF_TOKEN,
            OPENAI_API_KEY=API_KEY,
            PREFECT_HOME=str(prefect_home),
            HF_HOME=str(tmp_path / "hf-home"),
        )
        hub_env = {**env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"}
        procs = [
            _ok(synth_cli("run", "sap", "--config", str(config), "--out", str(out), env=env, timeout=400)),
            _ok(synth_cli("report", str(out), env=env)),
            _ok(synth_cli("push", str(out), "--repo-id", REPO, "--dry-run", "--include-rejected", env=env)),
            _ok(synth_cli("push", str(out), "--repo-id", REPO, "--include-rejected", env=hub_env)),
        ]
        wrong = synth_cli("push", str(out), "--repo-id", REPO, "--include-rejected", env={**hub_env, "HF_TOKEN": "hf_" + API_KEY}, timeout=120)
        published = hub.files(REPO)
    finally:
        hub.stop()
        engine.close()

    # the secrets were live: the engine got the key, the Hub accepted the token, the wrong token was refused
    assert {seen.headers.get("authorization") for seen in engine.posts()} == {f"Bearer {API_KEY}"}
    assert any(path.endswith(".parquet") for path in published) and "README.md" in published
    assert wrong.returncode == 2 and "Traceback" not in wrong.stdout + wrong.stderr
    assert "401" in wrong.stderr, wrong.stderr
    assert (out / ".push" / "README.md").is_file() and (out / "report" / "index.html").is_file()
    assert list(out.glob("sap/*/train-*.parquet")) and list(out.glob(".polysynth/sap/segments/*.parquet"))
    stored = b"".join(path.read_bytes() for path in prefect_home.glob("prefect.db*"))
    assert b"polysynth sap run summary" in stored, "the flow's artifact is not in the searched database"

    for proc in procs + [wrong]:
        assert not _leaks((proc.stdout + proc.stderr).encode()), f"{proc.args[3:5]} printed a secret"
    assert _files_with_secrets(out) == {}
    assert _files_with_secrets(prefect_home) == {}
    assert {path: _leaks(data) for path, data in published.items() if _leaks(data)} == {}
