"""Runs a recipe through the store: the library half of every flow.

Two roles, so that batches can run anywhere (threads, Dask or Ray workers) while one process drives:

* :class:`RecipeRun` — the driver: takes the output lock, resolves the model and the row fingerprint
  (``synth.store.units``), streams the input once to learn which units are wanted, streams it again to batch
  the ones the ledger does not hold, and finally publishes the chosen rows as one shard generation.
  Its memory is 8 bytes per input record (the wanted keys) plus the batches in flight.
* :func:`process_batch` — the worker: runs the recipe on one batch with a per-process engine (behind the
  stored-generations cache) and LID model, adds provenance, and commits the batch's finished units to the
  ledger. A unit whose request failed is not committed: a rerun generates it.

:func:`drive` is the one loop every caller uses (``run_recipe`` here, the Prefect flow in ``flows/``).

Example (no Prefect)::

    from synth.config_file import load_config
    from synth.pipeline import run_recipe

    summary = run_recipe(load_config("data/configs/sap.yaml"))
    print(summary.units_generated, summary.units_total, summary.usage["calls"])
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import pyarrow as pa

from synth.report import progress
from synth.report.browse import record_run_start
from synth.config import RunConfigBase
from synth.filters.dedup import DUPLICATE_OF_FIELD, near_duplicates
from synth.errors import InputError, SynthError
from synth.llm.base import Usage
from synth.recipes import recipe_class
from synth.recipes.base import Recipe, stable_id
from synth.sources.records import input_name
from synth.store.files import check_writable, discard_temp_files
from synth.store.generations import CachingEngine
from synth.store.location import Location
from synth.store.lock import lock_for
from synth.store.manifest import Manifest, now_iso
from synth.store.segments import UNIT_COLUMN, SegmentStore, new_segment_id
from synth.store.shards import REJECTED, ShardSpec, delete_other_generations, generation_id, write_generation
from synth.store.units import KeyBuffer, KeySet, first_of_runs, key_hex, row_fingerprint, source_key, unit_key

PROVENANCE_FIELDS = [
    pa.field("recipe", pa.string()),
    pa.field("prompt_version", pa.string()),
    pa.field("model", pa.string()),
    pa.field("sampling", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("config_hash", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
]


def is_engine_failure(reason: str | None) -> bool:
    """A reject reason that says the model was not reached (after retries), not that its answer was bad."""
    return bool(reason) and reason.endswith("engine_error")


@dataclass
class Batch:
    """Records to generate, with their unit keys, and what every worker must agree on for this run."""

    index: int
    run_id: str
    model: str
    fingerprint: str
    records: list[dict[str, Any]]
    keys: list[int]


@dataclass
class BatchReport:
    """What a worker did with one batch; the driver adds it to the run's totals."""

    index: int
    units: int
    units_failed: int
    kept: dict[str, int]
    rejected: dict[str, int]
    usage: dict[str, Any]
    wall_s: float
    failure: str | None = None  # an example engine error of a failed unit


@dataclass
class RunSummary:
    """Totals of a recipe run, as shown by the CLI, the flow artifact and the report."""

    recipe: str
    out: str
    config_hash: str
    model: str
    units_total: int
    units_generated: int
    units_failed: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    generation: str = ""
    shards: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class IncompleteRunError(SynthError):
    """Some units failed (engine errors after retries); everything else is published and kept."""

    def __init__(self, summary: RunSummary):
        self.summary = summary
        super().__init__(
            f"{summary.units_failed} of {summary.units_total} units failed after retries (last error: {summary.failure}); "
            "their rows are not written and a rerun generates only them; finished work is kept",
            file=summary.out,
        )


class _Worker:
    """Per-process state of a worker: the recipe with its engine and LID model, created once."""

    def __init__(self, config: RunConfigBase):
        from synth.filters.lid import LanguageIdentifier

        self.config = config
        recipe_cls = recipe_class(config.recipe)
        self.cache: CachingEngine | None = None
        if recipe_cls.needs_engine(config):
            from synth.llm import get_engine

            self.cache = CachingEngine(lambda: get_engine(config.engine))
        self.recipe: Recipe = recipe_cls(config, self.cache, LanguageIdentifier(config.lid))
        self.schema = pa.schema(list(self.recipe.schema()) + PROVENANCE_FIELDS)
        self.store_schema = self.schema.append(pa.field(UNIT_COLUMN, pa.uint64()))
        self.sampling_json = json.dumps(config.sampling.model_dump(mode="json"), sort_keys=True)


