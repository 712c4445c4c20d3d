"""Cut rendered articles into sentences and passages, the two units the recipes consume.

SAP wants passages shaped like SWIM-IR's TyDi-QA ones (about 100 words, never across a section); EntityCS
wants whole sentences with their article links as entity mentions. Both are cut from one parse of each
article (:func:`split_article`), and a sentence boundary never falls inside a link.

Example::

    from synth.sources.wikipedia import iter_passages, iter_linked_sentences
    dump = "data/wikipedia/enwiki-sample-pages-articles.xml.bz2"
    passage = next(iter_passages(dump))          # {"id": "12-0", "title": "Anarchism", "text": "..."}
    sentence = next(iter_linked_sentences(dump))  # {"sentence_id": "12-s0", "text": ..., "entities": [...]}
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pysbd

from synth.sources.wikipedia.dump import DEFAULT_DUMP, Page, iter_articles
from synth.sources.wikipedia.wikitext import Link, Paragraph, parse_article

MIN_SENTENCE_WORDS = 4
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


@functools.lru_cache(maxsize=1)
def _segmenter() -> pysbd.Segmenter:
    return pysbd.Segmenter(language="en", clean=False)


def split_sentences(paragraph: Paragraph) -> list[Paragraph]:
    """Split a paragraph into sentences with pysbd; links are re-based onto each sentence.

    A boundary pysbd puts inside a link (``[[St. Louis]]``) is ignored, so no link is ever cut in two.
    """
    text = paragraph.text
    boundaries: list[int] = []
    cursor = 0
    # Segmenter.segment() would also locate each sentence with a regex compiled per sentence (about 40%
    # of its time); the sentences are located here with str.find instead.
    for segment in _segmenter().processor(text).process():
        segment = segment.strip()
        found = text.find(segment, cursor) if segment else -1
        # pysbd is meant to be non-destructive; a segment it rewrote is merged into the next one.
        if found >= 0:
            cursor = found + len(segment)
            boundaries.append(cursor)
    boundaries = [b for b in boundaries if not any(l.start < b < l.end for l in paragraph.links)]
    sentences = []
    start = 0
    for end in boundaries[:-1] + [len(text)]:
        piece = text[start:end]
        left = len(piece) - len(piece.lstrip())
        stripped = piece.strip()
        if stripped:
            offset = start + left
            links = [
                Link(l.start - offset, l.end - offset, l.title)
                for l in paragraph.links
                if l.start >= offset and l.end <= offset + len(stripped)
            ]
            sentences.append(Paragraph(stripped, links))
        start = end
    return sentences


def _word_count(text: str) -> int:
    return len(text.split())


def _passages_of_section(sentences: list[tuple[str, bool]], words: int) -> list[str]:
    """Group ``(sentence, ends_paragraph)`` into passages of about ``words`` words, cut at sentence ends.

    A passage is closed when the next sentence would overshoot ``words`` by more than stopping short
    would undershoot it, when it reaches ``words``, or at a paragraph end once it has 80% of ``words``.
    A remainder under a quarter of ``words`` joins the previous passage of the section.
    """
    passages: list[list[str]] = []
    current: list[str] = []
    count = 0
    for sentence, paragraph_end in sentences:
        n = _word_count(sentence)
        if current and count + n > words and (count + n - words) > (words - count):
            passages.append(current)
            current, count = [], 0
        current.append(sentence)
        count += n
        if count >= words or (paragraph_end and count >= 0.8 * words):
            passages.append(current)
            current, count = [], 0
    if current:
        if passages and count < words / 4:
            passages[-1].extend(current)
        else:
            passages.append(current)
    return [" ".join(p) for p in passages]


def split_article(page: Page) -> list[list[tuple[Paragraph, bool]]]:
    """An article's prose as sections of ``(sentence, ends_a_paragraph)``: the one parse passages and
    linked sentences are both cut from."""
    sections = []
    for section in parse_article(page.text):
        sentences: list[tuple[Paragraph, bool]] = []
        for paragraph in section.paragraphs:
            split = split_sentences(paragraph)
            sentences.extend((sentence, i == len(split) - 1) for i, sentence in enumerate(split))
        sections.append(sentences)
    return sections


def page_passages(page: Page, sections: list[list[tuple[Paragraph, bool]]], words: int = 100) -> list[dict[str, str]]:
    """The passages of one split article (see :func:`iter_passages`)."""
    passages = []
    for sentences in sections:
        for text in _passages_of_section([(s.text, end) for s, end in sentences], words):
            if _word_count(text) >= 10:
                passages.append({"id": f"{page.id}-{len(passages)}", "title": page.title, "text": text})
    return passages


def page_linked_sentences(
    page: Page, sections: list[list[tuple[Paragraph, bool]]], max_words: int = 128
) -> list[dict[str, Any]]:
    """The linked sentences of one split article (see :func:`iter_linked_sentences`)."""
    found = []
    all_sentences = (sentence for sentences in sections for sentence, _ in sentences)
    for n, sentence in enumerate(all_sentences):
        words = _word_count(sentence.text)
        if not sentence.links or not MIN_SENTENCE_WORDS <= words <= max_words:
            continue
        if not SENTENCE_END.search(sentence.text):
            continue
        found.append(
            {
                "sentence_id": f"{page.id}-s{n}",
                "text": sentence.text,
                "entities": [
                    {"title": l.title, "mention": sentence.text[l.start : l.end], "start": l.start, "end": l.end}
                    for l in sentence.links
                ],
                "page_title": page.title,
            }
        )
    return found


def iter_passages(path: str | Path = DEFAULT_DUMP, words: int = 100) -> Iterator[dict[str, str]]:
    """Yield ``{"id", "title", "text"}`` passages of about ``words`` words, as SWIM-IR's TyDi-QA passages.

    Passages never cross a section; ids are ``<page_id>-<n>`` with ``n`` counting the page's passages.
    Passages under 10 words (stub sections) are left out.
    """
    for page in iter_articles(path):
        yield from page_passages(page, split_article(page), words)


def iter_linked_sentences(path: str | Path = DEFAULT_DUMP, max_words: int = 128) -> Iterator[dict[str, Any]]:
    """Yield prose sentences that link to at least one article, with the links as entity mentions.

    Each item is ``{"sentence_id", "text", "entities": [{"title", "mention", "start", "end"}], "page_title"}``
    with ``text[start:end] == mention``. ``sentence_id`` is ``<page_id>-s<n>``, ``n`` counting every
    sentence of the page, so ids stay the same whatever is filtered. Sentences over ``max_words`` words,
    under 4 words or not ending like a sentence (list items, captions) are left out.
    """
    for page in iter_articles(path):
        yield from page_linked_sentences(page, split_article(page), max_words)
