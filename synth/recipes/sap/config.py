"""The run config of SAP: the shared sections and ``sap:``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synth.config import RunConfigBase, Section


class AnswerabilityOptions(Section):
    """The optional SAP filter that asks the run's own engine whether the passage answers the query
    (``synth.recipes.sap.answerability``)."""

    enabled: bool = Field(
        False,
        description="Score each query that passed the other checks: p(yes) / (p(yes) + p(no)) of one token; below "
        "threshold it is rejected as 'unanswerable' (the next candidate is tried). Off by default: the default model "
        "(Gemma 3 270M) cannot judge: ROC AUC 0.55 on matched vs mismatched SWIM-IR exemplar pairs (bench/RESULTS.md).",
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Minimum score of a kept query.")


class SapOptions(Section):
    mode: Literal["cross-lingual", "monolingual"] = Field("cross-lingual")
    zero_shot: bool = Field(False, description="Allow languages without exemplars through the zero-shot template.")
    summary_max_tokens: int = Field(96, ge=8)
    query_max_tokens: int = Field(48, ge=4)
    max_query_words: int = Field(40, ge=3, description="Longer queries are rejected as 'too_long'.")
    shots: int | None = Field(
        None, ge=1,
        description="Few-shot exemplars per prompt (the first N of the exemplar files); null = all (5 cross-lingual, "
        "3 monolingual). Fewer shots mean shorter prompts (CPU prefill time); measured in bench/RESULTS.md.",
    )
    answerability: AnswerabilityOptions = Field(default_factory=AnswerabilityOptions)


class SapConfig(RunConfigBase):
    recipe: Literal["sap"] = "sap"
    sap: SapOptions = Field(default_factory=SapOptions)
