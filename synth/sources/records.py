"""Input readers shared by the recipes: JSONL, Parquet (polars, lazily, in batches) or a Hugging Face dataset.

Every reader yields plain dicts and checks the columns a recipe needs, naming the file, row and field
of the first bad value instead of failing deep inside a library.

Example::

    for record in read_records(InputConfig(path="passages.jsonl"), {"id": str, "text": str}):
        ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from synth.config import InputConfig
from synth.errors import InputError

PARQUET_BATCH_ROWS = 4096


def check_fields(
    record: Any, required: Mapping[str, type], *, file: str, row: int | None, prefix: str = ""
) -> dict[str, Any]:
    """``record`` itself, checked: an object whose ``required`` fields are present, not null and of their type (a
    bool is no int). The first bad one raises an :class:`InputError` naming ``file``, ``row`` and the field, spelt
    ``prefix + name`` (``entities[0].`` for the objects of a list field)."""
    if not isinstance(record, dict):
        where = prefix.rstrip(".") or None
        raise InputError(f"expected an object, got {type(record).__name__}", file=file, row=row, field=where)
    for name, kind in required.items():
        field = prefix + name
        if name not in record:
            raise InputError("missing required field", file=file, row=row, field=field)
        value = record[name]
        if value is None:
            raise InputError("field is null", file=file, row=row, field=field)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise InputError(f"expected {kind.__name__}, got {type(value).__name__}", file=file, row=row, field=field)
    return record


def iter_jsonl(path: str | Path, required: Mapping[str, type]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-blank line of a JSON Lines file; lines are numbered from 1, blank ones
    counted but skipped; a UTF-8 byte order mark at the start is allowed."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            for row, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if row == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    bad = exc.object[exc.start]
                    raise InputError(
                        f"not UTF-8 (byte {exc.start}: can't decode byte 0x{bad:02x})", file=str(path), row=row
                    ) from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"not valid JSON ({exc.msg})", file=str(path), row=row) from None
                yield row, check_fields(record, required, file=str(path), row=row)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from None


def iter_parquet(path: str | Path, required: Mapping[str, type]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, row)`` of a Parquet file, numbered from 1, reading it lazily in batches with polars."""
    import polars as pl

    path = Path(path)
    try:
        schema = pl.scan_parquet(path).collect_schema()
    except Exception as exc:  # polars raises several error types for a bad file
        raise InputError(f"not a readable Parquet file ({type(exc).__name__})", file=str(path)) from None
    missing = [name for name in required if name not in schema]
    if missing:
        raise InputError("missing required column", file=str(path), field=missing[0])
    row = 0
    for frame in pl.scan_parquet(path).collect_batches(chunk_size=PARQUET_BATCH_ROWS):
        for record in frame.iter_rows(named=True):
            row += 1
            yield row, check_fields(record, required, file=str(path), row=row)


def iter_hf_dataset(
    name: str, config: str | None, split: str, required: Mapping[str, type]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, record)`` of a Hugging Face dataset, streamed (a local directory or a cached hub dataset; no
    download happens offline)."""
    import datasets

    source = f"hf:{name}" + (f"/{config}" if config else "") + f"[{split}]"
    try:
        dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as exc:  # datasets wraps many causes; the message is what the user needs
        raise InputError(f"cannot open dataset: {str(exc).splitlines()[0]}", file=source) from None
    for row, record in enumerate(dataset, start=1):
        yield row, check_fields(dict(record), required, file=source, row=row)


def input_name(spec: InputConfig) -> str:
    """The input as an error about one of its records names it: its path, or ``hf:NAME``."""
    return spec.path or f"hf:{spec.hf.name}"


def read_numbered_records(spec: InputConfig, required: Mapping[str, type]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row, record)`` of the input: ``.jsonl``/``.ndjson`` lines (``row``: the line number), ``.parquet`` or an HF
    dataset spec (``row``: the record's position, from 1). Each record is checked (:func:`check_fields`)."""
    if spec.hf is not None:
        yield from iter_hf_dataset(spec.hf.name, spec.hf.config, spec.hf.split, required)
        return
    path = Path(spec.path)
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from iter_jsonl(path, required)
    elif suffix == ".parquet":
        yield from iter_parquet(path, required)
    else:
        raise InputError("unsupported input format (expected .jsonl or .parquet)", file=str(path))


def read_records(spec: InputConfig, required: Mapping[str, type]) -> Iterator[dict[str, Any]]:
    """The records of :func:`read_numbered_records`, without their row numbers."""
    for _, record in read_numbered_records(spec, required):
        yield record
