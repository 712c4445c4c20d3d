"""Entity lexicon: entity id → English Wikipedia title and aliases → label per language, with its source.

Parquet layout (one row per entity, so a dump streams straight into rows and row groups)::

    entity_id     string                 Wikidata QID ("Q17") or "cldr:<kind>:<code>" ("cldr:territory:JP")
    en_title      string                 English Wikipedia title ("Japan")
    aliases       list<string>           other English names: Wikipedia redirects, Wikidata English
                                         label/aliases, CLDR-to-Wikipedia title variants
    labels        list<struct<lang: string, label: string, label_source: string>>
                                         label_source is "wikidata", "cldr" or "llm"

Two builders write it: :func:`build_cldr_lexicon` (the offline default shipped as
``data/lexicon/cldr.parquet``, from Unicode CLDR through babel) and :func:`build_from_wikidata_dump`
(streaming and resumable over ``latest-all.json.gz``/``.bz2``).

Example::

    from synth.recipes.entitycs.lexicon import load_lexicon, label_for
    lexicon = load_lexicon()                     # the shipped CLDR lexicon
    japan = lexicon.lookup("Japan")
    lexicon.labels(japan)["de"]                  # ("Japan", "cldr")
    label_for("Germany", "ja")                   # "ドイツ"

Command line: ``python -m synth.recipes.entitycs.lexicon cldr --out data/lexicon/cldr.parquet`` or
``python -m synth.recipes.entitycs.lexicon wikidata latest-all.json.gz --out wikidata.parquet --languages de,hi``.
"""

from __future__ import annotations

import argparse
import bz2
import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from synth.errors import ConfigError, InputError
from synth.paths import DATA_DIR

DEFAULT_LEXICON = DATA_DIR / "lexicon" / "cldr.parquet"
LABEL_SOURCES = ("wikidata", "cldr", "llm")

LABEL_TYPE = pa.struct([("lang", pa.string()), ("label", pa.string()), ("label_source", pa.string())])
LEXICON_SCHEMA = pa.schema(
    [
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("en_title", pa.string(), nullable=False),
        pa.field("aliases", pa.list_(pa.string())),
        pa.field("labels", pa.list_(LABEL_TYPE)),
    ]
)

# The ~70 languages of the shipped lexicon: the widely spoken languages of the EntityCS/XTREME sets that
# CLDR covers, across Latin, Cyrillic, Arabic, Brahmic, CJK and other scripts.
CLDR_LANGUAGES = (
    "af",
    "am",
    "ar",
    "az",
    "be",
    "bg",
    "bn",
    "bs",
    "ca",
    "cs",
    "cy",
    "da",
    "de",
    "el",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fil",
    "fr",
    "ga",
    "gl",
    "gu",
    "ha",
    "he",
    "hi",
    "hr",
    "hu",
    "hy",
    "id",
    "ig",
    "is",
    "it",
    "ja",
    "jv",
    "ka",
    "kk",
    "km",
    "kn",
    "ko",
    "ky",
    "lo",
    "lt",
    "lv",
    "mk",
    "ml",
    "mn",
    "mr",
    "ms",
    "my",
    "nb",
    "ne",
    "nl",
    "pa",
    "pl",
    "pt",
    "ro",
    "ru",
    "si",
    "sk",
    "sl",
    "so",
    "sq",
    "sr",
    "sv",
    "sw",
    "ta",
    "te",
    "th",
    "tr",
    "uk",
    "ur",
    "uz",
    "vi",
    "yo",
    "zh",
    "zu",
)
# CLDR pseudo-regions that are not places.
_NOT_TERRITORIES = {"ZZ", "XA", "XB", "QO", "EZ"}
_NOT_LANGUAGES = {"und", "zxx", "mul", "mis"}

# English Wikipedia titles of CLDR entities whose CLDR English name differs from the article title.
WIKIPEDIA_TITLES: dict[str, tuple[str, ...]] = {
    "cldr:territory:US": ("United States of America",),
    "cldr:territory:TR": ("Turkey",),
    "cldr:territory:CZ": ("Czech Republic",),
    "cldr:territory:CD": ("Democratic Republic of the Congo",),
    "cldr:territory:CG": ("Republic of the Congo",),
    "cldr:territory:CI": ("Ivory Coast",),
    "cldr:territory:PS": ("State of Palestine", "Palestine"),
    "cldr:territory:VA": ("Vatican City",),
    "cldr:territory:TL": ("East Timor",),
    "cldr:territory:CV": ("Cape Verde",),
    "cldr:territory:MO": ("Macau",),
    "cldr:territory:FM": ("Federated States of Micronesia",),
    "cldr:territory:BS": ("The Bahamas",),
    "cldr:territory:GM": ("The Gambia",),
    "cldr:territory:IE": ("Republic of Ireland",),
    "cldr:territory:CN": ("People's Republic of China",),
    "cldr:territory:MK": ("Republic of Macedonia", "Macedonia"),
    "cldr:territory:SZ": ("Swaziland",),
    "cldr:territory:GE": ("Georgia (country)",),
    "cldr:territory:MM": ("Burma",),
    "cldr:currency:USD": ("United States dollar",),
    "cldr:currency:GBP": ("Pound sterling",),
    "cldr:city:America/New_York": ("New York City",),
    "cldr:city:Asia/Calcutta": ("Calcutta",),
    "cldr:city:Europe/Kiev": ("Kiev",),
    "cldr:city:Asia/Saigon": ("Saigon",),
}


