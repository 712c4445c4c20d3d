"""Nothing lost, nothing doubled: kill -9 at seeded points, resume, compare with an uninterrupted run."""

from collections import Counter

import pytest

from synth.paths import DATA_DIR
from tests.resume_harness import crash_resume_check, finish

ENTITYCS = DATA_DIR / "configs" / "entitycs.yaml"


def _assert_exactly_once(result):
    assert result["kills"] >= 3, "most kill points should land before the run finishes"
    ids = [row_id for _, row_id in result["got"]]
    assert len(ids) == len(set(ids)), f"duplicated ids: {[i for i, n in Counter(ids).items() if n > 1][:5]}"
    assert sorted(result["got"]) == sorted(result["expected"])
    assert not result["temp_files"] and not result["lock_left"]


def test_entitycs_kill_resume_exactly_once(tmp_path):
    overrides = {"input.limit": 300, "runner.batch_size": 10}
    result = crash_resume_check(ENTITYCS, overrides, tmp_path, "entitycs", seed=7, points=6)
    _assert_exactly_once(result)


def test_rerun_of_finished_run_generates_nothing(tmp_path):
    overrides = {"input.limit": 40, "runner.batch_size": 10, "output.dir": str(tmp_path)}
    first = finish(ENTITYCS, overrides)
    second = finish(ENTITYCS, overrides)
    assert first["generated"] == first["total"] == 4
    assert second == {"generated": 0, "total": 4}
    # a larger limit extends the run: only the new batches are generated
    third = finish(ENTITYCS, {**overrides, "input.limit": 60})
    assert third == {"generated": 2, "total": 6}


# --- SAP and COD: the same check with the LLM in the loop ------------------------------------------------------------
# The tiny random Llama keeps each subprocess fast (its output is noise, which is all these tests need: stable
# row ids, each batch done exactly once). Every subprocess still pays vLLM's start (~20 s on 2 cores), so a
# handful of one-record batches keeps each test at a few minutes: kill points land while vLLM generates, while
# parts are written and while the manifest is updated.

SAP = DATA_DIR / "configs" / "sap.yaml"
COD = DATA_DIR / "configs" / "cod.yaml"


def _tiny_engine() -> dict:
    from synth.llm.model import tiny_test_model_path

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
    result = crash_resume_check(SAP, overrides, tmp_path, "sap", seed=2, points=5)  # kills after 0, 1, 4, 5, 6 batches
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
    result = crash_resume_check(COD, overrides, tmp_path, "cod", seed=9, points=5)  # kills after 0, 2, 3, 4, 5 batches
    _assert_exactly_once(result)
    assert len(result["expected"]) == 6  # a row per dialogue
