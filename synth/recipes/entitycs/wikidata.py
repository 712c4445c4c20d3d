"""Build a lexicon from a Wikidata JSON dump, for the languages and entities CLDR does not cover.

``latest-all.json.gz`` is over 100 GB and a build takes hours, so the dump is streamed with flat memory
(rows go out in part files), a crashed build resumes from its checkpoint, and the English Wikipedia
redirects that become aliases are looked up in SQLite on disk rather than held in memory.

Command line: ``synth lexicon build latest-all.json.gz --out wikidata.parquet --languages de,hi``
(``--redirects enwiki-pages-articles.xml.bz2`` adds redirects as aliases; rerun the same command to resume).
"""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq

from synth.errors import InputError
from synth.recipes.entitycs.lexicon import LEXICON_SCHEMA, unique_aliases, write_lexicon
from synth.sources.wikipedia.dump import iter_redirects, normalize_title
from synth.store.files import atomic_path, atomic_write_bytes


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


class _RedirectIndex:
    """English Wikipedia redirects on disk (SQLite), so the alias join never holds them in memory.

    Built once from a MediaWiki XML dump (``.xml[.bz2|.gz]``, via :func:`synth.sources.wikipedia.dump.iter_redirects`)
    or a TSV of ``title<TAB>target`` lines.
    """

    def __init__(self, db_path: Path):
        self.db = sqlite3.connect(db_path)

    @classmethod
    def build(cls, source: Path, db_path: Path) -> _RedirectIndex:
        with atomic_path(db_path, ".sqlite") as tmp:  # sqlite makes a database of the empty temp file
            db = sqlite3.connect(tmp)
            db.execute("CREATE TABLE redirects (target TEXT, title TEXT)")
            batch: list[tuple[str, str]] = []
            for title, target in cls._pairs(source):
                batch.append((target, title))
                if len(batch) >= 50_000:
                    db.executemany("INSERT INTO redirects VALUES (?, ?)", batch)
                    batch.clear()
            db.executemany("INSERT INTO redirects VALUES (?, ?)", batch)
            db.execute("CREATE INDEX by_target ON redirects (target)")
            db.commit()
            db.close()
        return cls(db_path)

    @staticmethod
    def _pairs(source: Path) -> Iterator[tuple[str, str]]:
        if ".xml" in source.suffixes:
            yield from iter_redirects(source)
            return
        with _open_text(source) as handle:
            for number, line in enumerate(handle, start=1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 2:
                    raise InputError("expected 'title<TAB>target'", file=str(source), row=number)
                yield normalize_title(parts[0]), normalize_title(parts[1])

    def titles_to(self, target: str) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT title FROM redirects WHERE target = ?", (target,))]

    def close(self) -> None:
        self.db.close()


def _entity_row(
    entity: dict[str, Any], languages: set[str] | None, redirects: _RedirectIndex | None
) -> dict[str, Any] | None:
    """A lexicon row from one Wikidata entity, or ``None`` when it has no English Wikipedia article."""
    title = ((entity.get("sitelinks") or {}).get("enwiki") or {}).get("title")
    if not title:
        return None
    labels = [
        {"lang": lang, "label": value["value"], "label_source": "wikidata"}
        for lang, value in sorted((entity.get("labels") or {}).items())
        if (languages is None or lang in languages) and value.get("value")
    ]
    english = [((entity.get("labels") or {}).get("en") or {}).get("value", "")]
    english += [alias.get("value", "") for alias in (entity.get("aliases") or {}).get("en", [])]
    if redirects is not None:
        english += redirects.titles_to(title)
    return {"entity_id": entity["id"], "en_title": title, "aliases": unique_aliases(english, title), "labels": labels}


def _checkpoint_key(dump: Path, languages: set[str] | None, redirects: Path | None) -> dict[str, Any]:
    stat = dump.stat()
    return {
        "dump": str(dump.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "languages": sorted(languages) if languages is not None else None,
        "redirects": str(redirects.resolve()) if redirects is not None else None,
    }


def _write_json(data: dict[str, Any], path: Path) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=1).encode("utf-8"))