@dataclass(frozen=True)
class Entity:
    """A lexicon entry: its id, English Wikipedia title and other English names."""

    entity_id: str
    en_title: str
    aliases: tuple[str, ...] = ()


def _first_upper(title: str) -> str:
    title = " ".join(title.replace("_", " ").split())
    return title[:1].upper() + title[1:]


class Lexicon:
    """Title → entity → labels, held in memory (load a Wikidata lexicon with ``languages`` to keep it small).

    ``lookup`` tries, in order: the title, then aliases, with the first letter case-insensitive (as
    Wikipedia titles are), then a whole case-insensitive match ("US dollar" → "US Dollar"). Among
    entities sharing a name the one written first wins (CLDR: territory before city of the same name).
    """

    def __init__(self, rows: Iterable[dict[str, Any]], languages: set[str] | None = None):
        self._entities: dict[str, Entity] = {}
        self._labels: dict[str, dict[str, tuple[str, str]]] = {}
        self._by_title: dict[str, str] = {}
        self._by_alias: dict[str, str] = {}
        self._by_fold: dict[str, str] = {}
        self._fold_alias: dict[str, str] = {}
        self.available_languages: set[str] = set()
        self._examples: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for row in rows:
            entity = Entity(row["entity_id"], row["en_title"], tuple(row.get("aliases") or ()))
            labels = {}
            for item in row.get("labels") or ():
                self.available_languages.add(item["lang"])
                if languages is None or item["lang"] in languages:
                    labels[item["lang"]] = (item["label"], item["label_source"])
            self._add(entity, labels)

    def _add(self, entity: Entity, labels: dict[str, tuple[str, str]]) -> None:
        self._entities[entity.entity_id] = entity
        self._labels[entity.entity_id] = labels
        title = _first_upper(entity.en_title)
        self._by_title.setdefault(title, entity.entity_id)
        self._by_fold.setdefault(title.casefold(), entity.entity_id)
        for alias in entity.aliases:
            alias = _first_upper(alias)
            self._by_alias.setdefault(alias, entity.entity_id)
            self._fold_alias.setdefault(alias.casefold(), entity.entity_id)

    def __len__(self) -> int:
        return len(self._entities)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self._entities.values())

    def get(self, entity_id: str) -> Entity | None:
        return self._entities.get(entity_id)

    def lookup(self, title: str) -> Entity | None:
        """The entity a Wikipedia title (or an English name) refers to, or ``None``."""
        key = _first_upper(title.split("#", 1)[0])
        if not key:
            return None
        fold = key.casefold()
        entity_id = (
            self._by_title.get(key) or self._by_alias.get(key) or self._by_fold.get(fold) or self._fold_alias.get(fold)
        )
        return self._entities[entity_id] if entity_id else None

    def labels(self, entity: Entity | str) -> dict[str, tuple[str, str]]:
        """``{lang: (label, label_source)}`` of an entity (or entity id)."""
        entity_id = entity if isinstance(entity, str) else entity.entity_id
        return self._labels.get(entity_id, {})

    def examples(self, lang: str, n: int) -> list[tuple[str, str]]:
        """``n`` fixed ``(en_title, label)`` pairs with non-LLM labels in ``lang``, for few-shot prompts.

        The pick is a hash order of entity ids, so it is varied across kinds and the same on every call
        (a shared prompt prefix per language, which prefix caching reuses).
        """
        key = (lang, n)
        if key not in self._examples:
            pool = [
                (hashlib.sha256(f"{lang}:{entity_id}".encode()).digest(), entity_id)
                for entity_id, labels in self._labels.items()
                if lang in labels and labels[lang][1] != "llm"
            ]
            self._examples[key] = [(self._entities[e].en_title, self._labels[e][lang][0]) for _, e in sorted(pool)[:n]]
        return self._examples[key]