@lru_cache(maxsize=4)
def _worker(config_json: str, recipe: str) -> _Worker:
    return _Worker(recipe_class(recipe).config_model.model_validate_json(config_json))


def process_batch(config: RunConfigBase, out: Location | Path | str, batch: Batch) -> BatchReport:
    """Generate one batch and commit its finished units to the ledger. Safe to redo: the ledger keeps a unit once."""
    started = time.perf_counter()
    worker = _worker(config.model_dump_json(), config.recipe)
    if worker.cache is not None:
        worker.cache.bind(out, config.recipe, batch.run_id, batch.model)
        worker.cache.last_error = None
    usage = Usage()
    try:
        rows = worker.recipe.process(batch.records, usage)
    except BaseException:
        if worker.cache is not None:
            worker.cache.discard()
        raise
    key_of = {str(record["source_id"]): key for record, key in zip(batch.records, batch.keys)}
    failed: dict[str, str] = {}
    for row in rows:
        if is_engine_failure(row.get("reject_reason")):
            failed.setdefault(str(row["source_id"]), row["reject_reason"])
    provenance = {
        "recipe": config.recipe,
        "prompt_version": worker.recipe.prompt_version,
        "model": batch.model,
        "sampling": worker.sampling_json,
        "seed": config.sampling.seed,
        "config_hash": batch.fingerprint,
        "created_at": datetime.now(timezone.utc),
    }
    kept: dict[str, int] = {}
    rejected: dict[str, int] = {}
    stored = []
    for row in rows:
        source_id = str(row["source_id"])
        if source_id in failed:
            continue
        unit = key_of[source_id]
        row.update(provenance)
        row["id"] = stable_id(key_hex(unit), row["id"])
        row[UNIT_COLUMN] = unit
        bucket = rejected if row.get("reject_reason") else kept
        bucket[row["lang"]] = bucket.get(row["lang"], 0) + 1
        stored.append(row)
    if worker.cache is not None:
        worker.cache.flush(new_segment_id())
    units = np.array([key for source_id, key in key_of.items() if source_id not in failed], dtype=np.uint64)
    if len(units):
        SegmentStore(out, config.recipe).commit(
            pa.Table.from_pylist(stored, schema=worker.store_schema), units, usage.as_dict()
        )
    return BatchReport(
        index=batch.index,
        units=len(units),
        units_failed=len(failed),
        kept=kept,
        rejected=rejected,
        usage=usage.as_dict(),
        wall_s=time.perf_counter() - started,
        failure=(worker.cache.last_error if worker.cache is not None else None) or next(iter(failed.values()), None),
    )


def served_model(config: RunConfigBase, needs_engine: bool) -> str:
    """The model that will actually answer, resolved before any batch (it is part of every unit's identity)."""
    if not needs_engine:
        return "none"
    engine = config.engine
    if engine.backend == "vllm":
        from synth.llm.model import resolve_model, served_model_name

        return served_model_name(resolve_model(engine.model))
    from synth.llm.openai_engine import list_served_models

    # Also the preflight of an OpenAI-compatible endpoint: reachable, key accepted, model served.
    served = list_served_models(engine)
    return engine.model or served[0]


