"""Stream a MediaWiki XML dump into plain-text passages (SAP) and entity-linked sentences (EntityCS).

The dump is read with ``xml.etree.ElementTree.iterparse`` and every finished ``<page>`` is cleared from
the tree, so memory stays flat however large the dump (``.xml``, ``.xml.bz2`` or ``.xml.gz``). Only
articles (namespace 0) that are not redirects are parsed; redirects are exposed by :func:`iter_redirects`.

Wikitext is parsed with mwparserfromhell and rendered to the text a reader sees: templates are dropped
(except a few inline ones such as ``{{lang}}`` and ``{{convert}}`` whose output is part of the prose),
``<ref>``, tables, galleries, files and categories are dropped, headings split sections and the
reference-like sections at the end of an article ("References", "External links", …) are skipped.
Links to articles keep their character spans in the rendered text.

Example::

    from synth.sources.wikipedia import iter_passages, iter_linked_sentences
    dump = "data/wikipedia/enwiki-sample-pages-articles.xml.bz2"
    passage = next(iter_passages(dump))          # {"id": "12-0", "title": "Anarchism", "text": "..."}
    sentence = next(iter_linked_sentences(dump))  # {"sentence_id": "12-s0", "text": ..., "entities": [...]}

Regenerate the shipped samples with ``python -m synth.sources.wikipedia`` (see :func:`make_samples`).
"""

from __future__ import annotations

import argparse
import bisect
import bz2
import functools
import gzip
import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import mwparserfromhell
import pysbd
from mwparserfromhell.nodes import (
    Argument,
    Comment,
    ExternalLink,
    Heading,
    HTMLEntity,
    Tag,
    Template,
    Text,
    Wikilink,
)
from mwparserfromhell.wikicode import Wikicode

from synth.errors import InputError
from synth.paths import DATA_DIR

DEFAULT_DUMP = DATA_DIR / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"
SAMPLES_DIR = DATA_DIR / "samples"

# Sections made of citations and link lists rather than prose; they are skipped with their subsections.
STOP_SECTIONS = frozenset(
    {
        "references",
        "external links",
        "see also",
        "further reading",
        "notes",
        "bibliography",
        "sources",
        "citations",
        "footnotes",
        "notes and references",
        "references and notes",
        "works cited",
        "literature",
        "gallery",
        "primary sources",
        "secondary sources",
        "explanatory notes",
        "general references",
    }
)
# Tags whose content is not prose (citations, formulas, media, code).
SKIP_TAGS = frozenset(
    {
        "ref",
        "references",
        "math",
        "gallery",
        "timeline",
        "score",
        "imagemap",
        "syntaxhighlight",
        "source",
        "pre",
        "chem",
        "ce",
        "graph",
        "mapframe",
        "maplink",
        "templatedata",
        "table",
        "hiero",
        "code",
    }
)
# Link prefixes whose target is never rendered inline (media and category membership).
MEDIA_PREFIXES = frozenset({"file", "image", "media", "category"})
# Interwiki prefixes: the anchor text stays, but the target is not an English Wikipedia article.
INTERWIKI_PREFIXES = frozenset(
    {
        "wikt",
        "wiktionary",
        "s",
        "wikisource",
        "q",
        "wikiquote",
        "commons",
        "b",
        "wikibooks",
        "n",
        "wikinews",
        "v",
        "wikiversity",
        "voy",
        "wikivoyage",
        "m",
        "meta",
        "mw",
        "species",
        "d",
        "wikidata",
        "w",
        "wikipedia",
        "c",
        "foundation",
        "wmf",
        "phab",
        "mediawikiwiki",
        "simple",
    }
)
# Language-edition prefixes of interlanguage links such as [[de:Algerien]] or [[zh-min-nan:...]].
INTERLANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]{2,8})*$")
# Inline templates whose first positional argument is text a reader sees.
TEXT_TEMPLATES = frozenset(
    {"nowrap", "nobr", "small", "smaller", "big", "large", "nobold", "noitalic", "em", "strong", "sic", "lang-x"}
)
# Inline templates that render as fixed punctuation.
PUNCT_TEMPLATES = {"'": "'", "!": "|", "ndash": "–", "mdash": "—", "snd": " – ", "spaced ndash": " – ", "nbsp": " "}
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# MediaWiki link trails: letters right after a link are part of its anchor ([[anarchist]]s → "anarchists").
LINK_TRAIL = re.compile(r"[a-z]+")
MIN_SENTENCE_WORDS = 4
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


@dataclass(frozen=True)
class Page:
    """One page of the dump. ``redirect`` is the target title of a redirect page, else ``None``."""

    id: str
    title: str
    ns: int
    redirect: str | None
    text: str


