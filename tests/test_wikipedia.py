"""The MediaWiki dump reader: streaming, markup stripping, link spans, passages and the shipped samples."""

import bz2
import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from synth.errors import InputError
from synth.paths import DATA_DIR
from synth.sources.wikipedia import (
    DEFAULT_DUMP,
    iter_articles,
    iter_linked_sentences,
    iter_passages,
    iter_redirects,
    make_samples,
    normalize_title,
    parse_article,
)

SAMPLES = DATA_DIR / "samples"

PAGE = """  <page>
    <title>{title}</title>
    <ns>{ns}</ns>
    <id>{id}</id>{redirect}
    <revision>
      <id>1</id>
      <text xml:space="preserve">{text}</text>
    </revision>
  </page>
"""


def write_dump(path: Path, pages: list[dict]) -> Path:
    """A MediaWiki export in the dump's own layout (namespace, siteinfo), bz2-compressed like the real dumps."""
    body = "".join(
        PAGE.format(
            title=p["title"],
            ns=p.get("ns", 0),
            id=p["id"],
            text=p["text"].replace("&", "&amp;").replace("<", "&lt;"),
            redirect=f'\n    <redirect title="{p["redirect"]}" />' if "redirect" in p else "",
        )
        for p in pages
    )
    xml = (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">\n'
        "  <siteinfo><sitename>Wikipedia</sitename></siteinfo>\n" + body + "</mediawiki>\n"
    )
    path.write_bytes(bz2.compress(xml.encode("utf-8")))
    return path


ARTICLE = """{{Infobox country|name=Freedonia|capital=[[Fredville]]}}
'''Freedonia''' ({{lang-fr|Fredonie}}; {{IPA|/fri/}}) is a country in [[Europe]] bordering [[Sylvania (country)|Sylvania]].<ref>{{cite web|title=Source}}</ref> Its [[anarchist]]s live in [[Paris#History|Paris]] and [[united_States|the US]].
[[File:Flag.svg|thumb|The flag of [[Freedonia]].]]

{| class="wikitable"
| [[Table Link]] || cell
|}

== History ==
The [[Dr. Who|Dr. Who]] era began {{circa|1900}} under [[wikt:king|kings]] and [[:Category:Kings|listed kings]].

== References ==
{{reflist}}
* [[Some Book]]

[[Category:Countries]]
[[de:Freedonien]]
"""


def test_normalize_title():
    assert normalize_title("united_States#History") == "United States"
    assert normalize_title("  AT&amp;T  ") == "AT&T"
    assert normalize_title("iPhone") == "IPhone"


def test_markup_is_stripped_and_links_keep_spans():
    sections = parse_article(ARTICLE)
    assert [s.heading for s in sections] == [None, "History"]  # References skipped
    lead = sections[0].paragraphs
    assert len(lead) == 1  # the file caption and the table are gone
    text = lead[0].text
    assert text == (
        "Freedonia (Fredonie) is a country in Europe bordering Sylvania. Its anarchists live in Paris and the US."
    )
    assert [(text[l.start : l.end], l.title) for l in lead[0].links] == [
        ("Europe", "Europe"),
        ("Sylvania", "Sylvania (country)"),
        ("anarchists", "Anarchist"),  # link trail
        ("Paris", "Paris"),  # section cut
        ("the US", "United States"),
    ]
    history = sections[1].paragraphs[0]
    assert history.text == "The Dr. Who era began c. 1900 under kings and listed kings."
    # interwiki and namespace links keep their text but are not entities
    assert [l.title for l in history.links] == ["Dr. Who"]


def test_articles_skip_redirects_and_other_namespaces(tmp_path):
    dump = write_dump(
        tmp_path / "d.xml.bz2",
        [
            {"title": "Talk:Foo", "ns": 1, "id": 1, "text": "A talk page about [[Foo]]."},
            {"title": "Foo bar", "id": 2, "text": "#REDIRECT [[Foo]]", "redirect": "Foo"},
            {"title": "FooBaz", "id": 3, "text": "#redirect [[foo#Section]]"},
            {"title": "Foo", "id": 4, "text": "Foo is a word used in [[computer programming]]."},
        ],
    )
    assert [page.title for page in iter_articles(dump)] == ["Foo"]
    assert list(iter_redirects(dump)) == [("Foo bar", "Foo"), ("FooBaz", "Foo")]


