"""The ledger: an append-only set of *segments*, each the rows and the unit keys of one finished batch.

::

    OUT/.polysynth/<recipe>/segments/<sid>.rows.parquet    the batch's rows (kept and rejected), with ``_unit``
    OUT/.polysynth/<recipe>/segments/<sid>.units.parquet   its finished units: the commit marker

A worker writes the rows file, then the units file; the units file appearing (atomic rename) is the moment
those units are done. A rows file without its units file is an unfinished commit and is discarded. Recording
a unit therefore costs two small file writes whatever the size of the run, nothing is ever rewritten on the
hot path, and workers on several machines can commit to one shared folder without a coordinator (segment
ids are unique: time, host, pid, random).

Readers take a unit from the first segment (in id order) that holds it, so a batch committed twice (a retried
task whose first try had finished) counts once. :meth:`SegmentStore.compact` merges many small segments into
one (write the merged segment, then delete the old units files, then their rows files: a kill at any point
leaves every unit readable).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from synth.store.files import write_parquet_atomic
from synth.store.units import KeySet

STORE_DIR = ".polysynth"
UNIT_COLUMN = "_unit"
ROWS_SUFFIX = ".rows.parquet"
UNITS_SUFFIX = ".units.parquet"
UNITS_SCHEMA = pa.schema([pa.field("unit", pa.uint64()), pa.field("source_id", pa.string())])


def new_segment_id() -> str:
    """Sortable by creation time, unique across hosts and processes."""
    host = "".join(c for c in socket.gethostname() if c.isalnum())[:12] or "host"
    return f"{time.time_ns():020d}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SegmentStore:
    """The segments of one recipe in one output directory."""

    def __init__(self, out: Path, recipe: str):
        self.root = Path(out) / STORE_DIR / recipe / "segments"

    def commit(self, rows: pa.Table, units: list[tuple[int, str]], usage: dict[str, Any]) -> str:
        """Record ``units`` (unit key, source id) as done with their ``rows`` (which carry ``_unit``)."""
        sid = new_segment_id()
        write_parquet_atomic(self.root / f"{sid}{ROWS_SUFFIX}", rows)
        table = pa.table(
            {"unit": pa.array([k for k, _ in units], pa.uint64()), "source_id": [s for _, s in units]},
            schema=UNITS_SCHEMA,
        )
        write_parquet_atomic(self.root / f"{sid}{UNITS_SUFFIX}", table, {b"polysynth.usage": json.dumps(usage).encode()})
        return sid

    def segments(self) -> list[str]:
        """Ids of committed segments, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(UNITS_SUFFIX)] for p in self.root.iterdir() if p.name.endswith(UNITS_SUFFIX))

    def unit_keys(self, sid: str) -> np.ndarray:
        column = pq.read_table(self.root / f"{sid}{UNITS_SUFFIX}", columns=["unit"]).column(0)
        return column.to_numpy(zero_copy_only=False).astype(np.uint64, copy=False)

    def usage(self, sid: str) -> dict[str, Any]:
        metadata = pq.read_schema(self.root / f"{sid}{UNITS_SUFFIX}").metadata or {}
        return json.loads(metadata.get(b"polysynth.usage", b"{}"))

    def rows(self, sid: str) -> pa.Table:
        return pq.read_table(self.root / f"{sid}{ROWS_SUFFIX}")

    def done_keys(self) -> KeySet:
        """Every unit any committed segment holds."""
        arrays = [self.unit_keys(sid) for sid in self.segments()]
        return KeySet(np.concatenate(arrays) if arrays else None)

    def discard_unfinished(self) -> int:
        """Delete rows files whose units file never appeared (a worker killed between the two writes).

        Only called by the driver while it holds the output lock and before any worker starts.
        """
        if not self.root.is_dir():
            return 0
        committed = set(self.segments())
        removed = 0
        for path in self.root.iterdir():
            if path.name.endswith(ROWS_SUFFIX) and path.name[: -len(ROWS_SUFFIX)] not in committed:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed

    def choose(self, wanted: KeySet) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
        """For each segment, the unit keys to read from it (first segment wins), and the mask of ``wanted``
        units found in some segment."""
        taken = np.zeros(len(wanted), dtype=bool)
        plan: list[tuple[str, np.ndarray]] = []
        for sid in self.segments():
            keys = self.unit_keys(sid)
            keys = keys[wanted.contains(keys)]
            positions = wanted.positions(keys)
            fresh = ~taken[positions]
            taken[positions[fresh]] = True
            plan.append((sid, keys[fresh]))
        return plan, taken

    def compact(self, min_segments: int = 32) -> int:
        """Merge every committed segment into one when there are at least ``min_segments``; returns how many
        were merged (0 when nothing was done). Duplicated units are kept once."""
        sids = self.segments()
        if len(sids) < min_segments:
            return 0
        seen = KeySet()
        rows_tables, units, usage_total = [], [], {}
        for sid in sids:
            table = pq.read_table(self.root / f"{sid}{UNITS_SUFFIX}")
            keys = table.column("unit").to_numpy(zero_copy_only=False).astype(np.uint64)
            fresh = ~seen.contains(keys)
            seen = KeySet(np.concatenate([seen.keys, keys[fresh]]))
            units += list(zip(keys[fresh].tolist(), np.asarray(table.column("source_id").to_pylist(), dtype=object)[fresh]))
            rows = self.rows(sid)
            rows_tables.append(rows.filter(pa.compute.is_in(rows[UNIT_COLUMN], pa.array(keys[fresh], pa.uint64()))))
            for name, value in self.usage(sid).items():
                if isinstance(value, (int, float)):
                    usage_total[name] = usage_total.get(name, 0) + value
        merged = pa.concat_tables(rows_tables, promote_options="permissive")
        self.commit(merged, [(int(k), str(s)) for k, s in units], usage_total)
        for sid in sids:  # units files first: once gone, their rows files are unfinished commits
            with contextlib.suppress(OSError):
                (self.root / f"{sid}{UNITS_SUFFIX}").unlink()
        for sid in sids:
            with contextlib.suppress(OSError):
                (self.root / f"{sid}{ROWS_SUFFIX}").unlink()
        return len(sids)
