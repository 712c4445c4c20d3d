"""How COD rows are described and shown: the dataset card's section, the report's view and ``synth show``'s
dialogue transcripts (slot values highlighted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synth.recipes.base import RecipeCard, RecipeView, Row
from synth.report.browse import highlight_spans, percent, plain

if TYPE_CHECKING:
    from rich.console import Console

    from synth.report.browse import RowSelection

COD_BIBTEX = """@article{majewska-etal-2023-cross,
  title   = {Cross-Lingual Dialogue Dataset Creation via Outline-Based Generation},
  author  = {Majewska, Olga and Razumovskaia, Evgeniia and Ponti, Edoardo M. and Vuli{\\'c}, Ivan and Korhonen, Anna},
  journal = {Transactions of the Association for Computational Linguistics},
  volume  = {11},
  pages   = {139--156},
  year    = {2023},
  doi     = {10.1162/tacl_a_00539},
  url     = {https://aclanthology.org/2023.tacl-1.9}
}"""

CARD = RecipeCard(
    title="COD outline-based task-oriented dialogues",
    method=(
        "Schema-Guided Dialogue (SGD) dialogues are turned into per-turn natural-language outlines (intent, "
        "slots and values), and the model writes each turn in the target language from its outline, as in "
        "Cross-lingual Outline-based Dialogue (Majewska et al., 2023); slot values are localised, and turns "
        "that lose a required value are rejected."
    ),
    # "conversational" is no longer a Hub task category: dialogue generation is listed as text-generation.
    task_categories=("text-generation",),
    tags=("dialogue", "task-oriented-dialogue", "sgd", "cod"),
    source_dataset="extended|schema_guided_dstc8",
    sources="Dialogues and schemas: Schema-Guided Dialogue (SGD, CC BY-SA 4.0).",
    citation=COD_BIBTEX,
    share_alike_sources=("SGD dialogues",),
    limitation=(
        "COD dialogues keep SGD's English schemas and service flows; localised slot values may not fit every "
        "context, and generated turns can drop or alter details of their outline."
    ),
)


def _text(row: Row) -> str:
    """A COD dialogue as ``SPEAKER: utterance`` lines; a turn that failed its checks names its reason."""
    return "\n".join(
        f"{turn['speaker']}: {turn.get('utterance') or ''}"
        + (f"  [{turn['reject_reason']}]" if turn.get("reject_reason") else "")
        for turn in row.get("turns") or []
    )


def _length(row: Row) -> int | None:
    turns = row.get("turns")
    return sum(len(turn.get("utterance") or "") for turn in turns) if turns else None


def _detail(row: Row) -> str:
    found = row.get("slot_found_rate")
    return f"turns kept {row.get('turns_kept')}/{row.get('turns_total')}" + (
        f" · slot values found {found:.0%}" if found is not None else ""
    )


VIEW = RecipeView(
    length_columns=("turns",),
    sample_columns=("turns", "outline", "turns_kept", "turns_total", "slot_found_rate"),
    text=_text,
    length=_length,
    source=lambda row: "\n".join(row.get("outline") or []),
    detail=_detail,
)


def show(console: Console, selection: RowSelection, title: str) -> None:
    """Each row as a dialogue transcript, slot values highlighted, failed turns with their reason."""
    from rich.text import Text

    console.print(Text(title, style="bold"))
    for row in selection.rows:
        header = plain(
            f"dialogue {row['dialogue_id']} · {row['lang']} · {', '.join(row['services'] or [])} · turns kept "
            f"{row['turns_kept']}/{row['turns_total']} · slot values found {percent(row['slot_found_rate'])}"
        )
        header.stylize("bold")
        if row["reject_reason"]:
            header.append(f" · rejected: {row['reject_reason']}", style="red")
        console.print()
        console.print(header)
        for turn in row["turns"] or []:
            line = Text(f"{turn['speaker']}: ", style="cyan" if turn["speaker"] == "USER" else "green")
            if turn["utterance"]:
                frames = turn["frames"] or []
                spans = [(slot["start"], slot["exclusive_end"]) for frame in frames for slot in frame["slots"] or []]
                line.append_text(highlight_spans(turn["utterance"], spans))
            else:
                line.append("(not generated)", style="dim")
            if turn["reject_reason"]:
                line.append(f"  [{turn['reject_reason']}]", style="dim red")
            console.print(line)
