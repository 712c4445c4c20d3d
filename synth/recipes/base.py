"""The recipe contract: pure functions from input records to rows (kept or rejected).

A recipe never writes files and never talks to Prefect. The pipeline (``synth.pipeline``) streams
records in batches, calls :meth:`Recipe.process` per batch, adds provenance columns, and writes
kept rows to ``OUT/<recipe>/<lang>/`` and rejected rows (``reject_reason`` set) to ``OUT/<recipe>/_rejected/``.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence, TypeVar

import pyarrow as pa

from synth.config import RunConfigBase, SamplingConfig
from synth.errors import EngineError
from synth.llm.base import Engine, Request, Result, Sampling, Usage, request_seed
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


@dataclass(frozen=True)
class RecipeCard:
    """What the dataset card says about a recipe: method, Hub metadata, sources and the paper to cite."""

    title: str
    method: str
    task_categories: tuple[str, ...]
    tags: tuple[str, ...]
    source_dataset: str
    sources: str
    citation: str
    # CC BY-SA sources the recipe's rows derive from (the reason for the card's license).
    share_alike_sources: tuple[str, ...] = ()
    limitation: str = ""
    # Languages of source text that rows carry besides their target language.
    source_language_column: str | None = None
    fixed_source_languages: tuple[str, ...] = ()


Row = dict[str, Any]


@dataclass(frozen=True)
class RecipeView:
    """How the report and ``synth show`` read a recipe's rows."""

    length_columns: tuple[str, ...]  # read for every row: what ``length`` needs
    sample_columns: tuple[str, ...]  # read only until the samples are complete
    text: Callable[[Row], str]  # the generated text, as shown
    length: Callable[[Row], int | None]  # characters of the generated text; None when nothing was generated
    source: Callable[[Row], str]  # what the text was generated from
    detail: Callable[[Row], str]  # one line more: SAP's summary, EntityCS's switched entities, COD's turn counts


class Recipe(ABC):
    """One published method as a batch transformation, declaring everything the rest of polysynth needs to know.

    A subclass sets the class attributes below and implements the abstract methods; registering it under the
    ``polysynth.recipes`` entry-point group (:mod:`synth.recipes`) makes it a recipe of the CLI, the flows, the
    deployments, the card and the report. ``engine`` is ``None`` when :meth:`needs_engine` says the run needs no LLM.
    """

    name: ClassVar[str]
    # The run config of this recipe: a RunConfigBase subclass with ``recipe: Literal[name]`` and its own section.
    config_model: ClassVar[type[RunConfigBase]]
    # The input field source ids come from (named in errors about them).
    id_field: ClassVar[str] = "id"
    card: ClassVar[RecipeCard]
    view: ClassVar[RecipeView]
    # Where the recipe's prompt templates and exemplars live (None: prompts/<name>/ of polysynth).
    prompts_dir: ClassVar[Path | None] = None
    # The columns holding a row's generated text, compared by near-duplicate removal (``synth.filters.dedup``) within a
    # language; ``a.b`` is field ``b`` of the structs in list column ``a``. Empty: the recipe's rows are not compared.
    dedup_columns: ClassVar[tuple[str, ...]] = ()
    # How ``synth show`` prints selected rows: ``show(console, selection, title)`` (``selection`` a
    # ``synth.report.browse.RowSelection``); None: a table of the view's text, source and detail.
    show: ClassVar[Callable[[Any, Any, str], None] | None] = None

    @classmethod
    def needs_engine(cls, config: RunConfigBase) -> bool:
        """Whether a run with ``config`` calls the LLM (a run that does not never starts an engine)."""
        return True

    @classmethod
    def prompts(cls) -> Path:
        """The folder of this recipe's prompts."""
        return cls.prompts_dir or PROMPTS_DIR / cls.name

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
        return prompt_files(self.prompts(), self.prompt_format)

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

    # -- LLM calls: what every recipe step does the same way --------------------------------------------------------

    def sampling(self, request_id: str, max_tokens: int, **overrides: Any) -> Sampling:
        """The sampling of one request of this run (:func:`request_sampling` of ``config.sampling``)."""
        return request_sampling(self.config.sampling, request_id, max_tokens, **overrides)

    def generate(self, requests: Sequence[Request], usage: Usage | None, step: str) -> list[Result]:
        """Generate ``requests`` with the run's engine, counted in ``usage`` under ``step`` (:func:`timed_generate`)."""
        if self.engine is None:
            raise EngineError(f"{self.name} step '{step}' needs an LLM engine but none was given")
        return timed_generate(self.engine, requests, usage, step)


def request_sampling(sampling: SamplingConfig, request_id: str, max_tokens: int, **overrides: Any) -> Sampling:
    """The sampling of one request from the run's ``sampling`` config: its temperature, top_p and repetition penalty,
    ``max_tokens`` of the step, a seed of its own (:func:`synth.llm.base.request_seed` of ``sampling.seed`` and
    ``request_id``, so the answer does not depend on the batch), stopping at the end of the line. ``overrides``
    replace any of these (a retry's temperature)."""
    values: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": max_tokens,
        "repetition_penalty": sampling.repetition_penalty,
        "seed": request_seed(sampling.seed, request_id),
        "stop": ("\n",),
    }
    return Sampling(**{**values, **overrides})


def timed_generate(engine: Engine, requests: Sequence[Request], usage: Usage | None, step: str) -> list[Result]:
    """``engine.generate(requests)``, its results and wall time added to ``usage`` under ``step`` (not counted
    when ``usage`` is ``None``)."""
    started = time.perf_counter()
    results = engine.generate(list(requests))
    if usage is not None:
        usage.add(results, step, time.perf_counter() - started)
    return results


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
        results = timed_generate(engine, batch, usage, step)
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
