"""Watching a run: the live display on a terminal, quiet logs, and the progress artifact a Prefect UI shows.

The SAP runs use the tiny test model: what is checked is what moves on screen, not what the model writes.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from synth.report import progress
from synth.paths import DATA_DIR, PROJECT_ROOT
from tests.prefect_server import PrefectServer, prefect_api, prefect_server  # noqa: F401  (fixtures)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _tiny_sap_config(tmp_path: Path, batch_size: int, query_max_tokens: int = 6) -> Path:
    from tests.llm_fixtures import tiny_test_model_path

    config = yaml.safe_load((DATA_DIR / "configs" / "sap.yaml").read_text())
    config["input"]["path"] = str(DATA_DIR / "samples" / "wiki_passages.jsonl")
    config["engine"].update(model=str(tiny_test_model_path()), dtype="float32", max_model_len=2048)
    config["sap"].update(summary_max_tokens=8, query_max_tokens=query_max_tokens)
    config["runner"]["batch_size"] = batch_size
    config["sampling"]["candidates"] = 1  # one answer per request: the answer counts below are known in advance
    path = tmp_path / "sap.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **extra}


def _run_in_terminal(argv: list[str], timeout_s: float = 600) -> tuple[int, str, str]:
    """Run ``argv`` with stdout on a pseudo-terminal (stderr on a pipe); returns (exit code, terminal, stderr)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=follower, stderr=subprocess.PIPE, env=_env())
    os.close(follower)
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)
    reader.start()
    screen = bytearray()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=60)
    reader.join(timeout=60)
    os.close(leader)
    return process.returncode, screen.decode("utf-8", errors="replace"), b"".join(stderr).decode()


@pytest.mark.slow
def test_a_run_on_a_terminal_shows_answers_arriving_inside_a_batch_and_ends_at_100_percent(tmp_path):
    # One batch of 3 passages x 3 languages: 3 summaries, then 9 queries long enough to be drawn in between.
    config = _tiny_sap_config(tmp_path, batch_size=3, query_max_tokens=32)
    out = tmp_path / "out"
    code, screen, stderr = _run_in_terminal(
        [sys.executable, "-m", "flows.cli", "run", "sap", "--config", str(config), "--limit", "3",
         "--languages", "de,zh,hi", "--out", str(out)]
    )
    assert code == 0, screen[-2000:] + stderr[-2000:]
    frames = [line for line in re.split(r"[\r\n]", ANSI.sub("", screen)) if re.search(r"units \d+/\d+ \(", line)]
    inside_first_batch = {re.search(r"answers (\d+)", f).group(1) for f in frames if "units 0/3" in f}
    assert {"0", "3"} <= inside_first_batch, frames
    assert "units 3/3 (100%)" in frames[-1] and "answers 12" in frames[-1], frames[-1]
    # no library log line reached the terminal or stderr: they are in OUT/logs/
    assert not re.search(r"\b(INFO|WARNING)\b", ANSI.sub("", screen) + stderr), screen[-3000:] + stderr
    [log] = (out / "logs").iterdir()
    text = log.read_text()
    assert "vllm" in text and "prefect" in text


def test_verbose_puts_prefects_log_lines_on_the_terminal_too(tmp_path):
    def run(*extra: str) -> subprocess.CompletedProcess:
        out = tmp_path / ("out" + "".join(extra))
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", "entitycs", "--config", str(DATA_DIR / "configs" / "entitycs.yaml"),
             "--limit", "20", "--out", str(out), *extra],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, env=_env(),
        )

    quiet, verbose = run(), run("--verbose")
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr[-2000:] + verbose.stderr[-2000:]
    assert "Finished in state Completed" not in quiet.stdout + quiet.stderr
    assert "Finished in state Completed" in verbose.stderr


def test_progress_line_counts_and_eta():
    state = progress.RunProgress("sap", units_total=10, units_pending=8)
    progress.run_started(state)
    progress.answers_arrived(5)
    assert state.eta_s() is None and "units 0/8 (0%)" in state.line() and "answers 5" in state.line()
    progress.batch_finished(state, units=3, failed=1, kept=6, rejected=2, output_tokens=90, generate_s=3.0)
    line = state.line()
    assert "units 4/8 (50%) [2 already done]" in line and "kept 6" in line and "failed 1" in line
    assert "30.0 tok/s" in line and state.eta_s() > 0
    progress.run_finished(state)
    assert state.eta_s() is None, "a run that stopped short has no ETA"
    progress.answers_arrived(7)
    assert state.answers == 5, "answers after the run are nobody's"


@pytest.mark.slow
def test_the_prefect_progress_artifact_moves_during_the_flow_run(prefect_api: PrefectServer, tmp_path: Path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    config = _tiny_sap_config(tmp_path, batch_size=1)
    run = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", "sap", "--config", str(config), "--limit", "6", "--languages", "de",
         "--out", str(tmp_path / "out")],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**prefect_api.env()),
    )
    seen: list[tuple[float, str]] = []
    wanted = ArtifactFilter(key=ArtifactFilterKey(any_=["polysynth-sap-progress"]))
    with get_client(sync_client=True) as client:
        while run.poll() is None:
            for artifact in client.read_artifacts(artifact_filter=wanted):
                if not seen or seen[-1] != (artifact.data, artifact.description):
                    seen.append((artifact.data, artifact.description))
            time.sleep(0.5)
        [artifact] = client.read_artifacts(artifact_filter=wanted)
    stdout, stderr = run.communicate()
    assert run.returncode == 0, stderr[-3000:]
    assert any(0 < value < 100 for value, _ in seen), seen
    assert artifact.data == 100 and "units 6/6 (100%)" in artifact.description