@dataclass
class Link:
    """A link to an article: ``text[start:end]`` of the enclosing paragraph or sentence is the anchor."""

    start: int
    end: int
    title: str


@dataclass
class Paragraph:
    """Plain text of one paragraph with the article links inside it."""

    text: str
    links: list[Link] = field(default_factory=list)


@dataclass
class Section:
    """The prose paragraphs under one heading (``heading`` is ``None`` for the lead)."""

    heading: str | None
    paragraphs: list[Paragraph]


def normalize_title(title: str) -> str:
    """Canonical article title: entities decoded, ``_`` → space, ``#section`` cut, first letter upper-cased.

    >>> normalize_title("united_States#History")
    'United States'
    """
    title = html.unescape(title).replace("_", " ").split("#", 1)[0]
    title = " ".join(title.split())
    return title[:1].upper() + title[1:]


def _open(path: Path) -> IO[bytes]:
    if not path.is_file():
        raise InputError("dump file not found", file=str(path))
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def iter_pages(path: str | Path) -> Iterator[Page]:
    """Yield every page of a MediaWiki XML export (all namespaces, redirects included) in dump order.

    Memory stays flat: each finished ``<page>`` is dropped from the tree before the next is read.
    """
    path = Path(path)
    with _open(path) as handle:
        root: ET.Element | None = None
        try:
            for event, elem in ET.iterparse(handle, events=("start", "end")):
                if root is None:
                    root = elem
                if event != "end" or _local(elem.tag) != "page":
                    continue
                values: dict[str, Any] = {"redirect": None, "text": ""}
                for child in elem:
                    name = _local(child.tag)
                    if name in ("title", "ns", "id"):
                        values[name] = (child.text or "").strip()
                    elif name == "redirect":
                        values["redirect"] = child.get("title") or ""
                    elif name == "revision":
                        # A history dump has several revisions; the last one is the current text.
                        text = next((c for c in child if _local(c.tag) == "text"), None)
                        values["text"] = (text.text if text is not None else None) or ""
                ns = values.get("ns", "0")
                yield Page(
                    id=values.get("id", ""),
                    title=values.get("title", ""),
                    ns=int(ns) if ns.lstrip("-").isdigit() else 0,
                    redirect=values["redirect"],
                    text=values["text"],
                )
                # Cleared pages stay attached to the root as empty elements; clearing the root drops them.
                root.clear()
        except ET.ParseError as exc:
            line, column = exc.position
            raise InputError(
                f"not a valid MediaWiki XML dump (column {column}: {exc.msg})", file=str(path), row=line
            ) from None
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read dump: {exc}", file=str(path)) from None


def _is_redirect(page: Page) -> bool:
    return page.redirect is not None or page.text.lstrip()[:9].upper() == "#REDIRECT"


def iter_articles(path: str | Path) -> Iterator[Page]:
    """Yield the articles of a dump: namespace 0, redirects skipped."""
    for page in iter_pages(path):
        if page.ns == 0 and not _is_redirect(page):
            yield page


def iter_redirects(path: str | Path) -> Iterator[tuple[str, str]]:
    """Yield ``(title, target)`` for every article-namespace redirect, both normalised; targets lose ``#section``."""
    for page in iter_pages(path):
        if page.ns != 0 or not _is_redirect(page):
            continue
        target = page.redirect
        if not target:
            match = re.search(r"\[\[([^\]|]+)", page.text)
            target = match.group(1) if match else ""
        target = normalize_title(target)
        if target:
            yield normalize_title(page.title), target


# Namespace names of the English Wikipedia (siteinfo of the shipped dump); links into them are not articles.
_NAMESPACES = frozenset(
    {
        "media",
        "special",
        "talk",
        "user",
        "user talk",
        "wikipedia",
        "wikipedia talk",
        "wp",
        "file",
        "file talk",
        "mediawiki",
        "mediawiki talk",
        "template",
        "template talk",
        "help",
        "help talk",
        "category",
        "category talk",
        "portal",
        "portal talk",
        "book",
        "book talk",
        "draft",
        "draft talk",
        "education program",
        "education program talk",
        "timedtext",
        "timedtext talk",
        "module",
        "module talk",
        "gadget",
        "gadget talk",
        "gadget definition",
        "gadget definition talk",
        "topic",
        "project",
    }
)


# --- wikitext → plain text with link spans -------------------------------------------------------


