"""How SAP rows are described and shown: the dataset card's section, the report's view and ``synth show``'s table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synth.recipes.base import RecipeCard, RecipeView
from synth.report.browse import SUMMARY_CHARS, plain, score

if TYPE_CHECKING:
    from rich.console import Console

    from synth.report.browse import RowSelection

SWIM_IR_BIBTEX = """@article{thakur2023leveraging,
  title   = {Leveraging {LLMs} for Synthesizing Training Data Across Many Languages in Multilingual Dense Retrieval},
  author  = {Thakur, Nandan and Ni, Jianmo and Hern{\\'a}ndez {\\'A}brego, Gustavo and Wieting, John and Lin, Jimmy and Cer, Daniel},
  journal = {arXiv preprint arXiv:2311.05800},
  year    = {2023},
  url     = {https://arxiv.org/abs/2311.05800}
}"""

CARD = RecipeCard(
    title="SAP summarize-then-ask retrieval queries (SWIM-IR)",
    method=(
        "For each passage the model first writes an extractive English summary, then, from passage and "
        "summary, one question per target language (summarize-then-ask prompting, Thakur et al., 2023). "
        "Cross-lingual mode is 5-shot with the XOR-Retrieve / XTREME-UP exemplars of SWIM-IR; monolingual "
        "mode is 3-shot with the MIRACL exemplars of the passage's language. Each row pairs a query with the "
        "passage it was generated from (a positive for retrieval training)."
    ),
    task_categories=("text-retrieval",),
    tags=("swim-ir", "query-generation", "cross-lingual-retrieval"),
    source_dataset="extended|wikipedia",
    sources=(
        "Passages: Wikipedia (CC BY-SA 4.0; authors in each article's history). Few-shot exemplars: "
        "SWIM-IR (CC BY-SA 4.0)."
    ),
    citation=SWIM_IR_BIBTEX,
    share_alike_sources=("Wikipedia text", "SWIM-IR exemplars"),
    limitation=(
        "SAP queries can be generic or only loosely tied to their passage; the passage is a positive, not a "
        "verified unique answer, and no hard negatives are included."
    ),
    source_language_column="passage_lang",
)


VIEW = RecipeView(
    length_columns=("query",),
    sample_columns=("query", "title", "passage", "summary"),
    text=lambda row: row.get("query") or "",
    length=lambda row: _chars(row.get("query")),
    source=lambda row: ": ".join(part for part in (row.get("title"), row.get("passage")) if part),
    detail=lambda row: f"summary: {row.get('summary') or '(none)'}",
)


def _chars(text: str | None) -> int | None:
    return None if text is None else len(text)


def show(console: Console, selection: RowSelection, title: str) -> None:
    """The rows as a table: passage, language, query, the summary's start, LID score."""
    from rich.table import Table

    table = Table(title=plain(title), show_lines=True)
    for name in ("passage_id", "lang", "query", "summary", "lid_score"):
        table.add_column(name, overflow="fold")
    if selection.rejected:
        table.add_column("reject_reason")
    for row in selection.rows:
        summary = row["summary"] or ""
        if len(summary) > SUMMARY_CHARS:
            summary = summary[: SUMMARY_CHARS - 1] + "…"
        cells = [plain(row[name]) for name in ("passage_id", "lang", "query")] + [
            plain(summary),
            score(row["lid_score"]),
        ]
        if selection.rejected:
            cells.append(plain(row["reject_reason"]))
        table.add_row(*cells)
    console.print(table)
