"""Where an output lives: a local folder or a folder on any fsspec file system (``s3://bucket/prefix``, …).

Every store write goes through :class:`Location` so the same code runs on both. What "appears whole" means:

* local: a temp file in the target folder, fsynced, renamed over the target (POSIX rename is atomic);
* object stores: one ``PUT`` of the whole object (S3 and compatible stores never show a partial object).

Nothing in the store relies on renaming a folder, listing-then-deleting as a commit, or appending to an object,
so both kinds behave alike. The S3 endpoint comes from the standard ``AWS_ENDPOINT_URL`` variable (botocore
reads it), credentials from the usual AWS variables or files.

Example::

    loc = Location("s3://bucket/run")
    loc.write_bytes("manifest.json", b"{}")
    loc.read_bytes("manifest.json")
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from synth.errors import OutputError
from synth.store.files import atomic_write_bytes, commit_file, raise_output_error, write_parquet_atomic


class Location:
    """A folder on a local or remote file system; paths given to its methods are relative to it (``a/b.parquet``)."""

    def __init__(self, where: str | Path | "Location"):
        if isinstance(where, Location):
            self.__dict__.update(where.__dict__)
            return
        text = str(where)
        if "://" in text and not text.startswith("file://"):
            try:
                import fsspec

                self.fs, self.root = fsspec.core.url_to_fs(text)
            except (ImportError, ValueError) as exc:
                raise OutputError(f"no file system for this URL ({exc})", file=text) from None
            self.local = False
            self.url = text.rstrip("/")
            self.root = self.root.rstrip("/")
        else:
            from fsspec.implementations.local import LocalFileSystem

            self.fs = LocalFileSystem()
            self.root = str(Path(text.removeprefix("file://")).resolve())
            self.local = True
            self.url = self.root

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, rel: str) -> str:
        return self.path(rel)

    def path(self, rel: str = "") -> str:
        """The file system path (no scheme) of ``rel``."""
        return f"{self.root}/{rel}" if rel else self.root

    def display(self, rel: str = "") -> str:
        """``rel`` as a user reads it in a message (with the scheme for remote outputs)."""
        return f"{self.url}/{rel}" if rel else self.url

    # -- writes: whole files only ---------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        if self.local:
            atomic_write_bytes(Path(self.path(rel)), data)
            return
        try:
            self.fs.pipe_file(self.path(rel), data)
        except OSError as exc:
            raise_output_error(exc, self.display(rel))

    def write_table(
        self, rel: str, table: pa.Table, metadata: dict[bytes, bytes] | None = None, *, durable: bool = True
    ) -> int:
        """Write a zstd Parquet file whole; returns its size in bytes (``durable``: see ``write_parquet_atomic``)."""
        if self.local:
            return write_parquet_atomic(Path(self.path(rel)), table, metadata, durable=durable)
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.write_bytes(rel, buffer.getvalue())
        return buffer.tell()

    def scratch_dir(self, rel: str) -> Path:
        """Where to write a file bound for the folder ``rel`` before :meth:`put_file`: that folder (created if missing)
        for a local output, so the file is a rename away; the system's temp folder for a remote one."""
        if not self.local:
            return Path(tempfile.gettempdir())
        folder = Path(self.path(rel))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def put_file(self, local_file: Path, rel: str) -> None:
        """Move a finished local file (a temp file written for this location, :func:`synth.store.files.temp_file`)
        to ``rel``: locally fsynced and renamed into place (:func:`synth.store.files.commit_file`), remotely
        uploaded whole and the local file removed."""
        if self.local:
            commit_file(local_file, Path(self.path(rel)))
            return
        try:
            self.fs.put_file(str(local_file), self.path(rel))
        except OSError as exc:
            raise_output_error(exc, self.display(rel))
        finally:
            with contextlib.suppress(OSError):
                local_file.unlink()

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm_file(self.path(rel))

    # -- reads ------------------------------------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def open(self, rel: str) -> BinaryIO:
        return self.fs.open(self.path(rel), "rb")

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        if self.local:
            return pq.read_table(self.path(rel), columns=columns)
        with self.open(rel) as handle:
            return pq.read_table(handle, columns=columns)

    def read_schema(self, rel: str) -> pa.Schema:
        if self.local:
            return pq.read_schema(self.path(rel))
        with self.open(rel) as handle:
            return pq.read_schema(handle)

    def parquet_file(self, rel: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.path(rel) if self.local else self.open(rel))

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) of the files and folders directly in ``rel``; empty when it does not exist."""
        if self.local:
            folder = Path(self.path(rel))
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        self.fs.invalidate_cache(self.path(rel))  # listings are cached by s3fs; other workers add files
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    def probe(self) -> None:
        """Check that the location can be written (remote: a probe object is put and deleted); one-line errors."""
        rel = f".polysynth/.probe-{os.getpid()}"
        try:
            self.fs.pipe_file(self.path(rel), b"")
            self.fs.rm_file(self.path(rel))
        except Exception as exc:  # noqa: BLE001 - botocore/aiohttp raise many kinds; the user needs one line
            cause = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            raise OutputError(f"cannot write to the output ({cause})", file=self.url) from None

    def storage_options(self) -> dict[str, Any]:
        """What ``datasets``/polars need to read this location (empty for local folders)."""
        return {} if self.local else dict(getattr(self.fs, "storage_options", {}))
