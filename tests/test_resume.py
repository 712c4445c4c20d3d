"""Nothing lost, nothing doubled: kill -9 at seeded points, resume, compare with an uninterrupted run."""

from collections import Counter

import pytest

from synth.paths import DATA_DIR
from tests.resume_harness import crash_resume_check, finish

ENTITYCS = DATA_DIR / "configs" / "entitycs.yaml"


def _assert_exactly_once(result, min_kills=3):
    assert result["kills"] >= min_kills, "most kill moments should land before the run finishes"
    assert all(result["whole_after_each_kill"]), "a kill left a published file missing"
    ids = [row_id for _, row_id in result["got"]]
    assert len(ids) == len(set(ids)), f"duplicated ids: {[i for i, n in Counter(ids).items() if n > 1][:5]}"
    assert sorted(result["got"]) == sorted(result["expected"])
    assert not result["temp_files"]


def test_entitycs_kill_resume_exactly_once(tmp_path):
    # batch size 7 over 400 records: batches never line up with round limits
    overrides = {"runner.batch_size": 7}
    result = crash_resume_check(ENTITYCS, overrides, tmp_path, "entitycs", seed=7, points=6, finalize_points=3)
    _assert_exactly_once(result)
    assert result["finalize_kills"] >= 2, "kills inside finalize should land"


def test_rerun_of_finished_run_generates_nothing(tmp_path):
    overrides = {"input.limit": 40, "runner.batch_size": 10, "output.dir": str(tmp_path)}
    first = finish(ENTITYCS, overrides)
    second = finish(ENTITYCS, overrides)
    assert first["generated"] == first["total"] == 40
    assert second == {"generated": 0, "total": 40}
    # a larger limit, not a multiple of the batch size: only the new records are generated
    third = finish(ENTITYCS, {**overrides, "input.limit": 67})
    assert third == {"generated": 27, "total": 67}


# --- SAP and COD: the same check with the LLM in the loop ------------------------------------------------------------
# The tiny random Llama keeps each subprocess fast (its output is noise, which is all these tests need: stable
# row ids, each batch done exactly once). Every subprocess still pays vLLM's start (~20 s on 2 cores), so a
# handful of one-record batches keeps each test at a few minutes: kill points land while vLLM generates, while
# segments are committed and while shards are swapped in.

SAP = DATA_DIR / "configs" / "sap.yaml"
COD = DATA_DIR / "configs" / "cod.yaml"


def _tiny_engine() -> dict:
    from tests.llm_fixtures import tiny_test_model_path

    return {"engine.model": str(tiny_test_model_path()), "engine.dtype": "float32", "engine.max_model_len": 2048}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sap_kill_resume_exactly_once(tmp_path):
    overrides = {
        **_tiny_engine(),
        "input.limit": 6,
        "runner.batch_size": 1,
        "languages": ["de", "zh"],
        "sap.summary_max_tokens": 8,
        "sap.query_max_tokens": 4,
    }
    result = crash_resume_check(SAP, overrides, tmp_path, "sap", seed=2, points=5, finalize_points=1)
    _assert_exactly_once(result)
    assert len(result["expected"]) == 6 * 2  # a row per passage and language, kept or rejected


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cod_kill_resume_exactly_once(tmp_path):
    overrides = {
        **_tiny_engine(),
        "input.limit": 6,
        "runner.batch_size": 1,
        "languages": ["id"],
        "cod.max_turns": 2,
        "cod.turn_max_tokens": 8,
        "cod.max_attempts": 1,
    }
    result = crash_resume_check(COD, overrides, tmp_path, "cod", seed=9, points=5)
    _assert_exactly_once(result)
    assert len(result["expected"]) == 6  # a row per dialogue
