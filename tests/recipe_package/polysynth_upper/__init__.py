"""A recipe from outside polysynth: each English sentence, upper-cased (no LLM, so tests run it in seconds).

It declares what every recipe declares (name, config model, input id field, card, view, prompts folder, output
schema) and registers itself in its own pyproject.toml under ``polysynth.recipes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal

import pyarrow as pa
from pydantic import Field

from synth.config import RunConfigBase, Section
from synth.errors import ConfigError
from synth.llm.base import Usage
from synth.recipes.base import LID_FIELDS, Recipe, RecipeCard, RecipeView, stable_id
from synth.sources.records import read_records


class UpperOptions(Section):
    min_words: int = Field(1, ge=1, description="Sentences with fewer words are rejected as 'too_short'.")


class UpperConfig(RunConfigBase):
    recipe: Literal["upper"] = "upper"
    upper: UpperOptions = Field(default_factory=UpperOptions)


class UpperRecipe(Recipe):
    """Upper-cased English sentences (a test recipe registered through an entry point)."""

    name = "upper"
    config_model = UpperConfig
    id_field = "sentence_id"
    prompts_dir = Path(__file__).parent / "prompts"
    dedup_columns = ("upper",)
    card = RecipeCard(
        title="Upper-cased sentences",
        method="Each English sentence is upper-cased.",
        task_categories=("text-generation",),
        tags=("test",),
        source_dataset="original",
        sources="Sentences of the test input.",
        citation="",
    )
    view = RecipeView(
        length_columns=("upper",),
        sample_columns=("upper", "text"),
        text=lambda row: row.get("upper") or "",
        length=lambda row: None if row.get("upper") is None else len(row["upper"]),
        source=lambda row: row.get("text") or "",
        detail=lambda row: "",
    )

    SCHEMA = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("source_id", pa.string()),
            pa.field("lang", pa.string()),
            pa.field("text", pa.string()),
            pa.field("upper", pa.string()),
            pa.field("reject_reason", pa.string()),
            *LID_FIELDS,
        ]
    )

    @classmethod
    def needs_engine(cls, config: UpperConfig) -> bool:
        return False

    @property
    def prompt_version(self) -> str:
        return "upper/style.v1"

    def validate(self) -> None:
        if self.config.languages != ["en"]:
            raise ConfigError("the upper recipe writes English only", field="languages")

    def read_records(self) -> Iterator[dict[str, Any]]:
        for record in read_records(self.config.input, {"sentence_id": str, "text": str}):
            yield {"source_id": record["sentence_id"], "text": record["text"]}

    def schema(self) -> pa.Schema:
        return self.SCHEMA

    def process(self, records: list[dict[str, Any]], usage: Usage) -> list[dict[str, Any]]:
        rows = []
        for record in records:
            short = len(record["text"].split()) < self.config.upper.min_words
            rows.append(
                {
                    "id": stable_id(record["source_id"], self.name, "en"),
                    "source_id": record["source_id"],
                    "lang": "en",
                    "text": record["text"],
                    "upper": None if short else record["text"].upper(),
                    "reject_reason": "too_short" if short else None,
                    "lid_lang": None,
                    "lid_score": None,
                    "lid_agree": None,
                }
            )
        return rows