class _Renderer:
    """Renders mwparserfromhell nodes to plain text, recording article links as character spans."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.links: list[Link] = []
        # The link that a following run of letters would extend (MediaWiki link trail), if any.
        self._trail: Link | None = None

    def text(self) -> str:
        return "".join(self.parts)

    def emit(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.length += len(text)
            self._trail = None

    def render(self, code: Wikicode | None) -> None:
        if code is None:
            return
        for node in code.nodes:
            self.node(node)

    def node(self, node: Any) -> None:
        if isinstance(node, Text):
            self._text(str(node.value))
        elif isinstance(node, Wikilink):
            self._wikilink(node)
        elif isinstance(node, Tag):
            self._tag(node)
        elif isinstance(node, Template):
            self._template(node)
        elif isinstance(node, HTMLEntity):
            self.emit(node.normalize())
        elif isinstance(node, ExternalLink):
            # Bracketed links show their label; bare URLs are not prose.
            if node.brackets and node.title is not None:
                self.render(node.title)
        elif isinstance(node, Heading):
            self.emit("\n\n")
        elif isinstance(node, (Comment, Argument)):
            return
        else:
            self.emit(str(node))

    def _text(self, value: str) -> None:
        trail = self._trail
        if trail is not None:
            match = LINK_TRAIL.match(value)
            if match:
                self.emit(match.group())
                trail.end = self.length
                value = value[match.end() :]
        self.emit(value)

    def _wikilink(self, node: Wikilink) -> None:
        raw = html.unescape(str(node.title)).strip()
        visible_colon = raw.startswith(":")
        target = raw.lstrip(":").strip()
        prefix, sep, _ = target.partition(":")
        prefix = prefix.strip().lower()
        article = True
        if sep:
            if prefix in MEDIA_PREFIXES and not visible_colon:
                return
            if INTERLANGUAGE.match(prefix) and not visible_colon and prefix not in INTERWIKI_PREFIXES:
                return
            if prefix in MEDIA_PREFIXES or prefix in INTERWIKI_PREFIXES or prefix in _NAMESPACES:
                article = False
        start = self.length
        if node.text is not None and str(node.text).strip():
            self.render(node.text)
        else:
            # [[Title]] shows the title as written; the pipe trick [[Title (x)|]] hides the parenthetical.
            shown = target.split("#", 1)[0] or target.lstrip("#")
            if node.text is not None:
                shown = re.sub(r"\s*\([^)]*\)$", "", shown)
            self.emit(shown.replace("_", " "))
        title = normalize_title(target)
        if article and title and self.length > start:
            link = Link(start, self.length, title)
            self.links.append(link)
            self._trail = link

    def _tag(self, node: Tag) -> None:
        name = str(node.tag).strip().lower()
        if name in SKIP_TAGS or node.wiki_markup == "{|":
            return
        if name in ("li", "dt", "dd", "hr"):
            # List items and rules start a new paragraph; their text follows the marker.
            self.emit("\n\n")
            return
        if name == "br":
            self.emit("\n")
            return
        if node.self_closing:
            return
        self.render(node.contents)

    def _template(self, node: Template) -> None:
        name = str(node.name).strip()
        lower = name.lower()
        positional = [p for p in node.params if not p.showkey]

        def arg(index: int) -> Wikicode | None:
            return positional[index].value if len(positional) > index else None

        if lower in PUNCT_TEMPLATES:
            self.emit(PUNCT_TEMPLATES[lower])
        elif lower.startswith("formatnum:"):
            self.emit(name.split(":", 1)[1].strip())
        elif lower in TEXT_TEMPLATES:
            self.render(arg(0))
        elif lower in ("lang", "transl"):
            self.render(arg(1))
        elif lower.startswith("lang-"):
            self.render(arg(0))
        elif lower in ("convert", "cvt") and len(positional) >= 2:
            # {{convert|2381741|km2|sqmi}} → "2381741 km2" (the source value and unit as written).
            self.emit(f"{arg(0).strip_code().strip()} {arg(1).strip_code().strip()}")
        elif lower in ("circa", "c.") and positional:
            self.emit(f"c. {arg(0).strip_code().strip()}")
        elif lower == "as of" and positional:
            year = arg(0).strip_code().strip()
            month = arg(1).strip_code().strip() if len(positional) > 1 else ""
            month_name = MONTHS[int(month) - 1] + " " if month.isdigit() and 1 <= int(month) <= 12 else ""
            self.emit(f"As of {month_name}{year}")


def _substitute(pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], paragraph: Paragraph) -> Paragraph:
    """``re.sub`` that keeps link spans pointing at the same characters of the rewritten text."""
    pieces: list[str] = []
    edits: list[tuple[int, int, int, int]] = []  # old start, old end, new start, new length
    last = new_pos = 0
    for match in pattern.finditer(paragraph.text):
        replacement = repl(match)
        pieces.append(paragraph.text[last : match.start()])
        new_pos += match.start() - last
        edits.append((match.start(), match.end(), new_pos, len(replacement)))
        pieces.append(replacement)
        new_pos += len(replacement)
        last = match.end()
    if not edits:
        return paragraph
    pieces.append(paragraph.text[last:])

    old_starts = [edit[0] for edit in edits]

    def remap(pos: int) -> int:
        index = bisect.bisect_right(old_starts, pos) - 1
        if index < 0:
            return pos
        old_start, old_end, new_start, new_len = edits[index]
        if pos <= old_end:
            return new_start + min(pos - old_start, new_len)
        return pos + new_start + new_len - old_end

    links = [Link(remap(link.start), remap(link.end), link.title) for link in paragraph.links]
    return Paragraph("".join(pieces), links)


# Cleanup of what dropped markup leaves behind, applied in order to each paragraph.
_CLEANUPS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"__[A-Z]+__|'{2,}"), lambda m: ""),  # magic words, unbalanced bold/italic quotes
    (re.compile(r"[^\S ]+|  +"), lambda m: " "),
    (re.compile(r"\(\s*(?:[,;:]\s*)*\)"), lambda m: ""),  # "( ; )" left by dropped pronunciations
    (re.compile(r"\(\s*[,;:]\s*"), lambda m: "("),
    (re.compile(r"\s*[,;:]\s*\)"), lambda m: ")"),
    (re.compile(r" +(?=[,.;:!?)\]])"), lambda m: ""),
    (re.compile(r"(?<=[(\[]) +"), lambda m: ""),
    (re.compile(r"\s{2,}"), lambda m: " "),
]


def _clean(paragraph: Paragraph) -> Paragraph | None:
    for pattern, repl in _CLEANUPS:
        paragraph = _substitute(pattern, repl, paragraph)
    text = paragraph.text
    left = len(text) - len(text.lstrip())
    text = text.strip()
    if not re.search(r"\w", text):
        return None
    links = []
    for link in paragraph.links:
        start, end = max(link.start - left, 0), min(link.end - left, len(text))
        # Anchors never begin or end with whitespace, so the mention is exactly the visible words.
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            links.append(Link(start, end, link.title))
    return Paragraph(text, links)


# Markup mwparserfromhell leaves as text when it is malformed (an unclosed table or <ref>): table rows,
# citations and stray tags are removed from the rendered section before it is split into paragraphs.
_LEFTOVERS = re.compile(
    r"(?m)^[ \t]*(?:\{\||\|\}|\||!|\[\[(?:[Ff]ile|[Ii]mage):).*$"
    r"|<ref[^>]*/>|<ref[^>]*>.*?(?:</ref>|$)"
    r"|</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>"
    r"|\{\{[^{}]*\}\}"
)


def _split_paragraphs(text: str, links: list[Link]) -> list[Paragraph]:
    section = _substitute(_LEFTOVERS, lambda m: "", Paragraph(text, links))
    text, links = section.text, [l for l in section.links if l.end > l.start]
    paragraphs = []
    bounds = [(m.start(), m.end()) for m in re.finditer(r"\n[ \t]*\n\s*", text)]
    starts = [0] + [end for _, end in bounds]
    ends = [start for start, _ in bounds] + [len(text)]
    for start, end in zip(starts, ends):
        inside = [Link(l.start - start, l.end - start, l.title) for l in links if l.start >= start and l.end <= end]
        cleaned = _clean(Paragraph(text[start:end], inside))
        if cleaned is not None:
            paragraphs.append(cleaned)
    return paragraphs


def parse_article(wikitext: str) -> list[Section]:
    """Render an article's wikitext to prose sections; reference-like sections are left out.

    >>> parse_article("'''Paris''' is the capital of [[France]].")[0].paragraphs[0].links
    [Link(start=24, end=30, title='France')]
    """
    code = mwparserfromhell.parse(wikitext)
    sections: list[Section] = []
    heading: str | None = None
    renderer = _Renderer()
    skip_level: int | None = None

    def flush() -> None:
        if skip_level is None:
            paragraphs = _split_paragraphs(renderer.text(), renderer.links)
            if paragraphs:
                sections.append(Section(heading, paragraphs))

    for node in code.nodes:
        if isinstance(node, Heading):
            flush()
            renderer = _Renderer()
            heading = " ".join(node.title.strip_code().split())
            if skip_level is not None and node.level <= skip_level:
                skip_level = None
            if skip_level is None and heading.lower() in STOP_SECTIONS:
                skip_level = node.level
            continue
        if skip_level is None:
            renderer.node(node)
    flush()
    return sections


# --- sentences and passages ------------------------------------------------------------------------


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


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
