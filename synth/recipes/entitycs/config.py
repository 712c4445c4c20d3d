"""The run config of EntityCS: the shared sections and ``entitycs:``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from synth.config import RunConfigBase, Section


class EntityCSOptions(Section):
    lexicon: str | None = Field(None, description="Lexicon Parquet; empty means the shipped CLDR lexicon.")
    languages_per_sentence: int = Field(5, ge=1, description="Sample up to this many candidate languages.")
    markers: Literal["lang", "entity", "none"] = Field("lang", description="<de>…</de>, <e>…</e> or no markers.")
    llm_label_fallback: bool = Field(False, description="Ask the LLM for labels missing from the lexicon.")
    llm_inflection_repair: bool = Field(False, description="Let the LLM inflect switched labels in context.")
    max_words: int = Field(128, ge=1)


class EntityCSConfig(RunConfigBase):
    recipe: Literal["entitycs"] = "entitycs"
    file_fields: ClassVar[dict[str, str]] = {"entitycs.lexicon": "lexicon"}
    entitycs: EntityCSOptions = Field(default_factory=EntityCSOptions)
