"""Regenerate the small samples shipped in ``data/samples/`` from the sample dump in ``data/wikipedia/``.

They let the recipes, the demo and the tests run offline without a dump. Sentences are picked so that the
EntityCS sample has entities the shipped CLDR lexicon knows, which is why this module, alone in the
package, reads the lexicon (lazily, so importing the package does not load it).

Run: ``python -m synth.sources.wikipedia [--dump ...] [--out-dir ...]`` (see :func:`make_samples`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from synth.paths import DATA_DIR
from synth.sources.wikipedia.dump import DEFAULT_DUMP, iter_articles
from synth.sources.wikipedia.passages import page_linked_sentences, page_passages, split_article
from synth.store.files import atomic_write_bytes

SAMPLES_DIR = DATA_DIR / "samples"


def _take_spread(
    items: Iterable[dict[str, Any]],
    key: str,
    per_page: int,
    total: int,
    prefer: Callable[[dict[str, Any]], bool] = lambda item: True,
) -> list[dict[str, Any]]:
    """Up to ``per_page`` items of each page (``prefer``-ed ones first), in dump order, at most ``total``.

    Spreading the sample over many articles keeps its topics varied.
    """
    by_page: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for position, item in enumerate(items):
        by_page.setdefault(item[key], []).append((position, item))
    chosen = []
    for page_items in by_page.values():
        ranked = sorted(page_items, key=lambda pair: (not prefer(pair[1]), pair[0]))
        chosen.extend(ranked[:per_page])
    return [item for _, item in sorted(chosen, key=lambda pair: pair[0])[:total]]


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    atomic_write_bytes(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))


def make_samples(
    dump: str | Path = DEFAULT_DUMP,
    out_dir: str | Path = SAMPLES_DIR,
    passages: int = 60,
    sentences: int = 400,
) -> dict[str, int]:
    """Write ``wiki_passages.jsonl`` (the lead passage of each article) and ``wiki_sentences.jsonl``
    (up to 5 linked sentences per article) from a dump; returns the row counts.

    Sentences linking an entity of the shipped CLDR lexicon are picked first within each article, so the
    EntityCS sample has switchable sentences under the offline default; the rest show the rejected path.

    Example: ``python -m synth.sources.wikipedia --dump data/wikipedia/enwiki-sample-pages-articles.xml.bz2``
    """
    # Imported here: loading synth.recipes.entitycs runs its recipe, which imports this package.
    from synth.recipes.entitycs.lexicon import load_default_lexicon

    lexicon = load_default_lexicon()
    out = Path(out_dir)
    leads: list[dict[str, Any]] = []
    linked: list[dict[str, Any]] = []
    for page in iter_articles(dump):  # one parse per article serves both files
        sections = split_article(page)
        leads.extend(page_passages(page, sections)[:1])
        linked.extend(page_linked_sentences(page, sections))
    passage_rows = _take_spread(leads, "title", 1, passages)
    sentence_rows = _take_spread(
        linked,
        "page_title",
        5,
        sentences,
        prefer=lambda s: any(lexicon.lookup(e["title"]) for e in s["entities"]),
    )
    _write_jsonl(passage_rows, out / "wiki_passages.jsonl")
    _write_jsonl(sentence_rows, out / "wiki_sentences.jsonl")
    return {"passages": len(passage_rows), "sentences": len(sentence_rows)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m synth.sources.wikipedia", description=make_samples.__doc__)
    parser.add_argument("--dump", default=str(DEFAULT_DUMP), help="MediaWiki XML dump (.xml, .xml.bz2, .xml.gz)")
    parser.add_argument("--out-dir", default=str(SAMPLES_DIR))
    parser.add_argument("--passages", type=int, default=60)
    parser.add_argument("--sentences", type=int, default=400)
    args = parser.parse_args(argv)
    counts = make_samples(args.dump, args.out_dir, args.passages, args.sentences)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
