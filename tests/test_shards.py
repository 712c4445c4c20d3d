import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synth.errors import OutputError
from synth.shards import (
    Manifest,
    OutputLock,
    ShardSpec,
    discard_temp_files,
    finalize_group,
    write_batch_parts,
)

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


def _table(start, n):
    return pa.Table.from_pylist([{"id": f"r{i}", "text": "x" * 50} for i in range(start, start + n)], schema=SCHEMA)


def test_finalize_rolls_over_by_rows_and_keeps_order(tmp_path):
    parts = []
    for batch in range(3):
        entries = write_batch_parts(tmp_path, "sap", batch, {"de": _table(batch * 7, 7)})
        parts += [e["path"] for e in entries]
    shards = finalize_group(tmp_path, "sap", "de", parts, ShardSpec(shard_rows=5, shard_bytes=1 << 30))
    assert [s["rows"] for s in shards] == [5, 5, 5, 5, 1]
    names = sorted(p.name for p in (tmp_path / "sap" / "de").iterdir())
    assert names == [f"train-{i:05d}-of-00005.parquet" for i in range(5)]
    ids = [r for s in shards for r in pq.read_table(tmp_path / s["path"]).column("id").to_pylist()]
    assert ids == [f"r{i}" for i in range(21)]
    # refinalising with fewer rows replaces the old set completely
    shards = finalize_group(tmp_path, "sap", "de", parts[:1], ShardSpec(shard_rows=100, shard_bytes=1 << 30))
    assert sorted(p.name for p in (tmp_path / "sap" / "de").iterdir()) == ["train-00000-of-00001.parquet"]


def test_finalize_rolls_over_by_bytes(tmp_path):
    parts = [e["path"] for b in range(4) for e in write_batch_parts(tmp_path, "sap", b, {"de": _table(b * 10, 10)})]
    shards = finalize_group(tmp_path, "sap", "de", parts, ShardSpec(shard_rows=10**6, shard_bytes=1024))
    assert len(shards) > 1 and sum(s["rows"] for s in shards) == 40


def test_manifest_refuses_other_config(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.begin("sap", "aaaa", {})
    manifest.record_batch("sap", 0, {"parts": []})
    reread = Manifest(tmp_path)
    assert reread.is_done("sap", 0) and not reread.is_done("sap", 1)
    with pytest.raises(OutputError, match="another config"):
        reread.begin("sap", "bbbb", {})


def test_lock_names_holder_pid_and_takes_over_stale(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from pathlib import Path; from synth.shards import OutputLock; "
         "OutputLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"pid {holder.pid}"):
            OutputLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with OutputLock(tmp_path):  # the holder died: its lock is stale
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def test_discard_temp_files(tmp_path):
    (tmp_path / "sap" / "de").mkdir(parents=True)
    (tmp_path / "sap" / "de" / ".tmp-abc.parquet").write_bytes(b"partial")
    assert discard_temp_files(tmp_path) == 1
    assert not list(tmp_path.rglob(".tmp-*"))
