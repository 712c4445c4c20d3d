"""Two runs at once: into one output directory the second is refused (naming the first's pid); into two
directories both complete with the same rows. EntityCS runs through ``synth run`` (real Prefect flows, no LLM).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from synth.config_file import load_config
from synth.errors import OutputError
from synth.pipeline import RecipeRun
from tests.bad_inputs.cli_harness import CONFIGS, error_line, shard_rows, start_cli, synth_cli, temp_files

pytestmark = pytest.mark.slow


def _args(out: Path, limit: int, batch_size: int) -> list[str]:
    # runner.batch_size has no flag: a small config beside the output sets it
    config = out.parent / f"{out.name}.yaml"
    text = (CONFIGS / "entitycs.yaml").read_text(encoding="utf-8")
    text = text.replace("../samples/", str(CONFIGS.parent / "samples") + "/").replace("batch_size: 256", f"batch_size: {batch_size}")
    config.write_text(text, encoding="utf-8")
    return ["run", "entitycs", "--config", str(config), "--out", str(out), "--limit", str(limit)]


def _wait_for(predicate, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the first run ended early:\n{proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting for the first run"
        time.sleep(0.05)


@pytest.mark.timeout(400)
def test_second_run_into_the_same_output_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "out"
    # 200 sentences in batches of 5: 40 Prefect tasks, so the first run holds the lock for a while
    first = start_cli(*_args(out, 200, 5))
    try:
        _wait_for(lambda: (out / ".lock").exists() and (out / ".lock").read_text().strip(), first, timeout=240)
        holder = json.loads((out / ".lock").read_text())
        assert holder["pid"] == first.pid
        second = synth_cli(*_args(out, 200, 5), timeout=120)
        line = error_line(second)
        assert f"another run (pid {first.pid} on host " in line and "is writing this output directory" in line and str(out) in line
        # the library refuses too (the flow's own check, for callers that skip the CLI's pre-flight)
        config = load_config(out.parent / "out.yaml", overrides={"output.dir": str(out), "input.limit": 200})
        with pytest.raises(OutputError, match=f"pid {first.pid}"):
            with RecipeRun(config):
                pass
        assert json.loads((out / ".lock").read_text()) == holder, "the refused run touched the lock"
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipes"]["entitycs"]["status"] == "complete" and manifest["recipes"]["entitycs"]["units_total"] == 200
    ids = [row["id"] for row in shard_rows(out, "entitycs")]
    assert len(ids) == len(set(ids)) > 0
    assert not (out / ".lock").read_text() and not temp_files(out)  # the lock file stays, released and empty


@pytest.mark.timeout(400)
def test_two_runs_into_different_directories_both_complete(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [start_cli(*_args(out, 100, 25)) for out in outs]
    try:
        results = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stdout + stderr
    a, b = (sorted((r["_group"], r["id"], r["cs_sentence"]) for r in shard_rows(out, "entitycs")) for out in outs)
    assert a == b and len(a) > 0
    for out in outs:
        state = json.loads((out / "manifest.json").read_text())["recipes"]["entitycs"]
        assert state["status"] == "complete" and state["units_total"] == 100
        assert not (out / ".lock").read_text() and not temp_files(out)