def load_lexicon(path: str | Path | None = None, languages: Iterable[str] | None = None) -> Lexicon:
    """Read a lexicon Parquet file in batches; ``None`` → the shipped CLDR lexicon.

    ``languages`` keeps only those labels in memory; ``Lexicon.available_languages`` still lists all.
    """
    path = Path(path) if path is not None else DEFAULT_LEXICON
    if not path.is_file():
        raise InputError("lexicon not found", file=str(path))
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", file=str(path)) from None
    missing = [name for name in LEXICON_SCHEMA.names if name not in parquet.schema_arrow.names]
    if missing:
        raise InputError("not a lexicon: missing column", file=str(path), field=missing[0])

    def rows() -> Iterator[dict[str, Any]]:
        for batch in parquet.iter_batches(batch_size=10_000, columns=LEXICON_SCHEMA.names):
            yield from batch.to_pylist()

    return Lexicon(rows(), set(languages) if languages is not None else None)


@functools.lru_cache(maxsize=1)
def load_default_lexicon() -> Lexicon:
    """The shipped CLDR lexicon, loaded once per process."""
    return load_lexicon(DEFAULT_LEXICON)


def label_for(english_name: str, lang: str) -> str | None:
    """The ``lang`` name of a country, city, language or currency given its English name, else ``None``.

    Uses the shipped CLDR lexicon; ``lang`` may carry a region/script (``"pt-BR"`` falls back to ``"pt"``).

    >>> label_for("Japan", "de")
    'Japan'
    """
    lexicon = load_default_lexicon()
    entity = lexicon.lookup(english_name)
    if entity is None:
        return None
    labels = lexicon.labels(entity)
    code = lang.replace("_", "-").lower()
    found = labels.get(code) or labels.get(code.split("-", 1)[0])
    return found[0] if found else None


def _write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows atomically (temp file, then rename), so a crash never leaves half a file at ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=LEXICON_SCHEMA), tmp, compression="zstd")
    os.replace(tmp, path)


# --- CLDR ----------------------------------------------------------------------------------------


_PARENTHETICAL = re.compile(r"\s*[(（][^()（）]*[)）]$")


def _title_variants(name: str) -> list[str]:
    """Wikipedia-style spellings of a CLDR English name ("Bosnia & Herzegovina" → "Bosnia and Herzegovina")."""
    variants = [
        _PARENTHETICAL.sub("", name),  # "Myanmar (Burma)" → "Myanmar"
        name.replace(" & ", " and "),
        re.sub(r"^St\. ", "Saint ", name),
        re.sub(r" SAR China$", "", name),  # "Hong Kong SAR China" → "Hong Kong"
        name.replace("’", "'"),
    ]
    return [v for v in variants if v and v != name]


def _dedupe(names: Iterable[str], exclude: str) -> list[str]:
    seen = {exclude}
    out = []
    for name in names:
        if name and name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _is_latin(lang: str) -> bool:
    from babel.core import get_global

    likely = get_global("likely_subtags").get(lang, "")
    return "_Latn" in likely


def build_cldr_lexicon(
    out_path: str | Path = DEFAULT_LEXICON, languages: Iterable[str] = CLDR_LANGUAGES
) -> dict[str, int]:
    """Write the offline lexicon from Unicode CLDR via babel; returns counts per kind and of labels.

    Entities (keyed to their CLDR English names): territories (``cldr:territory:JP``), languages with a
    two-letter code (``cldr:language:ja``), currencies in legal tender today (``cldr:currency:JPY``) and the
    time zone exemplar cities (``cldr:city:Asia/Tokyo``). Labels lose a parenthetical that the English
    name also has. A city a locale does not list inherits CLDR's root name (the zone id's last part),
    which is right for Latin-script languages only, so it is taken for those alone.
    """
    from babel import Locale, UnknownLocaleError
    from babel.numbers import get_territory_currencies

    languages = list(dict.fromkeys(languages))
    locales = {}
    for lang in languages:
        try:
            locales[lang] = Locale.parse(lang)
        except (ValueError, LookupError, UnknownLocaleError):
            raise ConfigError(f"babel has no CLDR locale '{lang}'", field="languages") from None
    en = Locale("en")

    currencies: set[str] = set()
    for code in en.territories:
        try:
            currencies.update(get_territory_currencies(code, tender=True))
        except (ValueError, LookupError):
            continue  # regions such as "150" (Europe) have no currency
    zones = sorted(
        {
            zone
            for locale in locales.values()
            for zone, data in locale.time_zones.items()
            if not zone.startswith("Etc/") and dict(data).get("city")
        }
    )

    def english_city(zone: str) -> str:
        return dict(en.time_zones.get(zone, {})).get("city") or zone.rsplit("/", 1)[-1].replace("_", " ")

    kinds: list[tuple[str, list[tuple[str, str]]]] = [
        ("territory", [(c, n) for c, n in en.territories.items() if c not in _NOT_TERRITORIES]),
        (
            "language",
            [(c, n) for c, n in en.languages.items() if re.fullmatch(r"[a-z]{2}", c) and c not in _NOT_LANGUAGES],
        ),
        ("currency", [(c, en.currencies[c]) for c in sorted(currencies) if c in en.currencies]),
        ("city", [(zone, english_city(zone)) for zone in zones]),
    ]
    latin = {lang for lang in languages if _is_latin(lang)}
    rows: list[dict[str, Any]] = []
    counts = {kind: 0 for kind, _ in kinds} | {"labels": 0}
    for kind, entries in kinds:
        for code, english in entries:
            entity_id = f"cldr:{kind}:{code}"
            aliases = list(WIKIPEDIA_TITLES.get(entity_id, ())) + _title_variants(english)
            if kind == "language":
                aliases.append(f"{english} language")  # Wikipedia's article title for most languages
            labels = []
            for lang, locale in locales.items():
                if kind == "city":
                    label = dict(locale.time_zones.get(code, {})).get("city")
                    if label is None and lang in latin:
                        label = english
                else:
                    label = getattr(
                        locale, {"territory": "territories", "language": "languages", "currency": "currencies"}[kind]
                    ).get(code)
                # CLDR adds an alternative name in parentheses to some ("Myanmar (Burma)", "ミャンマー (ビルマ)");
                # a sentence uses the bare name. Other parentheticals disambiguate ("刚果（金）") and stay.
                if label and english != _PARENTHETICAL.sub("", english):
                    label = _PARENTHETICAL.sub("", label)
                if label and label != code:
                    labels.append({"lang": lang, "label": label, "label_source": "cldr"})
            if labels:
                rows.append(
                    {
                        "entity_id": entity_id,
                        "en_title": english,
                        "aliases": _dedupe(aliases, english),
                        "labels": labels,
                    }
                )
                counts[kind] += 1
                counts["labels"] += len(labels)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_table(rows, out)
    return counts


