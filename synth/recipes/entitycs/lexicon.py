"""Entity lexicon: entity id → English Wikipedia title and aliases → label per language, with its source.

EntityCS resolves each Wikipedia link of a sentence to an entity by its title and swaps the mention for
the entity's label in another language; this module is that lookup. Loading a lexicon needs pyarrow only;
the builders, which need babel or a Wikidata dump, live apart in :mod:`synth.recipes.entitycs.cldr` (the
offline default shipped as ``data/lexicon/cldr.parquet``) and :mod:`synth.recipes.entitycs.wikidata`
(streaming and resumable over ``latest-all.json.gz``/``.bz2``). Both write the layout below.

Parquet layout (one row per entity, so a dump streams straight into rows and row groups)::

    entity_id     string                 Wikidata QID ("Q17") or "cldr:<kind>:<code>" ("cldr:territory:JP")
    en_title      string                 English Wikipedia title ("Japan")
    aliases       list<string>           other English names: Wikipedia redirects, Wikidata English
                                         label/aliases, CLDR-to-Wikipedia title variants
    labels        list<struct<lang: string, label: string, label_source: string>>
                                         label_source is "wikidata", "cldr" or "llm"

Example::

    from synth.recipes.entitycs.lexicon import load_lexicon, label_for
    lexicon = load_lexicon()                     # the shipped CLDR lexicon
    japan = lexicon.lookup("Japan")
    lexicon.labels(japan)["de"]                  # ("Japan", "cldr")
    label_for("Germany", "ja")                   # "ドイツ"

Command line (the only one): ``synth lexicon cldr --out my-lexicon.parquet`` or
``synth lexicon build latest-all.json.gz --out wikidata.parquet --languages de,hi``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synth.errors import InputError
from synth.paths import DATA_DIR
from synth.store.files import write_parquet_atomic

DEFAULT_LEXICON = DATA_DIR / "lexicon" / "cldr.parquet"

LABEL_TYPE = pa.struct([("lang", pa.string()), ("label", pa.string()), ("label_source", pa.string())])
LEXICON_SCHEMA = pa.schema(
    [
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("en_title", pa.string(), nullable=False),
        pa.field("aliases", pa.list_(pa.string())),
        pa.field("labels", pa.list_(LABEL_TYPE)),
    ]
)


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


def write_lexicon(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows atomically, so a crash never leaves half a file at ``path``."""
    write_parquet_atomic(path, pa.Table.from_pylist(rows, schema=LEXICON_SCHEMA))


def unique_aliases(names: Iterable[str], exclude: str) -> list[str]:
    """English names in order, once each, without empties and ``exclude`` (the title itself)."""
    seen = {exclude}
    out = []
    for name in names:
        if name and name not in seen:
            seen.add(name)
            out.append(name)
    return out