def test_redirects_of_the_real_dump():
    redirects = dict(iter_redirects(DEFAULT_DUMP))
    assert redirects["AccessibleComputing"] == "Computer accessibility"
    assert redirects["AfricA"] == "Africa"
    assert len(redirects) > 90


def test_bad_xml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<mediawiki>\n<page><title>x</title>\n</mediawiki>\n")
    with pytest.raises(InputError, match=r"broken\.xml, row 3"):
        list(iter_articles(path))
    with pytest.raises(InputError, match="not found"):
        list(iter_articles(tmp_path / "missing.xml.bz2"))


def test_memory_stays_flat_over_pages(tmp_path):
    """Cleared pages must not pile up under the root: peak memory of 10x the pages stays about the same.

    Measured in a fresh interpreter: tracemalloc counts every thread, and threads left behind by earlier tests
    (Prefect's log and event workers) would otherwise allocate inside the window."""
    text = "Some [[linked]] words about nothing in particular. " * 20
    measure = (
        "import sys, tracemalloc\n"
        "from synth.sources.wikipedia import iter_articles\n"
        "tracemalloc.start()\n"
        "for _ in iter_articles(sys.argv[1]):\n"
        "    pass\n"
        "print(tracemalloc.get_traced_memory()[1])\n"
    )

    def peak(pages: int) -> int:
        dump = write_dump(
            tmp_path / f"{pages}.xml.bz2", [{"title": f"P{i}", "id": i, "text": text} for i in range(pages)]
        )
        done = subprocess.run([sys.executable, "-c", measure, str(dump)], capture_output=True, text=True, check=True)
        return int(done.stdout.strip())

    small, large = peak(1_000), peak(10_000)
    assert large < small * 1.5, (small, large)


def test_linked_sentences_of_the_real_dump():
    sentences = list(itertools.islice(iter_linked_sentences(DEFAULT_DUMP, max_words=40), 600))
    assert len(sentences) == 600
    assert len({s["sentence_id"] for s in sentences}) == 600
    for sentence in sentences:
        text = sentence["text"]
        assert sentence["entities"] and len(text.split()) <= 40
        assert text == text.strip() and "[[" not in text and "{{" not in text and "<ref" not in text
        for entity in sentence["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["mention"]
            title = entity["title"]
            assert title and title[0] == title[0].upper() and "_" not in title and "#" not in title


def test_passages_are_about_100_words():
    passages = list(itertools.islice(iter_passages(DEFAULT_DUMP), 300))
    words = [len(p["text"].split()) for p in passages]
    assert 80 <= statistics.median(words) <= 120
    assert len({p["id"] for p in passages}) == len(passages)
    first = passages[0]
    assert first["id"] == "12-0" and first["title"] == "Anarchism"
    assert first["text"].startswith("Anarchism is a political philosophy")


def test_shipped_samples():
    passages = [json.loads(line) for line in (SAMPLES / "wiki_passages.jsonl").open(encoding="utf-8")]
    sentences = [json.loads(line) for line in (SAMPLES / "wiki_sentences.jsonl").open(encoding="utf-8")]
    assert len(passages) == 60 and len({p["title"] for p in passages}) == 60
    assert all(set(p) == {"id", "title", "text"} for p in passages)
    assert 300 <= len(sentences) <= 500
    for sentence in sentences:
        for entity in sentence["entities"]:
            assert sentence["text"][entity["start"] : entity["end"]] == entity["mention"]
    assert "CC BY-SA" in (SAMPLES / "LICENSE.md").read_text(encoding="utf-8")


@pytest.mark.slow  # parses the whole sample dump (about 15 s of CPU)
def test_make_samples_regenerates_the_shipped_files(tmp_path):
    counts = make_samples(DEFAULT_DUMP, tmp_path)
    assert counts == {"passages": 60, "sentences": 400}
    for name in ("wiki_passages.jsonl", "wiki_sentences.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), name
