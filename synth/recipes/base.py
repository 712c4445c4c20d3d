"""The recipe contract: pure functions from input records to rows (kept or rejected).

A recipe never writes files and never talks to Prefect. The pipeline (``synth.pipeline``) streams
records in batches, calls :meth:`Recipe.process` per batch, adds provenance columns, and writes
kept rows to ``OUT/<recipe>/<lang>/`` and rejected rows (``reject_reason`` set) to ``OUT/<recipe>/_rejected/``.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence, TypeVar

import pyarrow as pa

from synth.config import RunConfigBase, SamplingConfig
from synth.llm.base import Engine, Request, Result, Usage
from synth.paths import PROMPTS_DIR
from synth.prompts import prompt_files

T = TypeVar("T")

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
    # The columns holding a row's generated text, compared by near-duplicate removal (``synth.filters.dedup``) within a
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

    @property
    def prompt_format(self) -> str:
        """``completion`` or ``chat``: ``engine.prompt_format`` resolved for the model (:mod:`synth.llm.prompt_format`).
        Templates are loaded in this form (``load_template(..., form=self.prompt_format)``)."""
        from synth.llm.prompt_format import resolve_prompt_format

        return resolve_prompt_format(self.config.engine)

    def resources(self) -> list[Path]:
        """Files whose content shapes this recipe's rows (templates, exemplars, lexicons, schemas); they are part
        of every unit's identity, so editing one regenerates exactly what it renders. Only the templates of the
        prompt form in use count (:func:`synth.prompts.prompt_files`), so the two forms make different units."""
        return prompt_files(PROMPTS_DIR / self.name, self.prompt_format)

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


# -- candidates: several answers for one checked request ------------------------------------------------------------


def more_candidates(request: Request, sampling: SamplingConfig) -> Request | None:
    """The request for candidates 1..k-1 of ``request`` (``k = sampling.candidates``; ``None`` when k is 1).

    Candidate 0 is ``request`` itself, answered as if there were no candidates (greedy at temperature 0), so its
    stored generation is the one a ``candidates: 1`` run made. The others come from one call with ``n = k - 1``
    at ``max(temperature, candidate_temperature)`` (at temperature 0 more samples would all repeat candidate 0),
    seeded ``seed + 1``: vLLM seeds sample ``i`` with ``seed + 1 + i``, so no candidate shares candidate 0's seed
    and each is reproducible whatever batch it lands in.
    """
    k = sampling.candidates
    if k <= 1:
        return None
    own = request.sampling
    more = replace(
        own,
        n=k - 1,
        temperature=max(own.temperature, sampling.candidate_temperature),
        seed=None if own.seed is None else own.seed + 1,
    )
    return replace(request, id=f"{request.id}/candidates", sampling=more)


def generate_candidates(
    engine: Engine,
    requests: Sequence[Request],
    check: Callable[[list[tuple[int, Result]]], list[T]],
    reason: Callable[[T], str | None],
    sampling: SamplingConfig,
    usage: Usage,
    step: str,
) -> list[list[T]]:
    """Generate ``requests`` and check their candidates; per request, the outcomes of its candidates in sample order.

    ``check`` gets ``(request index, candidate)`` pairs (a candidate is a one-text :class:`Result`; a failed request
    comes as itself, so the check can say ``engine_error``) and returns one outcome per pair, batched so a recipe
    can run LID over all of them at once; ``reason`` reads an outcome's reject reason (``None``: it passes).

    Candidate 0 of every request is generated first; only the requests whose candidate 0 fails ask for the other
    ``sampling.candidates - 1`` (:func:`more_candidates`), all in one more engine call. The kept rows are the same
    as if every request had asked for all of them (each candidate's seed is its own), at the output tokens of
    those that needed them. The caller keeps the first passing candidate (:func:`first_passing`).
    """
    outcomes: list[list[T]] = [[] for _ in requests]

    def run(indices: list[int], batch: list[Request]) -> list[int]:
        started = time.perf_counter()
        results = engine.generate(batch)
        usage.add(results, step, time.perf_counter() - started)
        items = [(i, candidate) for i, result in zip(indices, results) for candidate in (result.candidates() or [result])]
        for (i, _), outcome in zip(items, check(items)):
            outcomes[i].append(outcome)
        return [i for i, result in zip(indices, results) if result.ok]

    answered = set(run(list(range(len(requests))), list(requests)))
    retry = [
        (i, more)
        for i, request in enumerate(requests)
        if i in answered and reason(outcomes[i][0]) is not None
        and (more := more_candidates(request, sampling)) is not None
    ]
    if retry:
        run([i for i, _ in retry], [more for _, more in retry])
    return outcomes


def first_passing(outcomes: Sequence[T], reason: Callable[[T], str | None]) -> int | None:
    """The index of the first outcome without a reject reason, or ``None``."""
    return next((i for i, outcome in enumerate(outcomes) if reason(outcome) is None), None)
