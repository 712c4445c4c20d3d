"""Read a MediaWiki XML export page by page, in constant memory.

Full dumps run to tens of gigabytes, so the file is streamed with ``xml.etree.ElementTree.iterparse`` and
every finished ``<page>`` is cleared from the tree, however large the dump (``.xml``, ``.xml.bz2`` or
``.xml.gz``, read as they are). Only articles (namespace 0) that are not redirects go on to be rendered;
redirects are exposed apart by :func:`iter_redirects`, since the lexicon builder turns them into aliases.
"""

from __future__ import annotations

import bz2
import gzip
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from synth.errors import InputError
from synth.paths import DATA_DIR

DEFAULT_DUMP = DATA_DIR / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"


@dataclass(frozen=True)
class Page:
    """One page of the dump. ``redirect`` is the target title of a redirect page, else ``None``."""

    id: str
    title: str
    ns: int
    redirect: str | None
    text: str


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
