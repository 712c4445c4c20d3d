"""Runs a recipe in batches through the shard store: the library half of every flow.

Two roles, so that batches can run anywhere (threads, Dask or Ray workers) while only one process
owns the manifest:

* :class:`RecipeRun` — the driver: takes the output lock, reads the manifest, plans batches (skipping the ones
  done), records finished batches, and finalises shards and the dataset card.
* :func:`process_batch` — the worker: runs the recipe on one batch with a per-process engine and LID model,
  adds provenance columns and writes the batch's Parquet parts. It never touches the manifest.

Example (no Prefect)::

    from synth.config import load_config
    from synth.pipeline import RecipeRun, process_batch

    config = load_config("data/configs/sap.yaml")
    with RecipeRun(config) as run:
        for batch in run.pending_batches():
            run.record(process_batch(config, run.out, batch))
        summary = run.finalize()
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from synth.config import RunConfigBase
from synth.errors import InputError
from synth.llm.base import Usage
from synth.recipes import recipe_class
from synth.recipes.base import Recipe
from synth.shards import (
    MANIFEST,
    REJECTED,
    Manifest,
    OutputLock,
    ShardSpec,
    check_writable,
    discard_temp_files,
    finalize_group,
    write_batch_parts,
)

# The input field each recipe takes its source ids from (named in the duplicated-id error).
ID_FIELDS = {"sap": "id", "entitycs": "sentence_id", "cod": "dialogue_id"}

PROVENANCE_FIELDS = [
    pa.field("recipe", pa.string()),
    pa.field("prompt_version", pa.string()),
    pa.field("model", pa.string()),
    pa.field("sampling", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("config_hash", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
]


@dataclass
class Batch:
    """A slice of the input: ``index`` is its position in the input stream, stable across reruns."""

    index: int
    records: list[dict[str, Any]]

    @property
    def source_ids(self) -> list[str]:
        return [str(r["source_id"]) for r in self.records]


@dataclass
class BatchReport:
    """What a worker did with one batch; the driver records it in the manifest."""

    index: int
    first_source_id: str
    last_source_id: str
    records: int
    parts: list[dict[str, Any]]
    kept: dict[str, int]
    rejected: dict[str, int]
    usage: dict[str, Any]
    wall_s: float


@dataclass
class RunSummary:
    """Totals of a recipe run, as shown by the CLI, the flow artifact and the report."""

    recipe: str
    out: str
    config_hash: str
    batches_total: int
    batches_generated: int
    kept: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    shards: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Worker:
    """Per-process state of a worker: the recipe with its engine and LID model, created once."""

    def __init__(self, config: RunConfigBase):
        from synth.lid import LanguageIdentifier

        self.config = config
        recipe_cls = recipe_class(config.recipe)
        probe = recipe_cls(config, None, None)
        engine = None
        if probe.needs_engine:
            from synth.llm import get_engine

            engine = get_engine(config.engine)
        self.recipe: Recipe = recipe_cls(config, engine, LanguageIdentifier(config.lid))
        self.model = engine.model_name if engine is not None else "none"
        self.schema = pa.schema(list(self.recipe.schema()) + PROVENANCE_FIELDS)
        self.sampling_json = json.dumps(config.sampling.model_dump(mode="json"), sort_keys=True)


@lru_cache(maxsize=4)
def _worker(config_json: str, recipe: str) -> _Worker:
    from synth.config import CONFIG_CLASSES

    return _Worker(CONFIG_CLASSES[recipe].model_validate_json(config_json))


def process_batch(config: RunConfigBase, out: Path | str, batch: Batch) -> BatchReport:
    """Generate one batch and write its parts under ``OUT/.work``. Safe to redo: parts are overwritten."""
    started = time.perf_counter()
    worker = _worker(config.model_dump_json(), config.recipe)
    usage = Usage()
    rows = worker.recipe.process(batch.records, usage)
    created_at = datetime.now(timezone.utc)
    provenance = {
        "recipe": config.recipe,
        "prompt_version": worker.recipe.prompt_version,
        "model": worker.model,
        "sampling": worker.sampling_json,
        "seed": config.sampling.seed,
        "config_hash": config.content_hash(),
        "created_at": created_at,
    }
    groups: dict[str, list[dict[str, Any]]] = {}
    kept: dict[str, int] = {}
    rejected: dict[str, int] = {}
    for row in rows:
        row.update(provenance)
        if row.get("reject_reason"):
            groups.setdefault(REJECTED, []).append(row)
            rejected[row["lang"]] = rejected.get(row["lang"], 0) + 1
        else:
            groups.setdefault(row["lang"], []).append(row)
            kept[row["lang"]] = kept.get(row["lang"], 0) + 1
    kept_schema = worker.schema.remove(worker.schema.get_field_index("reject_reason"))
    tables = {
        group: pa.Table.from_pylist(
            [{k: v for k, v in r.items() if group == REJECTED or k != "reject_reason"} for r in group_rows],
            schema=worker.schema if group == REJECTED else kept_schema,
        )
        for group, group_rows in groups.items()
    }
    parts = write_batch_parts(Path(out), config.recipe, batch.index, tables)
    return BatchReport(
        index=batch.index,
        first_source_id=batch.source_ids[0],
        last_source_id=batch.source_ids[-1],
        records=len(batch.records),
        parts=parts,
        kept=kept,
        rejected=rejected,
        usage=usage.as_dict(),
        wall_s=time.perf_counter() - started,
    )


class RecipeRun:
    """The driver of one recipe run into one output directory (see the module docstring)."""

    def __init__(self, config: RunConfigBase, out: Path | str | None = None):
        self.config = config
        self.out = Path(out or config.output.dir).resolve()
        self.recipe = config.recipe
        self.lock = OutputLock(self.out)
        self.manifest: Manifest | None = None
        self.batches_total = 0
        self.batches_generated = 0
        self._started = time.perf_counter()

    def __enter__(self) -> "RecipeRun":
        # Validate before taking the lock or touching the output: a bad config must leave OUT as it was.
        recipe_class(self.recipe)(self.config, None, None).validate()
        self.lock.acquire()
        try:
            discard_temp_files(self.out)
            self.manifest = Manifest(self.out)
            self.manifest.begin(self.recipe, self.config.content_hash(), self.config.model_dump(mode="json"))
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def check(self) -> None:
        """Everything a run checks before it generates, without writing or locking anything: the config against
        the recipe, no other live run in ``out``, ``out`` writable and not holding this recipe under another
        config, and every input record (read as the run will read it; nothing is kept).

        ``synth run`` calls it before starting Prefect, so these errors are one line on stderr.
        """
        recipe_class(self.recipe)(self.config, None, None).validate()
        self.lock.check()
        check_writable(self.out)
        if (self.out / MANIFEST).exists():
            Manifest(self.out).check(self.recipe, self.config.content_hash())
        if sum(1 for _ in self.all_batches()) == 0:  # reads every record: bad rows fail here
            source = self.config.input.path or f"hf:{self.config.input.hf.name}"
            raise InputError("no input records (the input is empty)", file=source)

    def all_batches(self) -> Iterator[Batch]:
        """The input, cut into batches of ``runner.batch_size`` records (``input.limit`` applied)."""
        recipe = recipe_class(self.recipe)(self.config, None, None)
        limit = self.config.input.limit
        size = self.config.runner.batch_size
        seen: dict[str, int] = {}
        records: list[dict[str, Any]] = []
        index = count = 0
        for record in recipe.read_records():
            source_id = str(record["source_id"])
            if source_id in seen:
                raise InputError(
                    f"duplicated id {source_id!r} (first at record {seen[source_id]})",
                    file=self.config.input.path or str(self.config.input.hf),
                    row=count + 1,
                    field=ID_FIELDS.get(self.recipe, "id"),
                )
            seen[source_id] = count + 1
            records.append(record)
            count += 1
            if len(records) == size:
                yield Batch(index, records)
                index, records = index + 1, []
            if limit is not None and count >= limit:
                break
        if records:
            yield Batch(index, records)

    def pending_batches(self) -> Iterator[Batch]:
        """Batches the manifest does not record as done; counts every batch in ``batches_total``."""
        self.batches_total = 0
        for batch in self.all_batches():
            self.batches_total += 1
            if not self.manifest.is_done(self.recipe, batch.index):
                yield batch

    def record(self, report: BatchReport) -> None:
        """Mark a batch done in the manifest (after its parts are on disk)."""
        self.batches_generated += 1
        self.manifest.record_batch(self.recipe, report.index, asdict(report))

    def finalize(self) -> RunSummary:
        """Build the final shards from every recorded batch, then the dataset card; returns the run's totals."""
        from synth.card import write_output_readme

        state = self.manifest.recipes[self.recipe]
        self.manifest.set_status(self.recipe, "finalizing")
        parts_by_group: dict[str, list[str]] = {}
        for key in sorted(state["batches"]):
            for part in state["batches"][key]["parts"]:
                parts_by_group.setdefault(part["group"], []).append(part["path"])
        spec = ShardSpec(self.config.output.shard_rows, self.config.output.shard_bytes)
        shards = []
        for group, parts in sorted(parts_by_group.items()):
            shards.extend(finalize_group(self.out, self.recipe, group, parts, spec))
        summary = self._summary(state, shards)
        self.manifest.set_status(
            self.recipe,
            "complete",
            shards=shards,
            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            totals={k: v for k, v in summary.as_dict().items() if k not in ("shards", "out")},
            batches_total=self.batches_total,
        )
        write_output_readme(self.out, self.manifest)
        return summary

    def _summary(self, state: dict[str, Any], shards: list[dict[str, Any]]) -> RunSummary:
        usage = Usage()
        kept: dict[str, int] = {}
        rejected: dict[str, int] = {}
        for entry in state["batches"].values():
            usage.merge(Usage(**entry["usage"]))
            for lang, n in entry["kept"].items():
                kept[lang] = kept.get(lang, 0) + n
            for lang, n in entry["rejected"].items():
                rejected[lang] = rejected.get(lang, 0) + n
        reasons: dict[str, int] = {}
        rejected_shards = [s for s in shards if s["group"] == REJECTED]
        if rejected_shards:
            import pyarrow.parquet as pq

            for shard in rejected_shards:
                column = pq.read_table(self.out / shard["path"], columns=["reject_reason"]).column(0)
                for reason in column.to_pylist():
                    reasons[reason] = reasons.get(reason, 0) + 1
        return RunSummary(
            recipe=self.recipe,
            out=str(self.out),
            config_hash=state["config_hash"],
            batches_total=self.batches_total,
            batches_generated=self.batches_generated,
            kept=dict(sorted(kept.items())),
            rejected=dict(sorted(rejected.items())),
            reject_reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            usage=usage.as_dict(),
            wall_s=round(time.perf_counter() - self._started, 3),
            shards=shards,
        )


def run_recipe(config: RunConfigBase, out: Path | str | None = None) -> RunSummary:
    """Run a recipe to completion in this process, without Prefect (the flows wrap the same calls in tasks)."""
    with RecipeRun(config, out) as run:
        for batch in run.pending_batches():
            run.record(process_batch(config, run.out, batch))
        return run.finalize()