def build_from_wikidata_dump(
    dump_path: str | Path,
    out_path: str | Path,
    languages: set[str] | None = None,
    redirects: str | Path | None = None,
    *,
    skip_bad_lines: bool = False,
    part_rows: int = 100_000,
) -> dict[str, int]:
    """Stream a Wikidata JSON dump (``latest-all.json.gz``/``.bz2``/plain) into a lexicon Parquet file.

    The dump is one JSON array with one entity per line; only items with an English Wikipedia sitelink
    become rows (``id``, ``sitelinks.enwiki.title``, ``labels`` in ``languages`` or all, and as aliases
    the English label/aliases plus, given ``redirects``, every redirect to the title).

    Memory stays flat: rows are buffered ``part_rows`` at a time and written as part files.
    Resuming: the build keeps ``<out>.parts/`` with ``part-NNNNN.parquet`` files and ``checkpoint.json``
    (dump identity, lines done, parts, counts), each replaced atomically after a part is written. Run the
    same call again after a crash and it skips the lines already done (a compressed stream has no
    seekable offsets, so they are decompressed again but not parsed) and goes on from the next part.
    At the end the parts are joined into ``out_path`` (one row group per part) and the folder removed.

    A line that is not JSON raises :class:`InputError` naming the file and line number, unless
    ``skip_bad_lines`` (then it is counted in ``bad_lines``).
    """
    dump = Path(dump_path)
    out = Path(out_path)
    if not dump.is_file():
        raise InputError("Wikidata dump not found", file=str(dump))
    redirects_path = Path(redirects) if redirects is not None else None
    if redirects_path is not None and not redirects_path.is_file():
        raise InputError("redirects file not found", file=str(redirects_path))
    parts_dir = out.with_name(out.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = parts_dir / "checkpoint.json"
    key = _checkpoint_key(dump, languages, redirects_path)
    state: dict[str, Any] = {
        "key": key,
        "lines_done": 0,
        "parts": [],
        "redirects_indexed": False,
        "counts": {"entities": 0, "labels": 0, "no_enwiki": 0, "not_item": 0, "bad_lines": 0},
    }
    if checkpoint_path.is_file():
        saved = json.loads(checkpoint_path.read_text(encoding="utf-8"))
        if saved.get("key") != key:
            raise InputError(
                "an unfinished build of another dump or language set is here; delete the folder to start over",
                file=str(parts_dir),
            )
        state = saved
    resumed_from = state["lines_done"]
    # A part written after the last checkpoint is not in it; it is rewritten from its first line.
    for stale in parts_dir.glob("part-*"):
        if stale.name not in state["parts"]:
            stale.unlink()

    index: _RedirectIndex | None = None
    if redirects_path is not None:
        db_path = parts_dir / "redirects.sqlite"
        if state["redirects_indexed"] and db_path.is_file():
            index = _RedirectIndex(db_path)
        else:
            index = _RedirectIndex.build(redirects_path, db_path)
            state["redirects_indexed"] = True
            _write_json(state, checkpoint_path)

    counts = state["counts"]
    buffer: list[dict[str, Any]] = []

    def flush(lines_done: int) -> None:
        name = f"part-{len(state['parts']):05d}.parquet"
        write_lexicon(buffer, parts_dir / name)
        state["parts"].append(name)
        state["lines_done"] = lines_done
        _write_json(state, checkpoint_path)
        buffer.clear()

    try:
        with _open_text(dump) as handle:
            # Line 1 is "[" and the last is "]"; entity lines are numbered by their line in the file.
            for number, line in enumerate(handle, start=1):
                if number <= resumed_from:
                    continue
                text = line.strip().rstrip(",")
                if text in ("[", "]", ""):
                    continue
                try:
                    entity = json.loads(text)
                    if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
                        raise ValueError("not an entity object with an 'id'")
                except ValueError as exc:
                    if not skip_bad_lines:
                        raise InputError(f"not a Wikidata entity line ({exc})", file=str(dump), row=number) from None
                    counts["bad_lines"] += 1
                    continue
                if entity.get("type", "item") != "item" or not entity["id"].startswith("Q"):
                    counts["not_item"] += 1
                    continue
                row = _entity_row(entity, languages, index)
                if row is None:
                    counts["no_enwiki"] += 1
                    continue
                buffer.append(row)
                counts["entities"] += 1
                counts["labels"] += len(row["labels"])
                if len(buffer) >= part_rows:
                    flush(number)
            if buffer:
                flush(number)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read dump: {exc}", file=str(dump)) from None
    finally:
        if index is not None:
            index.close()

    with atomic_path(out, ".parquet") as tmp, pq.ParquetWriter(tmp, LEXICON_SCHEMA, compression="zstd") as writer:
        for name in state["parts"]:
            writer.write_table(pq.read_table(parts_dir / name, schema=LEXICON_SCHEMA))
    shutil.rmtree(parts_dir)
    return {**counts, "parts": len(state["parts"]), "resumed_from_line": resumed_from}
