"""Publishing: the chosen rows of the ledger become HF-layout shards, swapped in as one generation.

::

    OUT/<recipe>/<lang>/train-<gen>-00000.parquet       kept rows
    OUT/<recipe>/_rejected/train-<gen>-00000.parquet    rejected rows, with reject_reason (and duplicate_of)

``<gen>`` names the shard generation by its content (fingerprint, the units chosen, the shard sizes), so a new
finalize never overwrites a file a reader may be reading: it writes its own files, then commits by rewriting
``manifest.json`` and ``README.md`` (whose ``configs`` list the generation's exact files; ``load_dataset`` reads
only those), then deletes the previous generation. A kill at any point leaves the README pointing at one
complete generation; leftovers of an interrupted finalize are deleted by the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synth.filters.dedup import DUPLICATE_OF, mark
from synth.store.files import raise_output_error, sha256_file, temp_file
from synth.store.location import Location
from synth.store.segments import UNIT_COLUMN, SegmentStore
from synth.store.units import KeySet

REJECTED = "_rejected"


@dataclass
class ShardSpec:
    shard_rows: int
    shard_bytes: int


def generation_id(fingerprint: str, wanted: KeySet, spec: ShardSpec, segments: list[str], publish: str = "") -> str:
    """The 8-hex name of a shard generation: the rows chosen (fingerprint, wanted units, segments), how they are
    cut into files, and ``publish``, the settings applied while publishing (near-duplicate removal)."""
    digest = hashlib.sha256(f"{fingerprint}|{spec.shard_rows}|{spec.shard_bytes}|{publish}|".encode())
    digest.update(wanted.keys.tobytes())
    digest.update("|".join(segments).encode())
    return digest.hexdigest()[:8]


class _GroupWriter:
    """Writes one group's rows into ``train-<gen>-NNNNN.parquet`` files, rolling over by rows and bytes."""

    def __init__(self, out: Location, recipe: str, group: str, gen: str, spec: ShardSpec):
        self.out, self.group, self.gen, self.spec = out, group, gen, spec
        self.folder = f"{recipe}/{group}"
        self.scratch = out.scratch_dir(self.folder)
        self.shards: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None
        self.tmp: Path | None = None
        self.rows = self.bytes = 0

    def _close_current(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        final = f"{self.folder}/train-{self.gen}-{len(self.shards):05d}.parquet"
        entry = {
            "group": self.group,
            "path": final,
            "rows": self.rows,
            "bytes": self.tmp.stat().st_size,
            "sha256": sha256_file(self.tmp),
        }
        self.out.put_file(self.tmp, final)
        self.tmp = None
        self.shards.append(entry)

    def write(self, table: pa.Table) -> None:
        for batch in table.to_batches(max_chunksize=4096):
            while batch.num_rows:
                if self.writer is None or self.rows >= self.spec.shard_rows or self.bytes >= self.spec.shard_bytes:
                    self._close_current()
                    self.tmp = temp_file(self.scratch, ".parquet")
                    self.writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
                    self.rows = self.bytes = 0
                chunk = batch.slice(0, self.spec.shard_rows - self.rows)
                self.writer.write_batch(chunk)
                self.rows += chunk.num_rows
                self.bytes += chunk.nbytes
                batch = batch.slice(chunk.num_rows)

    def discard(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                self.tmp.unlink()
        for shard in self.shards:
            self.out.delete(shard["path"])

    def close(self) -> list[dict[str, Any]]:
        self._close_current()
        return self.shards


def write_generation(
    out: Location, recipe: str, store: SegmentStore, plan: list[tuple[str, Any]], gen: str, spec: ShardSpec,
    schema: pa.Schema, duplicates: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Write the rows ``plan`` chooses (per segment, the unit keys to take) as shard generation ``gen``.

    ``schema`` is the rejected rows' schema (with ``reject_reason`` and ``duplicate_of``); kept shards drop
    those columns. ``duplicates`` maps the id of a row to reject as ``duplicate`` to the id of the kept row it
    duplicates (``synth.filters.dedup.near_duplicates``, computed over the same ``plan``).
    """
    kept_schema = pa.schema([field for field in schema if field.name not in ("reject_reason", DUPLICATE_OF)])
    writers: dict[str, _GroupWriter] = {}
    try:
        for sid, keys in plan:
            if not len(keys):
                continue
            rows = store.rows(sid)
            rows = rows.filter(pc.is_in(rows[UNIT_COLUMN], value_set=pa.array(keys, pa.uint64())))
            rows = mark(rows, duplicates or {})
            rejected_mask = pc.is_valid(rows["reject_reason"])
            groups = {REJECTED: rows.filter(rejected_mask)}
            kept = rows.filter(pc.invert(rejected_mask))
            for lang in sorted(set(kept["lang"].to_pylist())):
                groups[lang] = kept.filter(pc.equal(kept["lang"], lang))
            for group, table in groups.items():
                if not table.num_rows:
                    continue
                target_schema = schema if group == REJECTED else kept_schema
                table = table.select(target_schema.names).cast(target_schema)
                writer = writers.get(group)
                if writer is None:
                    writer = writers[group] = _GroupWriter(out, recipe, group, gen, spec)
                writer.write(table)
        return [shard for group in sorted(writers) for shard in writers[group].close()]
    except BaseException as exc:
        for writer in writers.values():  # nothing of a failed generation stays beside the published one
            writer.discard()
        if isinstance(exc, OSError):
            raise_output_error(exc, out.display(recipe))
        raise


def delete_other_generations(out: Location, recipe: str, keep: set[str]) -> None:
    """Remove shard files of ``recipe`` not in ``keep`` (paths relative to ``out``), and emptied local folders."""
    for group in out.listdir(recipe):
        names = out.listdir(f"{recipe}/{group}")
        for name in names:
            rel = f"{recipe}/{group}/{name}"
            if name.endswith(".parquet") and rel not in keep:
                out.delete(rel)
        if out.local:
            with contextlib.suppress(OSError):
                Path(out.path(f"{recipe}/{group}")).rmdir()  # only succeeds when empty
