"""Scale-out proof: a Dask LocalCluster of 2 worker processes, the OpenAI backend spread over 2 ``vllm serve``
processes of the tiny test model, output on an S3-compatible server — the same row ids and texts as a
single-process run (thread runner, one server, local output).

Run: pytest tests/test_scale_out.py -m slow
"""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.recipe import run_flow
from synth.config_file import load_config
from synth.store.location import Location
from tests.llm_fixtures import start_vllm_server, stop_process_group
from tests.s3_server import make_bucket, s3_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _config(out: str, urls: list[str], task_runner: str):
    return load_config(
        ROOT / "data" / "configs" / "sap.yaml",
        overrides={
            "input.limit": 6,
            "languages": ["de", "zh"],
            "engine.backend": "openai",
            "engine.base_urls": urls,
            "engine.model": None,  # resolved from the servers' /v1/models
            "sap.summary_max_tokens": 8,
            "sap.query_max_tokens": 6,
            "runner.batch_size": 2,  # 3 batches over 2 Dask workers
            "runner.task_runner": task_runner,
            "output.dir": out,
        },
    )


def _rows(summary: dict) -> list[tuple]:
    location = Location(summary["out"])
    tables = [location.read_table(shard["path"]) for shard in summary["shards"]]
    table = pa.concat_tables(tables, promote_options="permissive")
    return sorted(zip(*(table.column(c).to_pylist() for c in ("id", "lang", "summary", "query", "model"))))


@pytest.mark.timeout(1500)
def test_dask_over_two_servers_into_s3_writes_the_single_process_rows(tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.llm_fixtures import tiny_test_model_path

    model = tiny_test_model_path()
    started: list = [None, None]

    def start(slot: int) -> None:
        started[slot] = start_vllm_server(model)

    threads = [threading.Thread(target=start, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert all(started), "a vllm server did not start"
        urls = [server.url for _, server, _ in started]
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        with s3_server() as env, temporary_settings(restore_defaults={PREFECT_API_URL}):
            for key, value in env.items():
                monkeypatch.setenv(key, value)  # inherited by the Dask worker processes
            make_bucket(env, "polysynth")
            single = run_flow(_config(str(tmp_path / "single"), urls[:1], "thread"))
            spread = run_flow(_config("s3://polysynth/scale", urls, "dask"))
            assert spread["out"] == "s3://polysynth/scale"
            assert spread["units_generated"] == single["units_generated"] == 6
            single_rows, spread_rows = _rows(single), _rows(spread)
            assert len(single_rows) == 6 * 2 and len({r[0] for r in spread_rows}) == 12
            assert {r[4] for r in spread_rows} == {model.name}
            assert spread_rows == single_rows
    finally:
        for entry in started:
            if entry is not None:
                stop_process_group(entry[0])
