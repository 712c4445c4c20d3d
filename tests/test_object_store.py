"""Output on object storage: a run into ``s3://`` on a real S3-compatible server (moto's server mode on
127.0.0.1), killed at random moments and resumed, ends with the direct local run's rows, readable with polars
and ``datasets`` straight from the bucket."""

from __future__ import annotations

import json
import random

import pytest

from synth.paths import DATA_DIR
from tests.bad_inputs.cli_harness import synth_cli
from tests.resume_harness import finish, kill_after
from tests.s3_server import make_bucket, s3_server

ENTITYCS = DATA_DIR / "configs" / "entitycs.yaml"
OVERRIDES = {"input.limit": 300, "runner.batch_size": 7, "entitycs.languages_per_sentence": 2}


@pytest.fixture()
def s3(monkeypatch):
    with s3_server() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        make_bucket(env, "polysynth")
        yield env


def _rows_from_bucket(env: dict[str, str], url: str) -> list[tuple[str, str, str]]:
    import polars as pl
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    manifest = json.loads(fs.cat_file(f"{url.removeprefix('s3://')}/manifest.json"))
    options = {"aws_endpoint_url": env["AWS_ENDPOINT_URL"], "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
               "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"], "aws_region": env["AWS_DEFAULT_REGION"]}
    rows = []
    for shard in manifest["recipes"]["entitycs"]["shards"]:
        frame = pl.read_parquet(f"{url}/{shard['path']}", storage_options=options)
        group = shard["path"].split("/")[1]
        rows += [(group, r["id"], r["cs_sentence"]) for r in frame.select("id", "cs_sentence").to_dicts()]
    listed = sorted(p.split("/", 2)[2] for p in fs.glob(f"{url.removeprefix('s3://')}/entitycs/*/*.parquet"))
    assert listed == sorted(s["path"] for s in manifest["recipes"]["entitycs"]["shards"]), "stale shards left"
    return sorted(rows)


def test_a_run_on_s3_killed_and_resumed_ends_with_the_direct_runs_rows(s3, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    direct = tmp_path / "direct"
    finish(ENTITYCS, {**OVERRIDES, "output.dir": str(direct)})
    manifest = json.loads((direct / "manifest.json").read_text())
    expected = []
    for shard in manifest["recipes"]["entitycs"]["shards"]:
        table = pq.read_table(direct / shard["path"], columns=["id", "cs_sentence"])
        expected += [(shard["path"].split("/")[1], i, t) for i, t in zip(*(c.to_pylist() for c in table.columns))]

    url = "s3://polysynth/run"
    rng = random.Random(3)
    kills = sum(kill_after(ENTITYCS, {**OVERRIDES, "output.dir": url}, rng.uniform(3.0, 8.0)) for _ in range(3))
    assert kills >= 2, "the kills should land before the run finishes"
    resumed = finish(ENTITYCS, {**OVERRIDES, "output.dir": url})
    assert resumed["total"] == 300
    assert _rows_from_bucket(s3, url) == sorted(expected)
    again = finish(ENTITYCS, {**OVERRIDES, "output.dir": url})
    assert again == {"generated": 0, "total": 300}

    # datasets reads the bucket with the card's own file list
    import datasets
    import s3fs
    import yaml

    # HF_HUB_OFFLINE makes datasets refuse every remote URL; this one is the test server on 127.0.0.1
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    card = yaml.safe_load(fs.cat_file("polysynth/run/README.md").decode().split("---")[1])
    files = next(c for c in card["configs"] if c["config_name"] == "entitycs-de")["data_files"][0]["path"]
    loaded = datasets.load_dataset(
        "parquet",
        data_files=[f"{url}/{path}" for path in files],
        split="train",
        storage_options={"client_kwargs": {"endpoint_url": s3["AWS_ENDPOINT_URL"]}},
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert sorted(loaded["id"]) == sorted(i for g, i, _ in expected if g == "de")


def test_an_object_store_without_credentials_is_one_line(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    proc = synth_cli("run", "entitycs", "--config", str(ENTITYCS), "--limit", "5", "--out", "s3://polysynth/nocreds", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert "s3://polysynth/nocreds" in proc.stderr and "cannot write to the output" in proc.stderr
    assert "NoCredentialsError" in proc.stderr
