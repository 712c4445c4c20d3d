"""The store keeps its promise whatever changes between runs: a unit is identified by its content.

All tests run the EntityCS recipe with the shipped CLDR lexicon (no LLM), in process, through the same
driver the flows use. "The direct run" is one uninterrupted run of the final settings into a fresh directory;
every history must end with exactly its rows (ids and texts), each once.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth.config_file import load_config
from synth.errors import OutputError
from synth.pipeline import RecipeRun, drive, process_batch, run_recipe, _Done
from synth.store.segments import SegmentStore

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT / "data" / "samples" / "wiki_sentences.jsonl"


def _config(tmp: Path, out: Path, *, limit=None, batch_size=16, input_path=SENTENCES, **extra):
    body = {
        "recipe": "entitycs",
        "input": {"path": str(input_path), "limit": limit},
        "languages": ["de", "fr", "ru", "ja", "hi", "sw"],
        "entitycs": {"languages_per_sentence": 2},
        "output": {"dir": str(out), **extra.pop("output", {})},
        "runner": {"batch_size": batch_size},
        **extra,
    }
    path = tmp / f"config-{random.random():.12f}.yaml"
    path.write_text(yaml.safe_dump(body))
    return load_config(path)


def published(out: Path, recipe: str = "entitycs") -> list[tuple[str, str, str]]:
    """(group, id, text) of every row the committed generation holds, read through the card's data_files."""
    manifest = json.loads((out / "manifest.json").read_text())
    paths = [s["path"] for s in manifest["recipes"][recipe]["shards"]]
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    in_card = sorted(p for c in card["configs"] if c["config_name"].startswith(recipe) for p in c["data_files"][0]["path"])
    assert in_card == sorted(paths), "README.md and manifest.json publish different files"
    on_disk = sorted(str(p.relative_to(out)) for p in (out / recipe).glob("*/*.parquet"))
    assert on_disk == sorted(paths), "files of another shard generation are left beside the committed one"
    rows = []
    for path in paths:
        table = pq.read_table(out / path, columns=["id", "cs_sentence"])
        group = Path(path).parent.name
        rows += [(group, i, t) for i, t in zip(table.column(0).to_pylist(), table.column(1).to_pylist())]
    return sorted(rows)


def direct(tmp: Path, **kwargs) -> list[tuple[str, str, str]]:
    out = tmp / f"direct-{random.random():.12f}"
    run_recipe(_config(tmp, out, **kwargs))
    return published(out)


def test_growing_the_limit_generates_only_the_new_records(tmp_path):
    out = tmp_path / "out"
    first = run_recipe(_config(tmp_path, out, limit=5))
    grown = run_recipe(_config(tmp_path, out, limit=300))
    assert (first.units_generated, grown.units_generated, grown.units_total) == (5, 295, 300)
    rows = published(out)
    assert rows == direct(tmp_path, limit=300)
    assert len({r[1] for r in rows}) == len(rows)  # each row once


def test_shrinking_the_limit_publishes_only_the_smaller_input(tmp_path):
    out = tmp_path / "out"
    run_recipe(_config(tmp_path, out, limit=300))
    shrunk = run_recipe(_config(tmp_path, out, limit=37))
    assert shrunk.units_generated == 0
    assert published(out) == direct(tmp_path, limit=37)


def test_changing_the_batch_size_loses_and_doubles_nothing(tmp_path):
    out = tmp_path / "out"
    run_recipe(_config(tmp_path, out, limit=100, batch_size=7))
    again = run_recipe(_config(tmp_path, out, limit=250))
    assert again.units_generated == 150
    assert published(out) == direct(tmp_path, limit=250)


def test_reordered_input_is_the_same_work(tmp_path):
    lines = SENTENCES.read_text().splitlines()
    reordered = tmp_path / "reordered.jsonl"
    reordered.write_text("\n".join(reversed(lines)) + "\n")
    out = tmp_path / "out"
    run_recipe(_config(tmp_path, out))
    again = run_recipe(_config(tmp_path, out, input_path=reordered))
    assert again.units_generated == 0
    assert published(out) == direct(tmp_path)


def test_a_setting_after_generation_reshards_without_regenerating(tmp_path):
    out = tmp_path / "out"
    first = run_recipe(_config(tmp_path, out))
    resharded = run_recipe(_config(tmp_path, out, output={"shard_rows": 10}))
    assert resharded.units_generated == 0 and resharded.generation != first.generation
    assert max(s["rows"] for s in resharded.shards) == 10
    assert published(out) == direct(tmp_path)


def test_a_setting_that_changes_rows_regenerates_and_never_mixes(tmp_path):
    out = tmp_path / "out"
    run_recipe(_config(tmp_path, out, limit=50))
    changed = run_recipe(_config(tmp_path, out, limit=50, entitycs={"languages_per_sentence": 2, "markers": "entity"}))
    assert changed.units_generated == 50
    rows = published(out)
    assert rows == direct(tmp_path, limit=50, entitycs={"languages_per_sentence": 2, "markers": "entity"})
    assert all("<e>" in text for group, _, text in rows if group != "_rejected")
    # and back: the first settings' units are still in the ledger, so nothing is generated
    back = run_recipe(_config(tmp_path, out, limit=50))
    assert back.units_generated == 0 and published(out) == direct(tmp_path, limit=50)


def test_settings_that_cannot_change_rows_never_refuse_a_resume(tmp_path):
    out = tmp_path / "out"
    run_recipe(_config(tmp_path, out, limit=40))
    again = run_recipe(
        _config(tmp_path, out, limit=40, batch_size=3, engine={"base_urls": ["http://127.0.0.1:9/v1"], "max_concurrency": 3})
    )
    assert again.units_generated == 0


