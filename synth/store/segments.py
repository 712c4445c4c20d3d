"""The ledger: an append-only set of *segments*, each the rows and the unit keys of one finished batch.

::

    OUT/.polysynth/<recipe>/segments/<sid>.parquet   the batch's rows (kept and rejected, with ``_unit``);
                                                     its footer lists the batch's finished unit keys

A segment is one file that appears by atomic rename: the moment it appears, its units are done (a unit may have
no rows: a record with no target language). Recording a unit is therefore one file write whatever the size of
the run, nothing is rewritten on the hot path, and workers on several machines commit to one shared folder
without a coordinator (segment ids are unique: time, host, pid, random). Reading the done-set reads only the
footers.

Readers take a unit from the first segment (in id order) that holds it, so a batch committed twice (a retried
task whose first try had finished) counts once. :meth:`SegmentStore.compact` merges many segments into one
(the merged segment first, then the old ones are deleted: a kill at any point leaves every unit readable).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synth.store.files import raise_output_error, temp_file
from synth.store.location import Location
from synth.store.units import KeySet

log = logging.getLogger(__name__)

STORE_DIR = ".polysynth"
UNIT_COLUMN = "_unit"
SUFFIX = ".parquet"
UNITS_KEY = b"polysynth.units"  # the finished unit keys, packed little-endian uint64
USAGE_KEY = b"polysynth.usage"  # the batch's engine usage (JSON), for the report


def new_segment_id() -> str:
    """Sortable by creation time, unique across hosts and processes."""
    host = "".join(c for c in socket.gethostname() if c.isalnum())[:12] or "host"
    return f"{time.time_ns():020d}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SegmentStore:
    """The segments of one recipe in one output directory."""

    def __init__(self, out: Location | Path | str, recipe: str):
        self.location = Location(out)
        self.folder = f"{STORE_DIR}/{recipe}/segments"

    def _rel(self, sid: str) -> str:
        return f"{self.folder}/{sid}{SUFFIX}"

    def commit(self, rows: pa.Table, units: np.ndarray, usage: dict[str, Any]) -> str:
        """Record ``units`` (unit keys) as done, with their ``rows`` (which carry ``_unit``), in one atomic file."""
        sid = new_segment_id()
        metadata = {
            UNITS_KEY: np.asarray(units, dtype="<u8").tobytes(),
            USAGE_KEY: json.dumps(usage).encode(),
        }
        # No fsync on the hot path: a kill never loses a renamed segment, and one that a power loss left
        # unreadable is discarded by the next run (its units are redone).
        self.location.write_table(self._rel(sid), rows, metadata, durable=False)
        return sid

    def segments(self) -> list[str]:
        """Ids of committed segments, oldest first."""
        names = self.location.listdir(self.folder)
        return [n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX) and not n.startswith(".")]

    def _metadata(self, sid: str) -> dict[bytes, bytes]:
        return self.location.read_schema(self._rel(sid)).metadata or {}

    def unit_keys(self, sid: str) -> np.ndarray:
        return np.frombuffer(self._metadata(sid).get(UNITS_KEY, b""), dtype="<u8").astype(np.uint64)

    def usage(self, sid: str) -> dict[str, Any]:
        return json.loads(self._metadata(sid).get(USAGE_KEY, b"{}"))

    def rows(self, sid: str) -> pa.Table:
        return self.location.read_table(self._rel(sid))

    def done_keys(self) -> KeySet:
        """Every unit any committed segment holds. A segment whose footer cannot be read (a power loss before its
        data reached the disk) is deleted here, in the same pass, so its units count as not done. Only the driver
        calls this, holding the output lock."""
        arrays = []
        for sid in self.segments():
            try:
                arrays.append(self.unit_keys(sid))
            except (OSError, pa.ArrowInvalid) as exc:
                log.warning("discarding unreadable ledger segment %s (%s); its units will be redone", sid, exc)
                self.location.delete(self._rel(sid))
        return KeySet(np.concatenate(arrays) if arrays else None, owned=True)

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

    def compact(self, min_segments: int = 64) -> int:
        """Merge every committed segment into one when there are at least ``min_segments``; returns how many
        were merged (0 when nothing was done). Streams the rows; a unit held twice is kept once."""
        sids = self.segments()
        if len(sids) < min_segments:
            return 0
        seen = KeySet()
        kept_units: list[np.ndarray] = []
        usage_total: dict[str, float] = {}
        target = self._rel(new_segment_id())
        tmp = temp_file(self.location.scratch_dir(self.folder), SUFFIX)
        writer: pq.ParquetWriter | None = None
        try:
            for sid in sids:
                keys = self.unit_keys(sid)
                keys = keys[~seen.contains(keys)]
                seen = KeySet(np.concatenate([seen.keys, keys]), owned=True)
                kept_units.append(keys)
                rows = self.rows(sid)
                rows = rows.filter(pc.is_in(rows[UNIT_COLUMN], value_set=pa.array(keys, pa.uint64())))
                schema = rows.schema.with_metadata(None)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                writer.write_table(rows.replace_schema_metadata(None).cast(schema))
                for name, value in self.usage(sid).items():
                    if isinstance(value, (int, float)):
                        usage_total[name] = usage_total.get(name, 0) + value
            units = np.concatenate(kept_units) if kept_units else np.empty(0, np.uint64)
            writer.add_key_value_metadata(
                {UNITS_KEY: units.astype("<u8").tobytes(), USAGE_KEY: json.dumps(usage_total).encode()}
            )
            writer.close()
            writer = None
            self.location.put_file(tmp, target)
        except OSError as exc:
            with contextlib.suppress(Exception):
                writer and writer.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise_output_error(exc, self.location.display(target))
        for sid in sids:
            self.location.delete(self._rel(sid))
        return len(sids)
