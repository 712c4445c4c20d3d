"""The recipe contract: pure functions from input records to rows (kept or rejected).

A recipe never writes files and never talks to Prefect. The pipeline (``synth.pipeline``) streams
records in batches, calls :meth:`Recipe.process` per batch, adds provenance columns, and writes
kept rows to ``OUT/<recipe>/<lang>/`` and rejected rows (``reject_reason`` set) to ``OUT/<recipe>/_rejected/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator

import pyarrow as pa

from synth.config import RunConfigBase
from synth.llm.base import Engine, Usage
from synth.paths import PROMPTS_DIR

# Columns every row has; recipes produce these besides their own.
LID_FIELDS = [
    pa.field("lid_lang", pa.string()),
    pa.field("lid_score", pa.float32()),
    pa.field("lid_agree", pa.bool_()),
]


def stable_id(*parts: Any) -> str:
    """A stable row id: hash of source id, recipe, language and step inputs."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


class Recipe(ABC):
    """One published method (SAP, EntityCS, COD) as a batch transformation.

    Subclasses set ``name`` and ``prompt_version`` and implement the four methods below.
    ``engine`` is ``None`` only for recipes whose configured run needs no LLM.
    """

    name: ClassVar[str]
    needs_engine: ClassVar[bool] = True
    # The columns holding a row's generated text, compared by near-duplicate removal (``synth.dedup``) within a
    # language; ``a.b`` is field ``b`` of the structs in list column ``a``. Empty: the recipe's rows are not compared.
    dedup_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: RunConfigBase, engine: Engine | None, lid: Any):
        self.config = config
        self.engine = engine
        self.lid = lid

    @property
    @abstractmethod
    def prompt_version(self) -> str:
        """Version tag of the prompt templates in use (recorded on every row)."""

    def resources(self) -> list[Path]:
        """Files whose content shapes this recipe's rows (templates, exemplars, lexicons, schemas); they are part
        of every unit's identity, so editing one regenerates exactly what it renders."""
        return [PROMPTS_DIR / self.name]

    @abstractmethod
    def validate(self) -> None:
        """Check the config against what the recipe supports (languages, inputs); raise ConfigError."""

    @abstractmethod
    def read_records(self) -> Iterator[dict[str, Any]]:
        """Stream input records; each has a unique ``source_id``. Bad input raises InputError (file, row, field)."""

    @abstractmethod
    def schema(self) -> pa.Schema:
        """Recipe columns of a row, including ``id``, ``source_id``, ``lang`` and the LID fields."""

    @abstractmethod
    def process(self, records: list[dict[str, Any]], usage: Usage) -> list[dict[str, Any]]:
        """Turn a batch of records into rows. A rejected row has ``reject_reason`` set; nothing is dropped."""
