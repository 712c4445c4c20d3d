"""Scale-out: the same run on the thread runner and on a local Dask cluster writes exactly the same rows.

Uses the entitycs recipe (no LLM) on a few sentences and Prefect's ephemeral server (no PREFECT_API_URL).
With ``runner.task_runner: dask`` every batch is a Dask task in one of two local worker processes; the
driver alone records batches in the manifest and builds the shards. That must hold both through
``run_flow`` (``synth run``) and for the flow loaded from its entrypoint (what a worker or ``prefect serve``
runs, without ``run_flow``'s ``with_options``).

Run: pytest tests/test_task_runners.py -m slow
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.recipe import run_flow
from synth.config_file import load_config

ROOT = Path(__file__).resolve().parent.parent
LIMIT, BATCH_SIZE = 80, 16  # 5 batches: more tasks than Dask workers
BATCHES = -(-LIMIT // BATCH_SIZE)


def _config(out: Path, task_runner: str):
    overrides = {
        "input.limit": LIMIT,
        "runner.batch_size": BATCH_SIZE,
        "runner.task_runner": task_runner,
        "output.dir": str(out),
    }
    return load_config(ROOT / "data" / "configs" / "entitycs.yaml", recipe="entitycs", overrides=overrides)


def _rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row (kept and rejected) of a run's shards, sorted by id, without the wall-clock column."""
    out = Path(summary["out"])
    tables = [pq.read_table(out / shard["path"]) for shard in summary["shards"]]
    rows = pa.concat_tables(tables, promote_options="permissive").drop_columns(["created_at"]).to_pylist()
    return sorted(rows, key=lambda row: row["id"])


@pytest.fixture
def ephemeral_prefect(monkeypatch: pytest.MonkeyPatch):
    """Prefect's ephemeral server for this test, whatever an earlier test or the user's shell pointed at."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


@pytest.fixture
def dask_submits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the tasks submitted to a DaskTaskRunner during the test (proof that Dask ran the batches)."""
    from prefect_dask import DaskTaskRunner

    submitted: list[str] = []
    submit = DaskTaskRunner.submit

    def counting_submit(self, task, parameters, *args, **kwargs):
        submitted.append(task.name)
        return submit(self, task, parameters, *args, **kwargs)

    monkeypatch.setattr(DaskTaskRunner, "submit", counting_submit)
    return submitted


@pytest.mark.slow
def test_dask_runner_writes_the_same_rows_as_the_thread_runner(tmp_path: Path, ephemeral_prefect, dask_submits):
    thread = run_flow(_config(tmp_path / "thread", "thread"))
    dask = run_flow(_config(tmp_path / "dask", "dask"))

    assert dask_submits == ["generate-batch"] * BATCHES, "the Dask run did not submit its batches to Dask"
    assert thread["units_generated"] == dask["units_generated"] == LIMIT
    assert (thread["kept"], thread["rejected"]) == (dask["kept"], dask["rejected"])
    thread_rows, dask_rows = _rows(thread), _rows(dask)
    ids = [row["id"] for row in dask_rows]
    assert len(ids) == len(set(ids)) > 0, "duplicated row ids in the Dask run"
    assert {row["id"] for row in thread_rows} == set(ids)
    assert thread_rows == dask_rows


@pytest.mark.slow
def test_flow_loaded_from_its_entrypoint_uses_the_configured_dask_runner(
    tmp_path: Path, ephemeral_prefect, dask_submits
):
    """What a worker or `prefect serve` runs: the flow from its file, without run_flow's with_options."""
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(f"{ROOT / 'flows' / 'recipe.py'}:entitycs_flow")
    summary = flow(config=_config(tmp_path / "deployed", "dask"))
    assert summary["units_generated"] == LIMIT
    assert dask_submits == ["generate-batch"] * BATCHES, "runner.task_runner: dask was ignored"
