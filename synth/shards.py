"""The shard store: Parquet parts per batch, final HF-layout shards, the manifest and the output lock.

Layout of an output directory (itself a valid Hugging Face dataset repository)::

    OUT/manifest.json                              single source of truth: what is done
    OUT/README.md                                  YAML ``configs:`` per <recipe>-<lang>
    OUT/<recipe>/<lang>/train-00000-of-00002.parquet   kept rows
    OUT/<recipe>/_rejected/train-00000-of-00001.parquet rejected rows with reject_reason
    OUT/.work/<recipe>/<group>/batch-00007.parquet     durable per-batch parts (finalised shards derive from them)

Every file becomes visible only by an atomic rename of a fully written, fsynced temp file, so a
``kill -9`` at any moment leaves either the old file or the new one. A batch counts as done only once the
manifest says so; parts of unfinished batches are overwritten when the batch is redone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from synth.errors import OutputError

MANIFEST = "manifest.json"
WORK_DIR = ".work"
LOCK_FILE = ".lock"
REJECTED = "_rejected"
TEMP_PREFIX = ".tmp-"
SHARD_NAME = re.compile(r"^train-(\d{5})-of-(\d{5})\.parquet$")
# mkstemp creates 0600 files; published files get the usual permissions of the user's umask.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def _temp_file(directory: Path, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=directory)
    os.close(fd)
    os.chmod(name, FILE_MODE)
    return Path(name)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _raise_output_error(exc: OSError, path: Path) -> None:
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        raise OutputError("disk full (or file size limit reached) while writing", file=str(path)) from None
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise OutputError("output is not writable", file=str(path)) from None
    raise OutputError(f"cannot write: {exc.strerror}", file=str(path)) from None


def check_writable(out: Path) -> None:
    """Raise OutputError unless ``out`` is (or can be made) a writable directory; leaves nothing behind.

    Probes with a temp file in ``out`` or its nearest existing ancestor: permission bits do not stop root,
    but a read-only mount or an immutable directory does, and a regular file in the path stops everyone.
    """
    probe_dir = out
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        if not probe_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{probe_dir} is a file, not a directory")
        _temp_file(probe_dir).unlink()
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise OutputError(f"cannot create the output directory: {exc.strerror}", file=str(out)) from None
        _raise_output_error(exc, out)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(path.parent)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _raise_output_error(exc, path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_parquet_atomic(path: Path, table: pa.Table) -> dict[str, Any]:
    """Write one Parquet file atomically; returns its manifest entry (path relative to nothing, rows, sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(path.parent, ".parquet")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        entry = {"rows": table.num_rows, "bytes": os.path.getsize(tmp), "sha256": sha256_file(tmp)}
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return entry
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _raise_output_error(exc, path)
        raise  # unreachable: _raise_output_error always raises


class OutputLock:
    """An exclusive lock on an output directory; a second run gets an error naming the holder's pid.

    A lock left by a process that no longer exists (a crash) is taken over.
    """

    def __init__(self, out: Path):
        self.path = out / LOCK_FILE
        self._held = False

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a regular file in the way (ENOTDIR/EEXIST), read-only, ...
            _raise_output_error(exc, self.path.parent)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self.check()
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()  # stale lock of a crashed run
                continue
            except OSError as exc:
                _raise_output_error(exc, self.path)
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            self._held = True
            return
        raise OutputError("could not take the output lock", file=str(self.path))

    def check(self) -> None:
        """Raise the error a second run gets while a live process holds the lock (takes nothing)."""
        if self._held:
            return
        holder = self._holder()
        if holder is None and self.path.exists():
            time.sleep(0.2)  # created (O_EXCL) but its pid not written yet: give the holder a moment
            holder = self._holder()
        if holder is not None and _pid_alive(holder):
            raise OutputError(
                f"another run (pid {holder}) is writing this output directory; wait for it or use another --out",
                file=str(self.path.parent),
            )

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or "0") or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._held = False

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped) is not a live writer.
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    return True


