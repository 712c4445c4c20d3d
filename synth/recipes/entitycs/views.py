"""How EntityCS rows are described and shown: the dataset card's section, the report's view and ``synth show``'s table
(switched entities highlighted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synth.recipes.base import RecipeCard, RecipeView
from synth.report.browse import highlight_spans, plain

if TYPE_CHECKING:
    from rich.console import Console

    from synth.report.browse import RowSelection

ENTITYCS_BIBTEX = """@inproceedings{whitehouse-etal-2022-entitycs,
  title     = {{E}ntity{CS}: Improving Zero-Shot Cross-lingual Transfer with Entity-Centric Code Switching},
  author    = {Whitehouse, Chenxi and Christopoulou, Fenia and Iacobacci, Ignacio},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2022},
  year      = {2022},
  address   = {Abu Dhabi, United Arab Emirates},
  publisher = {Association for Computational Linguistics},
  pages     = {6698--6714},
  doi       = {10.18653/v1/2022.findings-emnlp.499},
  url       = {https://aclanthology.org/2022.findings-emnlp.499}
}"""

CARD = RecipeCard(
    title="EntityCS entity-level code-switching",
    method=(
        "English Wikipedia sentences whose entity mentions are linked to Wikidata have every mention "
        "replaced by the entity's label in one other language, so each sentence is code-switched at the "
        "entity level only (Whitehouse et al., 2022). The corpus is meant for entity-centric masked-language "
        "pre-training (entity prediction) and cross-lingual alignment."
    ),
    # EntityCS data trains masked entity prediction; the switched spans are entity translations.
    task_categories=("fill-mask", "translation"),
    tags=("code-switching", "entitycs", "wikidata"),
    source_dataset="extended|wikipedia",
    sources=(
        "Sentences: English Wikipedia (CC BY-SA 4.0; authors in each article's history). Entity labels: the "
        "configured lexicon (by default CLDR names through babel, Unicode License v3)."
    ),
    citation=ENTITYCS_BIBTEX,
    share_alike_sources=("Wikipedia text",),
    limitation=(
        "EntityCS labels come from a lexicon: they can be missing, ambiguous, or uninflected in context "
        "(which breaks agreement in morphologically rich languages)."
    ),
    fixed_source_languages=("en",),
)


VIEW = RecipeView(
    length_columns=("cs_sentence",),
    sample_columns=("cs_sentence", "en_sentence", "entities"),
    text=lambda row: row.get("cs_sentence") or "",
    length=lambda row: _chars(row.get("cs_sentence")),
    source=lambda row: row.get("en_sentence") or "",
    detail=lambda row: "; ".join(
        f"{e['mention']} → {e['label']} ({e['label_source']})" for e in row.get("entities") or []
    ),
)


def _chars(text: str | None) -> int | None:
    return None if text is None else len(text)


def show(console: Console, selection: RowSelection, title: str) -> None:
    """The rows as a table of code-switched sentences, switched entities highlighted."""
    from rich.table import Table

    table = Table(title=plain(title), show_lines=True)
    table.add_column("lang")
    table.add_column("cs_sentence (switched entities highlighted)", overflow="fold")
    if selection.rejected:
        table.add_column("reject_reason")
    for row in selection.rows:
        if row["cs_sentence"] is None:  # rejected before switching: the source sentence is all there is
            sentence = plain(f"(source) {row['en_sentence']}")
            sentence.stylize("dim")
        else:
            sentence = highlight_spans(row["cs_sentence"], [(e["start"], e["end"]) for e in row["entities"] or []])
        cells = [plain(row["lang"]), sentence]
        if selection.rejected:
            cells.append(plain(row["reject_reason"]))
        table.add_row(*cells)
    console.print(table)
