"""SAP end to end through the CLI and the Prefect flow, on the real default model (CPU)."""

import json
import os
import subprocess
import sys

import polars as pl
import pytest

from synth.paths import DATA_DIR, PROJECT_ROOT

pytestmark = pytest.mark.slow


def _synth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_sap_cli_run_calls_rows_and_rerun(tmp_path):
    out = tmp_path / "out"
    args = ["run", "sap", "--config", str(DATA_DIR / "configs" / "sap.yaml"), "--limit", "2", "--languages", "de,hi", "--out", str(out)]
    first = _synth(*args)
    assert first.returncode == 0, first.stderr[-3000:]

    manifest = json.loads((out / "manifest.json").read_text())
    state = manifest["recipes"]["sap"]
    assert state["status"] == "complete"
    rows = []
    for shard in state["shards"]:
        frame = pl.read_parquet(out / shard["path"])
        assert frame.height == shard["rows"]
        rows += frame.to_dicts()
    # 1 + k calls per passage (2 summaries, 2 x 2 queries), and one more call per question whose first answer
    # failed a check (sampling.candidates: its other candidates come from one call)
    retried = sum(1 for row in rows if len(row["candidate_reasons"] or ()) > 1)
    assert state["totals"]["usage"]["per_step"] == {"summary": 2, "query": 4 + retried}
    lines = (DATA_DIR / "samples" / "wiki_passages.jsonl").read_text().splitlines()[:2]
    passages = [json.loads(line)["id"] for line in lines]
    assert sorted((r["passage_id"], r["lang"]) for r in rows) == sorted((p, l) for p in passages for l in ("de", "hi"))
    assert len({r["id"] for r in rows}) == 4
    for row in rows:
        assert row["recipe"] == "sap" and row["model"].startswith("gemma-3-270m")
        assert "sap/summary.v1" in row["prompt_version"] and json.loads(row["sampling"])["seed"] == 0
        assert row["summary"], "every passage got its summary"
        if row.get("reject_reason") is None:
            assert row["query"] and row["lid_lang"] == row["lang"]
    # the output directory loads with no glue
    scanned = pl.scan_parquet(str(out / "sap" / "*" / "train-*.parquet"), missing_columns="insert").collect()
    assert scanned.height == 4

    second = _synth(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "units generated 0/2" in second.stdout
    again = json.loads((out / "manifest.json").read_text())["recipes"]["sap"]
    assert again["totals"]["usage"]["calls"] == 0 and again["shards"] == state["shards"]


def test_sap_a_language_a_lid_threshold_and_a_template_cost_only_what_they_change(tmp_path):
    """What a user sees when a finished run grows by a language, then gets a stricter LID threshold, then an
    edited query template. The bookkeeping does not depend on the model, so this runs on the tiny test model."""
    import shutil

    import yaml

    from tests.llm_fixtures import tiny_test_model_path

    config = yaml.safe_load((DATA_DIR / "configs" / "sap.yaml").read_text())
    config["input"]["path"] = str(DATA_DIR / "samples" / "wiki_passages.jsonl")
    config["engine"].update(model=str(tiny_test_model_path()), dtype="float32", max_model_len=2048)
    config["sap"].update(summary_max_tokens=8, query_max_tokens=6)
    config["runner"]["batch_size"] = 1
    config["sampling"]["candidates"] = 1  # one call per request: the call counts below are known in advance
    config_path = tmp_path / "sap.yaml"
    config_path.write_text(yaml.safe_dump(config))

    out = tmp_path / "out"
    base = ["run", "sap", "--config", str(config_path), "--limit", "2", "--out", str(out)]
    first = _synth(*base, "--languages", "de")
    assert first.returncode == 0, first.stderr[-3000:]
    # stdout is a pipe: one progress line per batch, and not one library log line on the terminal
    progress_lines = [line for line in first.stdout.splitlines() if line.startswith("sap: units")]
    assert [line.split(" (")[0] for line in progress_lines] == ["sap: units 1/2", "sap: units 2/2"]
    assert first.stderr == ""
    grown = _synth(*base, "--languages", "de,zh")
    assert grown.returncode == 0, grown.stderr[-3000:]
    usage = json.loads((out / "manifest.json").read_text())["recipes"]["sap"]["totals"]["usage"]
    # the summaries and the German queries are stored generations: only the 2 Chinese queries reach the model
    assert usage["per_step"] == {"summary": 0, "query": 2} and usage["reused"] == 2 + 2
    assert "units generated 2/2 · LLM calls 2" in grown.stdout
    rows = [r for shard in json.loads((out / "manifest.json").read_text())["recipes"]["sap"]["shards"]
            for r in pl.read_parquet(out / shard["path"]).to_dicts()]
    assert sorted(r["lang"] for r in rows) == ["de"] * 2 + ["zh"] * 2

    config["lid"]["threshold"] = 0.99
    config_path.write_text(yaml.safe_dump(config))
    refiltered = _synth(*base, "--languages", "de,zh")
    assert refiltered.returncode == 0, refiltered.stderr[-3000:]
    state = json.loads((out / "manifest.json").read_text())["recipes"]["sap"]
    assert state["totals"]["usage"]["calls"] == 0 and state["totals"]["usage"]["reused"] == 2 + 4
    assert sum(state["totals"]["kept"].values()) + sum(state["totals"]["rejected"].values()) == 4
    assert sum(state["totals"]["kept"].values()) <= sum(1 for r in rows if r.get("reject_reason") is None)

    # an edited query template (a copy of prompts/ through POLYSYNTH_PROMPTS_DIR): the summaries are reused,
    # every query is generated again, and no row of the old template stays published
    prompts = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", prompts)
    template = prompts / "sap" / "query_crosslingual.v1.yaml"
    template.write_text(template.read_text().replace("Question", "A question", 1))
    edited = _synth(*base, "--languages", "de,zh", env={"POLYSYNTH_PROMPTS_DIR": str(prompts)})
    assert edited.returncode == 0, edited.stderr[-3000:]
    after = json.loads((out / "manifest.json").read_text())["recipes"]["sap"]
    assert after["totals"]["usage"]["per_step"] == {"summary": 0, "query": 4}
    assert after["config_hash"] != state["config_hash"]
    rows = [r for shard in after["shards"] for r in pl.read_parquet(out / shard["path"]).to_dicts()]
    assert len(rows) == 4 and {r["config_hash"] for r in rows} == {after["config_hash"]}
    assert not any((out / shard["path"]).exists() for shard in state["shards"])
