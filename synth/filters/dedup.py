"""Near-duplicate removal of generated texts, at publish time (MinHash LSH from ``datasketch``).

Small models repeat themselves: the same question for different passages, the same dialogue for different
outlines. :func:`near_duplicates` finds, among the kept rows a finalize publishes, the rows whose generated
text is a near-duplicate of another kept row of the same language; the finalize then publishes them as
rejected rows with ``reject_reason = "duplicate"`` and ``duplicate_of`` = the id of the kept row they
duplicate (``synth.store.shards.write_generation``).

* **What is compared** — the columns a recipe names in ``Recipe.dedup_columns`` (SAP: ``query``; EntityCS:
  ``cs_sentence``; COD: ``turns.utterance``, a dialogue's utterances joined), within one language.
* **Similarity** — the Jaccard similarity of the sets of character 3-grams of the normalised text (NFKC,
  case-folded, punctuation removed, whitespace collapsed), estimated by MinHash (``dedup.num_perm``
  permutations, datasketch's ``affine32`` scheme, seed 1) and looked up with ``MinHashLSH`` tuned to
  ``dedup.threshold``. Character n-grams need no word segmentation, so Chinese, Japanese and Thai work
  like any other language. Every LSH candidate is checked against its signature, so a pair counts only
  when its estimated similarity is at least the threshold.
* **Which row is kept** — rows are visited in order of ``id`` (a content hash), never in commit order: each
  row is compared with the rows already kept; the first of a group of near-duplicates in that order is kept,
  and each later one names the kept row it is most similar to (ties: the smallest id). The result depends
  only on the set of rows published, so it is the same whatever batches, resumes or commit order made them.
  A row similar only to a *duplicate* is compared with kept rows alone, so chains do not grow transitively.
  Rows whose normalised text is empty are left alone.
* **Memory** — one pass reads only ``id``, ``lang``, ``reject_reason``, ``_unit`` and the text columns of
  each chosen segment, and keeps per kept row its signature (``num_perm`` × 4 bytes: 256 bytes at the
  default 64) and its id (a 24-character str, about 75 bytes); then one language at a time, the LSH index of
  that language's kept rows (peak measured with tracemalloc: about 1.8 KB a row at 64 permutations and
  threshold 0.8, 3.2 KB at 128), dropped before the next language. The answer holds one entry per duplicate
  (two ids). Speed on one CPU core: about 5,000 rows a second (signing and indexing).

Example::

    from synth.filters.dedup import Deduplicator
    dedup = Deduplicator(threshold=0.8, num_perm=64)
    dedup.duplicates([("de", "a", "Wer hat Berlin gegründet?"), ("de", "b", "Wer hat Berlin gegründet")])
    # {'b': 'a'}
"""

from __future__ import annotations

import unicodedata
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SHINGLE = 3  # characters per shingle
SEED = 1
SCHEME = "affine32"  # datasketch >= 2.0: 32-bit hash values, so a signature is num_perm * 4 bytes
REASON = "duplicate"
DUPLICATE_OF = "duplicate_of"
DUPLICATE_OF_FIELD = pa.field(DUPLICATE_OF, pa.string())


def normalize(text: str) -> str:
    """NFKC, case-folded, punctuation removed, runs of whitespace made one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if char.isspace() else char for char in text if not unicodedata.category(char).startswith("P"))
    return " ".join(kept.split())


def shingles(text: str | None) -> set[bytes]:
    """The set of character 3-grams of the normalised text (the whole text when shorter; empty when blank)."""
    norm = normalize(text or "")
    if len(norm) <= SHINGLE:
        return {norm.encode()} if norm else set()
    return {norm[i : i + SHINGLE].encode() for i in range(len(norm) - SHINGLE + 1)}


def row_texts(table: pa.Table, columns: Sequence[str]) -> list[str | None]:
    """The text compared for each row: the named columns joined by newlines. ``a.b`` names field ``b`` of the
    structs in list column ``a`` (COD's ``turns.utterance``: a dialogue's utterances, one per line)."""
    parts: list[list[str | None]] = []
    for spec in columns:
        name, _, field = spec.partition(".")
        values = table.column(name).to_pylist()
        if field:
            values = [
                None if items is None else "\n".join(item[field] for item in items if item and item.get(field))
                for items in values
            ]
        parts.append(values)
    texts: list[str | None] = []
    for row in zip(*parts):
        present = [value for value in row if value]
        texts.append("\n".join(present) if present else None)
    return texts


def base_columns(columns: Sequence[str]) -> list[str]:
    """The top-level columns :func:`row_texts` reads."""
    return list(dict.fromkeys(spec.partition(".")[0] for spec in columns))


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's (bands, rows per band) for ``threshold``; at least 2 bands (with few permutations and a high
    threshold its optimum is one band, which it refuses: then 2 bands, which only adds candidates to check)."""
    from datasketch import MinHashLSH

    try:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    except ValueError:
        return 2, num_perm // 2
    return lsh.b, lsh.r