class RecipeRun:
    """The driver of one recipe run into one output directory (see the module docstring)."""

    def __init__(self, config: RunConfigBase, out: Path | str | None = None):
        self.config = config
        self.out = Location(out or config.output.dir)
        self.recipe = config.recipe
        self.recipe_cls = recipe_class(config.recipe)
        self.lock = lock_for(self.out)
        self.store = SegmentStore(self.out, self.recipe)
        self.run_id = uuid.uuid4().hex
        self.model = ""
        self.fingerprint = ""
        self.wanted = KeySet()
        self.done = KeySet()
        self.units_total = 0
        self.units_pending = 0
        self.units_generated = 0
        self.units_failed = 0
        self.failure: str | None = None
        self.usage = Usage()
        self.progress = progress.RunProgress(self.recipe)
        self._started = time.perf_counter()

    @cached_property
    def planner(self) -> Recipe:
        """The run's recipe without engine or LID: it validates, reads the input and names the schema; the workers
        (:func:`process_batch`) have their own, with both."""
        return self.recipe_cls(self.config, None, None)

    def __enter__(self) -> "RecipeRun":
        # Validate before taking the lock or touching the output: a bad config must leave OUT as it was.
        self.planner.validate()
        self.model = served_model(self.config, self.recipe_cls.needs_engine(self.config))
        self.fingerprint = row_fingerprint(self.config, self.model, self.planner.resources())
        if not self.out.local:
            self.out.probe()
        self.lock.acquire()
        try:
            if self.out.local:
                discard_temp_files(Path(self.out.path()))
            self.manifest = Manifest(self.out)
            self.manifest.recipes.setdefault(self.recipe, {"shards": []})["status"] = "running"
            self.manifest.save()
            self.plan()
            record_run_start(self.out, self.recipe, units_total=self.units_total, units_pending=self.units_pending)
        except BaseException:
            self.lock.release()
            raise
        self.progress.units_total, self.progress.units_pending = self.units_total, self.units_pending
        progress.run_started(self.progress)
        return self

    def __exit__(self, *exc: object) -> None:
        progress.run_finished(self.progress)
        self.lock.release()

    def check(self) -> None:
        """Everything a run checks before it generates, without writing or locking anything: the config against
        the recipe, no other live run in ``out``, ``out`` writable, and every input record (read as the run will
        read it; only 8 bytes per record are kept).

        ``synth run`` calls it before starting Prefect, so these errors are one line on stderr.
        """
        self.planner.validate()
        if self.config.engine.backend == "openai":
            served_model(self.config, self.recipe_cls.needs_engine(self.config))
        if self.out.local:
            check_writable(Path(self.out.path()))
        else:
            self.out.probe()
        self.lock.check()
        Manifest(self.out)  # readable, and written by this format
        self._scan(lambda record: 0)

    def records(self) -> Iterator[dict[str, Any]]:
        """The input records (``input.limit`` applied)."""
        limit = self.config.input.limit
        for count, record in enumerate(self.planner.read_records(), start=1):
            yield record
            if limit is not None and count >= limit:
                return

    def _scan(self, key_of: Callable[[dict[str, Any]], int]) -> np.ndarray:
        """Stream the input once: refuse duplicated source ids, return every record's key (input order)."""
        keys, sources = KeyBuffer(), KeyBuffer()
        for record in self.records():
            keys.append(key_of(record))
            sources.append(source_key(str(record["source_id"])))
        if not len(keys):
            raise InputError("no input records (the input is empty)", file=input_name(self.config.input))
        ids = sources.array()
        ids.sort()
        repeated = ~first_of_runs(ids)
        if repeated.any():
            self._raise_duplicate(set(ids[repeated].tolist()))
        return keys.array()

    def _raise_duplicate(self, duplicated: set[int]) -> None:
        first: dict[str, int] = {}
        for row, record in enumerate(self.records(), start=1):
            source_id = str(record["source_id"])
            if source_key(source_id) not in duplicated:
                continue
            if source_id in first:
                raise InputError(
                    f"duplicated id {source_id!r} (first at record {first[source_id]})",
                    file=input_name(self.config.input),
                    row=row,
                    field=self.recipe_cls.id_field,
                )
            first[source_id] = row

    def plan(self) -> None:
        """Learn the wanted units (every input record under this fingerprint) and which the ledger holds."""
        self.wanted = KeySet(self._scan(lambda record: unit_key(self.fingerprint, record)), owned=True)
        self.done = self.store.done_keys()
        self.units_total = len(self.wanted)
        self.units_pending = int((~self.done.contains(self.wanted.keys)).sum())

    def pending_batches(self) -> Iterator[Batch]:
        """Batches of ``runner.batch_size`` records whose units the ledger does not hold, streamed."""
        size = self.config.runner.batch_size
        records: list[dict[str, Any]] = []
        keys: list[int] = []
        index = 0
        for record in self.records():
            key = unit_key(self.fingerprint, record)
            if self.done.contains(np.array([key], dtype=np.uint64))[0]:
                continue
            records.append(record)
            keys.append(key)
            if len(records) == size:
                yield Batch(index, self.run_id, self.model, self.fingerprint, records, keys)
                index, records, keys = index + 1, [], []
        if records:
            yield Batch(index, self.run_id, self.model, self.fingerprint, records, keys)

    def record(self, report: BatchReport) -> None:
        """Add a finished batch to the run's totals (its units are already in the ledger)."""
        self.units_generated += report.units
        self.units_failed += report.units_failed
        self.failure = self.failure or report.failure
        self.usage.merge(Usage(**report.usage))
        progress.batch_finished(
            self.progress,
            units=report.units,
            failed=report.units_failed,
            kept=sum(report.kept.values()),
            rejected=sum(report.rejected.values()),
            output_tokens=report.usage.get("completion_tokens", 0),
            generate_s=report.usage.get("generate_s", 0.0),
        )

    def finalize(self) -> RunSummary:
        """Publish the wanted units' rows as one shard generation, commit it (manifest + card), drop the old one."""
        from synth.publish.card import write_output_readme

        spec = ShardSpec(self.config.output.shard_rows, self.config.output.shard_bytes)
        plan, found = self.store.choose(self.wanted)
        gen = generation_id(
            self.fingerprint, self.wanted, spec, [sid for sid, _ in plan], self.config.dedup.model_dump_json()
        )
        state = self.manifest.recipes.get(self.recipe, {})
        shards = state.get("shards", [])
        if state.get("generation") != gen or not all(self.out.exists(s["path"]) for s in shards):
            # Near-duplicates are found over the chosen rows in order of their ids, so the same units publish
            # the same rows whatever order their batches were committed in. The dedup settings name ``gen``:
            # changing them publishes again from the ledger, without reprocessing a unit.
            duplicates = near_duplicates(self.store, plan, self.recipe_cls.dedup_columns, self.config.dedup)
            shards = write_generation(
                self.out, self.recipe, self.store, plan, gen, spec, self._rejected_schema(), duplicates
            )
        summary = self._summary(shards, gen)
        self.manifest.recipes[self.recipe] = {
            "status": "complete" if not self.units_failed and found.all() else "incomplete",
            "config_hash": self.fingerprint,
            "config": self.config.model_dump(mode="json"),
            "model": self.model,
            "generation": gen,
            "shards": shards,
            "units_total": self.units_total,
            "units_missing": int((~found).sum()),
            "finished_at": now_iso(),
            "totals": {k: v for k, v in summary.as_dict().items() if k not in ("shards", "out")},
        }
        self.manifest.save()
        write_output_readme(self.out, self.manifest)
        delete_other_generations(self.out, self.recipe, {s["path"] for s in shards})
        self.store.compact()
        return summary

    def _rejected_schema(self) -> pa.Schema:
        """Rejected rows: the recipe's columns, ``duplicate_of`` after ``reject_reason``, then provenance."""
        fields = []
        for recipe_field in self.planner.schema():
            fields.append(recipe_field)
            if recipe_field.name == "reject_reason":
                fields.append(DUPLICATE_OF_FIELD)
        return pa.schema(fields + PROVENANCE_FIELDS)

    def _summary(self, shards: list[dict[str, Any]], gen: str) -> RunSummary:
        kept: dict[str, int] = {}
        rejected: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for shard in shards:
            if shard["group"] != REJECTED:
                kept[shard["group"]] = kept.get(shard["group"], 0) + shard["rows"]
                continue
            table = self.out.read_table(shard["path"], columns=["lang", "reject_reason"])
            for lang, reason in zip(table.column(0).to_pylist(), table.column(1).to_pylist()):
                rejected[lang] = rejected.get(lang, 0) + 1
                reasons[reason] = reasons.get(reason, 0) + 1
        return RunSummary(
            recipe=self.recipe,
            out=str(self.out),
            config_hash=self.fingerprint,
            model=self.model,
            units_total=self.units_total,
            units_generated=self.units_generated,
            units_failed=self.units_failed,
            kept=dict(sorted(kept.items())),
            rejected=dict(sorted(rejected.items())),
            reject_reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            usage=self.usage.as_dict(),
            wall_s=round(time.perf_counter() - self._started, 3),
            generation=gen,
            shards=shards,
            failure=self.failure,
        )


class _Future(Protocol):
    def result(self) -> BatchReport: ...


class _Done:
    """An already computed result, for callers that run batches inline."""

    def __init__(self, report: BatchReport):
        self.report = report

    def result(self) -> BatchReport:
        return self.report


def drive(run: RecipeRun, submit: Callable[[Batch], _Future], max_in_flight: int = 1) -> RunSummary:
    """The driver loop: stream pending batches to ``submit`` with at most ``max_in_flight`` unfinished, record
    each result in order, publish. Raises :class:`IncompleteRunError` (after publishing) when units failed."""
    in_flight: deque[_Future] = deque()
    for batch in run.pending_batches():
        in_flight.append(submit(batch))
        while len(in_flight) >= max_in_flight:
            run.record(in_flight.popleft().result())
    while in_flight:
        run.record(in_flight.popleft().result())
    summary = run.finalize()
    if summary.units_failed:
        raise IncompleteRunError(summary)
    return summary


def run_recipe(config: RunConfigBase, out: Location | Path | str | None = None) -> RunSummary:
    """Run a recipe to completion in this process, without Prefect (the flows use the same :func:`drive`)."""
    with RecipeRun(config, out) as run:
        return drive(run, lambda batch: _Done(process_batch(config, run.out, batch)))