def test_a_batch_committed_twice_is_published_once(tmp_path):
    out = tmp_path / "out"
    config = _config(tmp_path, out, limit=30)
    with RecipeRun(config) as run:
        batches = list(run.pending_batches())
        for batch in batches + batches[:1]:  # a retried task whose first try had committed
            run.record(process_batch(config, run.out, batch))
        run.finalize()
    assert len(SegmentStore(out, "entitycs").segments()) == len(batches) + 1
    assert published(out) == direct(tmp_path, limit=30)


def test_a_finalize_that_dies_leaves_the_previous_generation_published(tmp_path, monkeypatch):
    out = tmp_path / "out"
    run_recipe(_config(tmp_path, out, limit=60))
    before = published(out)
    import synth.store.shards as shards

    real = shards._GroupWriter.close
    calls = {"n": 0}

    def dying_close(self):
        calls["n"] += 1
        if calls["n"] == 3:  # some groups of the new generation are on disk, the rest are not
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(shards._GroupWriter, "close", dying_close)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(_config(tmp_path, out, limit=60, output={"shard_rows": 7}))
    manifest = json.loads((out / "manifest.json").read_text())
    committed = manifest["recipes"]["entitycs"]["shards"]
    assert all((out / s["path"]).exists() for s in committed)
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert sorted(p for c in card["configs"] for p in c["data_files"][0]["path"]) == sorted(s["path"] for s in committed)
    monkeypatch.setattr(shards._GroupWriter, "close", real)
    run_recipe(_config(tmp_path, out, limit=60, output={"shard_rows": 7}))
    assert published(out) == before


class _Interrupt(Exception):
    pass


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 120), st.integers(1, 40), st.one_of(st.none(), st.integers(0, 6))),
        min_size=1,
        max_size=4,
    ),
    final_limit=st.integers(1, 120),
)
def test_any_history_of_limits_batch_sizes_and_interruptions_ends_with_the_direct_runs_rows(
    tmp_path, steps, final_limit
):
    """Each step runs with a limit and batch size and may be interrupted after some batches (an exception out
    of the driver, like a kill between commits); a last uninterrupted run must equal the direct run."""
    out = tmp_path / f"prop-{random.random():.12f}"
    for limit, batch_size, stop_after in steps:
        config = _config(tmp_path, out, limit=limit, batch_size=batch_size)
        done = {"n": 0}

        def submit(batch, config=config, stop_after=stop_after):
            if stop_after is not None and done["n"] >= stop_after:
                raise _Interrupt
            done["n"] += 1
            return _Done(process_batch(config, config.output.dir, batch))

        try:
            with RecipeRun(config) as run:
                drive(run, submit)
        except _Interrupt:
            pass
    run_recipe(_config(tmp_path, out, limit=final_limit, batch_size=16))
    assert published(out) == direct(tmp_path, limit=final_limit)


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """RLIMIT_FSIZE for this process (Python ignores SIGXFSZ, so a write past it fails with EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_full_disk_while_a_batch_is_committed_stops_the_run_and_loses_nothing(tmp_path):
    out = tmp_path / "out"
    config = _config(tmp_path, out, limit=100, batch_size=10)
    with RecipeRun(config) as run:  # the first batches commit normally
        batches = run.pending_batches()
        for _ in range(3):
            run.record(process_batch(config, run.out, next(batches)))
    # a segment's rows file is several KB; the manifest and lock records are far smaller
    with _file_size_limit(2048), pytest.raises(OutputError, match="disk full"):
        run_recipe(config)
    assert len(SegmentStore(out, "entitycs").done_keys()) == 30, "a failed commit counted, or finished ones were lost"
    assert not list(out.rglob(".tmp-*"))
    again = run_recipe(config)
    assert again.units_generated == 70
    assert published(out) == direct(tmp_path, limit=100)


def test_a_full_disk_during_finalize_keeps_the_previous_generation_published(tmp_path):
    out = tmp_path / "out"
    run_recipe(_config(tmp_path, out, limit=200))
    before = published(out)
    manifest_before = (out / "manifest.json").read_bytes()
    with _file_size_limit(3000), pytest.raises(OutputError, match="disk full"):
        run_recipe(_config(tmp_path, out, limit=200, output={"shard_rows": 40}))
    assert (out / "manifest.json").read_bytes() == manifest_before
    assert published(out) == before  # also checks that no file of the failed generation is left beside it
    assert not list(out.rglob(".tmp-*"))
    run_recipe(_config(tmp_path, out, limit=200, output={"shard_rows": 40}))
    assert published(out) == before


def test_a_segment_cut_short_by_a_power_loss_is_discarded_and_its_units_redone(tmp_path):
    """Segments are not fsynced (a kill never loses them); one whose data never reached the disk reads as
    garbage after a power loss: the next run drops it and redoes exactly its units."""
    out = tmp_path / "out"
    run_recipe(_config(tmp_path, out, limit=50, batch_size=10))
    store = SegmentStore(out, "entitycs")
    victim = store.segments()[2]
    path = Path(store.location.path(store._rel(victim)))
    path.write_bytes(b"\0" * path.stat().st_size)  # what a lost page cache leaves behind
    again = run_recipe(_config(tmp_path, out, limit=50, batch_size=10))
    assert again.units_generated == 10 and victim not in store.segments()
    assert published(out) == direct(tmp_path, limit=50)
