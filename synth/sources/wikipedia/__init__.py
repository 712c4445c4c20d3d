"""Wikipedia as a source: a MediaWiki XML dump streamed into prose passages (SAP) and entity-linked
sentences (EntityCS).

Reading a dump, rendering wikitext and cutting prose change for different reasons and lean on different
libraries (the standard library's XML parser, mwparserfromhell, pysbd), so each lives in its own module,
one depending only on those above it, and this package re-exports their public names:

- :mod:`.dump` streams the pages of a dump in constant memory (articles and redirects);
- :mod:`.wikitext` renders an article to the prose a reader sees, keeping article links as spans;
- :mod:`.passages` cuts that prose into sentences and ~100-word passages;
- :mod:`.samples` regenerates the samples shipped in ``data/samples/`` (``python -m synth.sources.wikipedia``).

Example::

    from synth.sources.wikipedia import iter_passages, iter_linked_sentences
    dump = "data/wikipedia/enwiki-sample-pages-articles.xml.bz2"
    passage = next(iter_passages(dump))          # {"id": "12-0", "title": "Anarchism", "text": "..."}
    sentence = next(iter_linked_sentences(dump))  # {"sentence_id": "12-s0", "text": ..., "entities": [...]}
"""

from synth.sources.wikipedia.dump import DEFAULT_DUMP, Page, iter_articles, iter_pages, iter_redirects, normalize_title
from synth.sources.wikipedia.passages import (
    iter_linked_sentences,
    iter_passages,
    page_linked_sentences,
    page_passages,
    split_article,
    split_sentences,
)
from synth.sources.wikipedia.samples import make_samples
from synth.sources.wikipedia.wikitext import Link, Paragraph, Section, parse_article

__all__ = [
    "DEFAULT_DUMP", "Link", "Page", "Paragraph", "Section", "iter_articles", "iter_linked_sentences", "iter_pages",
    "iter_passages", "iter_redirects", "make_samples", "normalize_title", "page_linked_sentences", "page_passages",
    "parse_article", "split_article", "split_sentences",
]
