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