class Manifest:
    """``OUT/manifest.json``: per recipe, its config hash, batches done (with parts and stats) and shards.

    Written atomically after every change, so it never describes a state that is not on disk.
    """

    def __init__(self, out: Path):
        self.out = out
        self.path = out / MANIFEST
        self.data: dict[str, Any] = {"format": 1, "recipes": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise OutputError(f"manifest is unreadable ({exc})", file=str(self.path)) from None

    def save(self) -> None:
        atomic_write_bytes(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode("utf-8"))

    @property
    def recipes(self) -> dict[str, Any]:
        return self.data["recipes"]

    def check(self, recipe: str, config_hash: str) -> None:
        """Refuse when the directory holds ``recipe`` under another config (writes nothing)."""
        state = self.recipes.get(recipe)
        if state is not None and state["config_hash"] != config_hash:
            raise OutputError(
                f"holds a '{recipe}' run with another config (hash {state['config_hash']}, this one {config_hash}); "
                "use another --out, or delete the directory to start over",
                file=str(self.out),
            )

    def begin(self, recipe: str, config_hash: str, config: dict[str, Any]) -> None:
        """Start or resume ``recipe``; refuse when the directory holds the same recipe under another config."""
        self.check(recipe, config_hash)
        state = self.recipes.get(recipe)
        if state is None:
            self.recipes[recipe] = {
                "config_hash": config_hash,
                "config": config,
                "status": "running",
                "batches": {},
                "shards": [],
                "started_at": _now(),
            }
        else:
            state["config"] = config  # same hash: only runtime settings (limit, runner, out) may differ
        self.save()

    def batches(self, recipe: str) -> dict[str, Any]:
        return self.recipes[recipe]["batches"]

    def is_done(self, recipe: str, batch: int) -> bool:
        return f"{batch:05d}" in self.batches(recipe)

    def record_batch(self, recipe: str, batch: int, entry: dict[str, Any]) -> None:
        state = self.recipes[recipe]
        state["batches"][f"{batch:05d}"] = entry
        state["status"] = "running"
        self.save()

    def set_status(self, recipe: str, status: str, **fields: Any) -> None:
        self.recipes[recipe].update(status=status, **fields)
        self.save()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ShardSpec:
    shard_rows: int
    shard_bytes: int


def part_path(out: Path, recipe: str, group: str, batch: int) -> Path:
    return out / WORK_DIR / recipe / group / f"batch-{batch:05d}.parquet"


def write_batch_parts(out: Path, recipe: str, batch: int, tables: dict[str, pa.Table]) -> list[dict[str, Any]]:
    """Write one batch's rows, one part per group (a language or ``_rejected``); returns manifest entries."""
    entries = []
    for group, table in sorted(tables.items()):
        path = part_path(out, recipe, group, batch)
        entry = write_parquet_atomic(path, table)
        entries.append({"group": group, "path": str(path.relative_to(out)), **entry})
    return entries


def _iter_part_batches(out: Path, parts: Iterable[str]) -> Iterator[pa.RecordBatch]:
    for rel in parts:
        yield from pq.ParquetFile(out / rel).iter_batches(batch_size=2048)


class _RollingWriter:
    """Writes record batches into temp shard files, rolling over by rows and bytes."""

    def __init__(self, target: Path, spec: ShardSpec):
        self.target, self.spec = target, spec
        self.done: list[tuple[Path, int]] = []
        self.writer: pq.ParquetWriter | None = None
        self.path: Path | None = None
        self.rows = self.bytes = 0

    def _roll(self, schema: pa.Schema) -> None:
        self._close_current()
        self.path = _temp_file(self.target, ".parquet")
        self.writer = pq.ParquetWriter(self.path, schema, compression="zstd")
        self.rows = self.bytes = 0

    def _close_current(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.done.append((self.path, self.rows))
            self.writer = None

    def write(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            if self.writer is None or self.rows >= self.spec.shard_rows or self.bytes >= self.spec.shard_bytes:
                self._roll(batch.schema)
            chunk = batch.slice(0, self.spec.shard_rows - self.rows)
            self.writer.write_batch(chunk)
            self.rows += chunk.num_rows
            self.bytes += chunk.nbytes
            batch = batch.slice(chunk.num_rows)

    def close(self) -> list[tuple[Path, int]]:
        self._close_current()
        return self.done

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        for path in [p for p, _ in self.done] + ([self.path] if self.path else []):
            with contextlib.suppress(OSError):
                path.unlink()


def finalize_group(out: Path, recipe: str, group: str, parts: list[str], spec: ShardSpec) -> list[dict[str, Any]]:
    """(Re)build ``OUT/<recipe>/<group>/train-*.parquet`` from the group's parts, streaming.

    New shards are written under temp names and renamed once their count (the ``of-MMMMM``) is known;
    shards of an earlier finalisation that are not in the new set are removed.
    """
    target = out / recipe / group
    target.mkdir(parents=True, exist_ok=True)
    rolling = _RollingWriter(target, spec)
    try:
        for record_batch in _iter_part_batches(out, parts):
            rolling.write(record_batch)
        temps = rolling.close()
    except OSError as exc:
        rolling.abort()
        _raise_output_error(exc, target)
    total = len(temps)
    shards, final_names = [], set()
    for index, (path, rows) in enumerate(temps):
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
        final = target / f"train-{index:05d}-of-{total:05d}.parquet"
        final_names.add(final.name)
        shards.append(
            {
                "group": group,
                "path": str(final.relative_to(out)),
                "rows": rows,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
        os.replace(path, final)
    for stale in target.iterdir():
        if SHARD_NAME.match(stale.name) and stale.name not in final_names:
            stale.unlink()
    _fsync_dir(target)
    return shards


def discard_temp_files(out: Path) -> int:
    """Remove temp files left by a killed run (they were never part of any manifest entry)."""
    removed = 0
    if not out.exists():
        return 0
    for path in out.rglob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def remove_recipe_output(out: Path, recipe: str) -> None:
    """Delete a recipe's shards and parts (used only when the user asks to start over)."""
    for path in (out / recipe, out / WORK_DIR / recipe):
        shutil.rmtree(path, ignore_errors=True)
