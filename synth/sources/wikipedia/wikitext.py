"""Render article wikitext to the prose a reader sees, keeping where each article link sits in it.

The recipes need plain text *and* the character span of every link (EntityCS swaps the linked mention for a
label), so rendering and link tracking are one pass over mwparserfromhell's nodes: templates are dropped
(except a few inline ones such as ``{{lang}}`` and ``{{convert}}`` whose output is part of the prose),
``<ref>``, tables, galleries, files and categories are dropped, headings split sections and the
reference-like sections at the end of an article ("References", "External links", …) are skipped. Every
later rewrite of the text (the cleanup of what dropped markup leaves behind) goes through
:func:`_substitute`, which moves the link spans along with the characters they point at.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mwparserfromhell
from mwparserfromhell.nodes import Argument, Comment, ExternalLink, Heading, HTMLEntity, Tag, Template, Text, Wikilink
from mwparserfromhell.wikicode import Wikicode

from synth.sources.wikipedia.dump import normalize_title

# Sections made of citations and link lists rather than prose; they are skipped with their subsections.
STOP_SECTIONS = frozenset({
    "references", "external links", "see also", "further reading", "notes", "bibliography", "sources", "citations",
    "footnotes", "notes and references", "references and notes", "works cited", "literature", "gallery",
    "primary sources", "secondary sources", "explanatory notes", "general references",
})
# Tags whose content is not prose (citations, formulas, media, code).
SKIP_TAGS = frozenset({
    "ref", "references", "math", "gallery", "timeline", "score", "imagemap", "syntaxhighlight", "source", "pre", "chem",
    "ce", "graph", "mapframe", "maplink", "templatedata", "table", "hiero", "code",
})
# Link prefixes whose target is never rendered inline (media and category membership).
MEDIA_PREFIXES = frozenset({"file", "image", "media", "category"})
# Interwiki prefixes: the anchor text stays, but the target is not an English Wikipedia article.
INTERWIKI_PREFIXES = frozenset({
    "wikt", "wiktionary", "s", "wikisource", "q", "wikiquote", "commons", "b", "wikibooks", "n", "wikinews", "v",
    "wikiversity", "voy", "wikivoyage", "m", "meta", "mw", "species", "d", "wikidata", "w", "wikipedia", "c",
    "foundation", "wmf", "phab", "mediawikiwiki", "simple",
})
# Language-edition prefixes of interlanguage links such as [[de:Algerien]] or [[zh-min-nan:...]].
INTERLANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]{2,8})*$")
# Inline templates whose first positional argument is text a reader sees.
TEXT_TEMPLATES = frozenset(
    {"nowrap", "nobr", "small", "smaller", "big", "large", "nobold", "noitalic", "em", "strong", "sic", "lang-x"}
)
# Inline templates that render as fixed punctuation.
PUNCT_TEMPLATES = {"'": "'", "!": "|", "ndash": "–", "mdash": "—", "snd": " – ", "spaced ndash": " – ", "nbsp": " "}
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
)

# MediaWiki link trails: letters right after a link are part of its anchor ([[anarchist]]s → "anarchists").
LINK_TRAIL = re.compile(r"[a-z]+")
# Namespace names of the English Wikipedia (siteinfo of the shipped dump); links into them are not articles.
_NAMESPACES = frozenset({
    "media", "special", "talk", "user", "user talk", "wikipedia", "wikipedia talk", "wp", "file", "file talk",
    "mediawiki", "mediawiki talk", "template", "template talk", "help", "help talk", "category", "category talk",
    "portal", "portal talk", "book", "book talk", "draft", "draft talk", "education program", "education program talk",
    "timedtext", "timedtext talk", "module", "module talk", "gadget", "gadget talk", "gadget definition",
    "gadget definition talk", "topic", "project",
})


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