# --- Wikidata ------------------------------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


class _RedirectIndex:
    """English Wikipedia redirects on disk (SQLite), so the alias join never holds them in memory.

    Built once from a MediaWiki XML dump (``.xml[.bz2|.gz]``, via :func:`synth.sources.wikipedia.iter_redirects`)
    or a TSV of ``title<TAB>target`` lines.
    """

    def __init__(self, db_path: Path):
        self.db = sqlite3.connect(db_path)

    @classmethod
    def build(cls, source: Path, db_path: Path) -> _RedirectIndex:
        tmp = db_path.with_name(db_path.name + ".tmp")
        tmp.unlink(missing_ok=True)
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
        os.replace(tmp, db_path)
        return cls(db_path)

    @staticmethod
    def _pairs(source: Path) -> Iterator[tuple[str, str]]:
        if ".xml" in source.suffixes:
            from synth.sources.wikipedia import iter_redirects

            yield from iter_redirects(source)
            return
        from synth.sources.wikipedia import normalize_title

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
    return {"entity_id": entity["id"], "en_title": title, "aliases": _dedupe(english, title), "labels": labels}


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


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
        _write_table(buffer, parts_dir / name)
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

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with pq.ParquetWriter(tmp, LEXICON_SCHEMA, compression="zstd") as writer:
        for name in state["parts"]:
            writer.write_table(pq.read_table(parts_dir / name, schema=LEXICON_SCHEMA))
    os.replace(tmp, out)
    shutil.rmtree(parts_dir)
    return {**counts, "parts": len(state["parts"]), "resumed_from_line": resumed_from}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m synth.recipes.entitycs.lexicon", description="Build an entity lexicon.")
    commands = parser.add_subparsers(dest="command", required=True)
    cldr = commands.add_parser("cldr", help="the offline CLDR lexicon (babel)")
    cldr.add_argument("--out", default=str(DEFAULT_LEXICON))
    cldr.add_argument("--languages", default=",".join(CLDR_LANGUAGES), help="comma-separated codes")
    wikidata = commands.add_parser("wikidata", help="from a Wikidata JSON dump (resumable)")
    wikidata.add_argument("dump")
    wikidata.add_argument("--out", required=True)
    wikidata.add_argument("--languages", default=None, help="comma-separated codes (default: all)")
    wikidata.add_argument("--redirects", default=None, help="enwiki XML dump or title<TAB>target TSV")
    wikidata.add_argument("--skip-bad-lines", action="store_true")
    wikidata.add_argument("--part-rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    languages = [code.strip() for code in args.languages.split(",") if code.strip()] if args.languages else None
    if args.command == "cldr":
        stats = build_cldr_lexicon(args.out, languages or CLDR_LANGUAGES)
    else:
        stats = build_from_wikidata_dump(
            args.dump,
            args.out,
            set(languages) if languages else None,
            args.redirects,
            skip_bad_lines=args.skip_bad_lines,
            part_rows=args.part_rows,
        )
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