class Deduplicator:
    """MinHash signatures of rows (group, id, text), then the duplicate → kept map (see the module docstring)."""

    def __init__(self, threshold: float, num_perm: int):
        from datasketch import MinHash

        self.threshold = threshold
        self.num_perm = num_perm
        self._empty = MinHash(num_perm=num_perm, seed=SEED, scheme=SCHEME)  # permutations made once, copied
        self._ids: dict[str, list[str]] = {}
        self._signatures: dict[str, bytearray] = {}
        self._bands = lsh_bands(threshold, num_perm)

    def signature(self, text: str | None) -> np.ndarray | None:
        """The MinHash hash values of ``text`` (``num_perm`` uint32), or None for a text with no shingle."""
        grams = shingles(text)
        if not grams:
            return None
        minhash = self._empty.copy()
        minhash.update_batch(list(grams))
        return minhash.hashvalues

    def add(self, group: str, row_id: str, text: str | None) -> None:
        signature = self.signature(text)
        if signature is None:
            return
        self._ids.setdefault(group, []).append(row_id)
        self._signatures.setdefault(group, bytearray()).extend(signature.astype("<u4").tobytes())

    def duplicates(self, rows: Iterable[tuple[str, str, str | None]] = ()) -> dict[str, str]:
        """Add ``rows`` (group, id, text), then return {duplicate id: kept id} over everything added."""
        for group, row_id, text in rows:
            self.add(group, row_id, text)
        found: dict[str, str] = {}
        for group in sorted(self._ids):
            ids = self._ids.pop(group)
            signatures = np.frombuffer(self._signatures.pop(group), dtype="<u4").reshape(len(ids), self.num_perm)
            found.update(self._group(ids, signatures))
        return found

    def _group(self, ids: list[str], signatures: np.ndarray) -> dict[str, str]:
        from datasketch import LeanMinHash, MinHashLSH

        lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, params=self._bands)
        found: dict[str, str] = {}
        for index in sorted(range(len(ids)), key=ids.__getitem__):
            minhash = LeanMinHash(seed=SEED, hashvalues=signatures[index], scheme=SCHEME)
            best: tuple[float, str] | None = None
            for candidate in lsh.query(minhash):
                similarity = float(np.count_nonzero(signatures[candidate] == signatures[index])) / self.num_perm
                if similarity >= self.threshold and (best is None or (-similarity, ids[candidate]) < best):
                    best = (-similarity, ids[candidate])
            if best is None:
                lsh.insert(index, minhash, check_duplication=False)
            else:
                found[ids[index]] = best[1]
        return found


def near_duplicates(store: Any, plan: Sequence[tuple[str, Any]], columns: Sequence[str], config: Any) -> dict[str, str]:
    """{duplicate row id: kept row id} among the kept rows ``plan`` chooses (``synth.store.segments.choose``).

    ``config`` is the run's ``dedup`` section; nothing is read when it is disabled or the recipe names no text.
    """
    from synth.store.segments import UNIT_COLUMN

    if not config.enabled or not columns:
        return {}
    dedup = Deduplicator(config.threshold, config.num_perm)
    read = ["id", "lang", "reject_reason", UNIT_COLUMN, *base_columns(columns)]
    for sid, keys in plan:
        if not len(keys):
            continue
        rows = store.location.read_table(store._rel(sid), columns=read)
        rows = rows.filter(pc.is_in(rows[UNIT_COLUMN], value_set=pa.array(keys, pa.uint64())))
        rows = rows.filter(pc.is_null(rows["reject_reason"]))
        for group, row_id, text in zip(
            rows.column("lang").to_pylist(), rows.column("id").to_pylist(), row_texts(rows, columns)
        ):
            dedup.add(group, row_id, text)
    return dedup.duplicates()


def mark(rows: pa.Table, duplicates: Mapping[str, str]) -> pa.Table:
    """``rows`` with ``duplicate_of`` set, and ``reject_reason = "duplicate"``, on the rows ``duplicates`` names."""
    if duplicates:
        of = pa.array([duplicates.get(row_id) for row_id in rows.column("id").to_pylist()], pa.string())
        reason = pc.if_else(pc.is_valid(of), pa.scalar(REASON), rows.column("reject_reason"))
        rows = rows.set_column(rows.schema.get_field_index("reject_reason"), "reject_reason", reason)
    else:
        of = pa.nulls(rows.num_rows, pa.string())
    if DUPLICATE_OF in rows.schema.names:
        return rows.set_column(rows.schema.get_field_index(DUPLICATE_OF), DUPLICATE_OF, of)
    return rows.append_column(DUPLICATE_OF_FIELD, of)
