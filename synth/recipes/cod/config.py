"""The run config of COD: the shared sections and ``cod:``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from synth.config import RunConfigBase, Section


class CodOptions(Section):
    schema_path: str | None = Field(None, description="SGD schema JSON; default: schema.json beside the dialogues.")
    max_attempts: int = Field(2, ge=1, description="Generations per turn before a missing slot value is rejected.")
    turn_max_tokens: int = Field(64, ge=8)
    max_turns: int | None = Field(None, ge=1, description="Use only the first N turns of each dialogue.")


class CodConfig(RunConfigBase):
    recipe: Literal["cod"] = "cod"
    file_fields: ClassVar[dict[str, str]] = {"cod.schema_path": "schema"}
    cod: CodOptions = Field(default_factory=CodOptions)
