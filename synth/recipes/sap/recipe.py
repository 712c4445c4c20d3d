"""SAP, summarize-then-ask (SWIM-IR; Thakur et al., 2023): retrieval training pairs in many languages.

For each passage the model first writes an extractive English summary (step 1, once per passage), then,
from passage + summary, one question per target language (step 2): 1 + k LLM calls per passage for k
languages. Cross-lingual mode is 5-shot with the XOR-Retrieve / XTREME-UP exemplars; monolingual mode is
3-shot with the MIRACL exemplars of the passage's own language. Few-shot prefixes are identical across
requests so vLLM's prefix cache serves them. With ``sap.zero_shot: true`` a language without exemplars gets
the zero-shot question template (and, in monolingual mode, the cross-lingual English summary exemplars).

Prompt form (``engine.prompt_format``, :mod:`synth.llm.prompt_format`): ``completion`` sends one few-shot text
(``prompts/sap/*.v1.yaml``), ``chat`` a system instruction, each exemplar as a user turn (article [+ summary]) and
an assistant turn (its summary or question), then the request as the last user turn, through the model's chat
template (``prompts/sap/*.chat.v1.yaml``). Same exemplars, same request ids and seeds, same checks; the form is in
``prompt_version`` (``sap/summary.chat.v1@v1+...``) and in the row fingerprint, so switching it regenerates.

Input passages carry an optional ``lang`` (default ``en``); it is normalised on reading (``DE``, ``de-DE``,
``deu`` and ``ger`` all become ``de``, see :func:`normalize_record_lang`) so it compares with ``languages``.

Every passage × language gives a row; failures are rejected rows with a reason:
``engine_error``, ``summary_empty``, ``passage_too_long``, ``empty``, ``too_long``, ``copy``,
``exemplar_copy``, ``lid_mismatch``, ``script_mismatch``, and with ``sap.answerability.enabled`` ``unanswerable``.

Answerability (``sap.answerability``, off by default): a candidate that passed every other check is scored by the
run's own engine (:mod:`synth.recipes.sap.answerability`: does the passage answer the query? p(yes) / (p(yes) + p(no)) of one
token); below ``threshold`` it is rejected as ``unanswerable``, so the next candidate is tried. The score is the
row's ``answerable_score`` (null when not scored: the filter is off, the query failed an earlier check, or
neither yes nor no was among the model's likeliest tokens, in which case the query is kept).

Candidates (``sampling.candidates: k``): a question that fails a check gets ``k - 1`` more candidates in one call
(:func:`synth.recipes.base.generate_candidates`); every check runs on each, unchanged, and the first that passes
(in sample order, candidate 0 being the configured sample) is the row's query. ``candidate_reasons`` lists every
candidate's reason (null for one that passed); a row where all fail keeps candidate 0's query and reason.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, NamedTuple, Sequence

import pyarrow as pa

from synth.errors import ConfigError, InputError
from synth.sources.records import input_name, read_numbered_records
from synth.llm.base import Request, Result, Usage
from synth.paths import PROMPTS_DIR
from synth.prompts import PromptTemplate, load_template
from synth.recipes.base import LID_FIELDS, Recipe, first_passing, generate_candidates, stable_id
from synth.recipes.sap import views
from synth.recipes.sap.languages import language_names
from synth.recipes.sap.config import SapConfig

EXEMPLAR_DIR = PROMPTS_DIR / "sap" / "exemplars"
CROSS_LINGUAL_FILES = ("XOR-Retrieve-prompts.csv", "xtreme-up-prompts.csv")
MONOLINGUAL_FILE = "MIRACL-prompts.csv"
MONOLINGUAL_SHOTS = 3
# Passages longer than this are rejected before any call: they would overflow the context of small models.
MAX_PASSAGE_WORDS = 600
# A BCP-47-like tag: a 2-3 letter language subtag, then subtags of 1-8 letters or digits.
_LANG_TAG = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")
# ISO 639-1 codes that ISO withdrew (or Java's old ``jw``): the current code.
_WITHDRAWN_639_1 = {"in": "id", "iw": "he", "ji": "yi", "jw": "jv", "mo": "ro"}


@dataclass(frozen=True)
class Exemplar:
    passage: str
    summary: str
    question: str


def _column_language(header: str) -> str:
    return header.split(" (")[0].strip()


@lru_cache(maxsize=1)
def cross_lingual_exemplars() -> dict[str, tuple[Exemplar, ...]]:
    """Target language -> the 5 exemplars (English passage, English summary, question in that language).

    The XOR-Retrieve file starts with a banner row; the header is the first row whose first cell is ``Article``.
    """
    codes = {name: code for code, name in language_names().items()}
    by_lang: dict[str, list[Exemplar]] = {}
    for filename in CROSS_LINGUAL_FILES:
        path = EXEMPLAR_DIR / filename
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        header_at = next(i for i, row in enumerate(rows) if row and row[0].strip() == "Article")
        header = rows[header_at]
        for row in rows[header_at + 1 :]:
            if not row or not row[0].strip():
                continue
            for column, cell in zip(header[2:], row[2:]):
                code = codes.get(_column_language(column))
                if code is None:
                    raise ConfigError(f"exemplar column {column!r} has no ISO code in languages.yaml", file=str(path))
                # Empty and placeholder ("-") cells mean the exemplar has no question in that language.
                if any(ch.isalpha() for ch in cell) and all(e.question != cell.strip() for e in by_lang.get(code, [])):
                    by_lang.setdefault(code, []).append(Exemplar(row[0].strip(), row[1].strip(), cell.strip()))
    return {code: tuple(examples) for code, examples in by_lang.items()}


@lru_cache(maxsize=1)
def monolingual_exemplars() -> dict[str, tuple[Exemplar, ...]]:
    """Language -> its first 3 MIRACL exemplars that have a summary (blank rows separate languages)."""
    codes = {name: code for code, name in language_names().items()}
    by_lang: dict[str, list[Exemplar]] = {}
    with (EXEMPLAR_DIR / MONOLINGUAL_FILE).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            code = codes.get((row.get("Language") or "").strip())
            if code is None or not row["Summary"].strip() or not row["Question"].strip():
                continue
            examples = by_lang.setdefault(code, [])
            if len(examples) < MONOLINGUAL_SHOTS:
                examples.append(Exemplar(row["Passage"].strip(), row["Summary"].strip(), row["Question"].strip()))
    return {code: tuple(examples) for code, examples in by_lang.items()}


@lru_cache(maxsize=1)
def _iso_639_1_of() -> dict[str, str]:
    """ISO 639-2/T, 639-2/B and 639-3 codes -> their ISO 639-1 code (``deu``, ``ger``, ``swh`` -> ...), from CLDR.

    Only aliases onto a two-letter code: CLDR's other replacements (``gom`` -> ``kok``, ``tgl`` -> ``fil``)
    would rename codes the exemplar files use.
    """
    from babel.core import get_global

    aliases = get_global("language_aliases")
    return {code: target for code, target in aliases.items() if len(code) == 3 and len(target) == 2 and target.isalpha()}


def normalize_record_lang(code: str) -> str | None:
    """The code of an input passage's ``lang`` as ``languages`` spells it; ``None`` if it is no language tag.

    Lowercased; of a BCP-47 tag its language (``de-DE``, ``zh-Hant``, ``pt_BR`` -> ``de``, ``zh``, ``pt``;
    an extended language subtag wins: ``zh-yue`` -> ``yue``); ISO 639-2/3 codes that have an ISO 639-1
    code become it (``deu``/``ger`` -> ``de``); others stay (``bho``, ``mwr``).

    >>> [normalize_record_lang(c) for c in ("DE", "de-DE", "deu", "zh-Hant", "xx-!!")]
    ['de', 'de', 'de', 'zh', None]
    """
    key = code.strip().lower().replace("_", "-")
    if not _LANG_TAG.fullmatch(key):
        return None
    subtags = key.split("-")
    language = subtags[1] if len(subtags) > 1 and re.fullmatch(r"[a-z]{3}", subtags[1]) else subtags[0]
    return _WITHDRAWN_639_1.get(language) or _iso_639_1_of().get(language) or language


def supported_languages(mode: str) -> list[str]:
    table = cross_lingual_exemplars() if mode == "cross-lingual" else monolingual_exemplars()
    return sorted(code for code in table if mode == "monolingual" or code != "en")


class SapRecipe(Recipe):
    """Summarize-then-ask query generation. See the module docstring for the method and reject reasons."""

    name = "sap"
    config_model = SapConfig
    id_field = "id"
    card = views.CARD
    view = views.VIEW
    show = staticmethod(views.show)
    dedup_columns = ("query",)  # the generated question (the summary is a step, shared by a passage's languages)

    SCHEMA = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("source_id", pa.string()),
            pa.field("passage_id", pa.string()),
            pa.field("title", pa.string()),
            pa.field("passage", pa.string()),
            pa.field("passage_lang", pa.string()),
            pa.field("lang", pa.string()),
            pa.field("mode", pa.string()),
            pa.field("summary", pa.string()),
            pa.field("query", pa.string()),
            pa.field("reject_reason", pa.string()),
            # Per generated candidate, in sample order, its reject reason (null: it passed); null if none was made.
            pa.field("candidate_reasons", pa.list_(pa.string())),
            # sap.answerability: the kept (or shown) candidate's score, p(yes) / (p(yes) + p(no)); null: not scored
            pa.field("answerable_score", pa.float32()),
            *LID_FIELDS,
        ]
    )

    @property
    def options(self):
        return self.config.sap

    @property
    def summary_template(self) -> PromptTemplate:
        return load_template("sap/summary.v1.yaml", form=self.prompt_format)

    def query_template(self, lang: str, form: str | None = None) -> PromptTemplate:
        """The question template of ``lang`` in ``form`` (default: the run's :attr:`prompt_format`)."""
        if lang not in self._exemplars():
            relative = "sap/query_zeroshot.v1.yaml"
        elif self.options.mode == "monolingual":
            relative = "sap/query_monolingual.v1.yaml"
        else:
            relative = "sap/query_crosslingual.v1.yaml"
        return load_template(relative, form=form or self.prompt_format)

    @property
    def prompt_version(self) -> str:
        templates = [self.summary_template] + sorted(
            {self.query_template(lang) for lang in self.config.languages}, key=lambda t: t.name
        )
        return "+".join(t.tag for t in templates)

    def _exemplars(self) -> dict[str, tuple[Exemplar, ...]]:
        return cross_lingual_exemplars() if self.options.mode == "cross-lingual" else monolingual_exemplars()

    def validate(self) -> None:
        supported = supported_languages(self.options.mode)
        missing = [lang for lang in self.config.languages if lang not in supported]
        if missing and not self.options.zero_shot:
            raise ConfigError(
                f"no {self.options.mode} SAP exemplars for {', '.join(missing)}; supported: {', '.join(supported)} "
                "(or set sap.zero_shot: true to use the zero-shot template)",
                field="languages",
            )
        if missing:
            from synth.filters.lid import normalize_lang

            for lang in missing:
                normalize_lang(lang)

    def schema(self) -> pa.Schema:
        return self.SCHEMA

    def read_records(self) -> Iterator[dict[str, Any]]:
        spec = self.config.input
        if spec.path and spec.path.endswith((".xml", ".xml.bz2")):
            from synth.sources.wikipedia import iter_passages

            numbered = enumerate(iter_passages(spec.path), start=1)
        else:
            numbered = read_numbered_records(spec, {"id": str, "text": str})
        for row, record in numbered:
            raw_lang = record.get("lang")
            lang = "en" if raw_lang is None or raw_lang == "" else normalize_record_lang(str(raw_lang))
            if lang is None:
                raise InputError(
                    f"not a language code: {raw_lang!r} (expected ISO 639 or BCP-47, e.g. 'de', 'deu', 'de-DE')",
                    file=input_name(spec),
                    row=row,
                    field="lang",
                )
            yield {
                "source_id": str(record["id"]),
                "title": str(record.get("title") or ""),
                "text": record["text"],
                "lang": lang,
            }

    # -- step 1 ---------------------------------------------------------------------------------
    def summary_exemplars(self, passage_lang: str) -> list[dict[str, str]]:
        """The summary exemplars: cross-lingual, the 5 English ones (one prefix for every passage);
        monolingual, the 3 MIRACL exemplars of the passage's language (one prefix per language), or for a
        language without MIRACL exemplars (``sap.zero_shot``) the cross-lingual English ones."""
        # English exemplars rather than a zero-shot summary prompt for the languages MIRACL lacks: they use
        # the same template (summary.v1), so prompt_version, and the prompt of every language that has
        # exemplars, stay exactly what they were; the summary step is English in the method anyway.
        monolingual = monolingual_exemplars() if self.options.mode == "monolingual" else {}
        if passage_lang in monolingual:
            examples = monolingual[passage_lang]
        else:
            examples = cross_lingual_exemplars()["de"]  # all XOR columns share the same passages and summaries
        return [{"passage": e.passage, "summary": e.summary} for e in examples[: self.options.shots]]

    def summary_prefix(self, passage_lang: str) -> str:
        """The completion-form summary prefix (:meth:`summary_exemplars` rendered)."""
        return load_template("sap/summary.v1.yaml").render_prefix(self.summary_exemplars(passage_lang))

    def summary_request(self, record: dict[str, Any]) -> Request:
        """Completion: the few-shot text; chat: system turn, exemplar turns, then the passage as the user turn."""
        request_id = f"{record['source_id']}/summary"
        body = self.summary_template.render(self.summary_exemplars(record["lang"]), {"passage": record["text"]})
        return Request(id=request_id, sampling=self.sampling(request_id, self.options.summary_max_tokens), **body)

    # -- step 2 ---------------------------------------------------------------------------------
    def query_exemplars(self, lang: str) -> list[dict[str, str]]:
        """The few-shot exemplars of one target language (shared by every passage of that language)."""
        examples = self._exemplars().get(lang, ())[: self.options.shots]  # sap.shots: the first N (None: all)
        return [{"passage": e.passage, "summary": e.summary, "question": e.question} for e in examples]

    def query_prefix(self, lang: str) -> str:
        """The completion-form few-shot prefix of one target language (:meth:`query_exemplars` rendered)."""
        template = self.query_template(lang, "completion")
        return template.render_prefix(self.query_exemplars(lang), language=language_names().get(lang, lang))

    def query_request(self, record: dict[str, Any], summary: str, lang: str) -> Request:
        """Completion: the few-shot text; chat: system turn, exemplar turns, then passage + summary as the user turn."""
        request_id = f"{record['source_id']}/query/{lang}"
        body = self.query_template(lang).render(
            self.query_exemplars(lang),
            {"passage": record["text"], "summary": summary},
            language=language_names().get(lang, lang),
        )
        return Request(id=request_id, sampling=self.sampling(request_id, self.options.query_max_tokens), **body)

    def target_languages(self, record: dict[str, Any]) -> list[str]:
        """Cross-lingual: every configured language; monolingual: the passage's own language, if configured."""
        if self.options.mode == "monolingual":
            return [record["lang"]] if record["lang"] in self.config.languages else []
        return list(self.config.languages)

    def process(self, records: list[dict[str, Any]], usage: Usage) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        ready = []
        for record in records:
            langs = self.target_languages(record)
            if len(record["text"].split()) > MAX_PASSAGE_WORDS:
                rows += [self._row(record, lang, "", "", "passage_too_long") for lang in langs]
            elif langs:
                ready.append((record, langs))

        summaries = self.generate([self.summary_request(record) for record, _ in ready], usage, "summary")

        query_jobs: list[tuple[dict[str, Any], str, str]] = []
        for (record, langs), result in zip(ready, summaries):
            summary = _first_line(result.text)
            if not result.ok or not summary:
                reason = "engine_error" if not result.ok else "summary_empty"
                rows += [self._row(record, lang, summary, "", reason) for lang in langs]
            else:
                query_jobs += [(record, summary, lang) for lang in langs]
        # Sorted by language so requests sharing a few-shot prefix are scheduled together.
        query_jobs.sort(key=lambda job: job[2])

        requests = [self.query_request(r, s, lang) for r, s, lang in query_jobs]
        candidates = generate_candidates(
            self.engine,
            requests,
            lambda items: self.check_queries(query_jobs, items, usage),
            _reason,
            self.config.sampling,
            usage,
            "query",
        )
        for (record, summary, lang), outcomes in zip(query_jobs, candidates):
            query, reason, verdict, reasons = choose_query(outcomes)
            row = self._row(record, lang, summary, query, reason, verdict, reasons)
            row["answerable_score"] = kept_outcome(outcomes).answerable_score
            rows.append(row)
        return rows

    def check_queries(
        self, jobs: Sequence[tuple[dict[str, Any], str, str]], items: list[tuple[int, Result]], usage: Usage | None = None
    ) -> list[QueryOutcome]:
        """Every check of a query on each candidate: ``items`` are (index into ``jobs``, candidate); ``jobs`` are
        (record, summary, language). :meth:`parse_query`'s checks first, then LID on those that pass them, then
        (``sap.answerability.enabled``) the answerability judge on those that pass LID."""
        parsed = [self.parse_query(candidate, jobs[i][0]) for i, candidate in items]
        todo = [n for n, (_, reason) in enumerate(parsed) if reason is None]
        verdicts = self.lid.check([parsed[n][0] for n in todo], [jobs[items[n][0]][2] for n in todo])
        verdict_of = dict(zip(todo, verdicts))
        outcomes = []
        for n, (query, reason) in enumerate(parsed):
            verdict = verdict_of.get(n)
            if verdict is not None and not verdict.keep:
                reason = verdict.reason
            outcomes.append(QueryOutcome(query, reason, verdict))
        if self.options.answerability.enabled:
            outcomes = self.judge_answerability(jobs, items, outcomes, usage)
        return outcomes

    def judge_answerability(
        self, jobs: Sequence[tuple[dict[str, Any], str, str]], items: list[tuple[int, Result]],
        outcomes: list[QueryOutcome], usage: Usage | None,
    ) -> list[QueryOutcome]:
        """Score the candidates that passed every other check (one engine call); a score below the threshold
        becomes ``unanswerable``, a failed call ``engine_error``; a candidate without a score is kept."""
        from synth.recipes.sap.answerability import judge_request, score_result

        todo = [n for n, outcome in enumerate(outcomes) if outcome.reason is None]
        if not todo:
            return outcomes
        requests = []
        for n in todo:
            record, _, lang = jobs[items[n][0]]
            # unique within the call (a candidate's position); the judge is greedy and unseeded, so ids change nothing
            request_id = f"{record['source_id']}/answerable/{lang}/{n}"
            requests.append(judge_request(request_id, record["text"], outcomes[n].query, lang))
        results = self.generate(requests, usage, "answerable")
        threshold = self.options.answerability.threshold
        outcomes = list(outcomes)
        for n, result in zip(todo, results):
            judgement = score_result(result)
            reason = None
            if not result.ok:
                reason = "engine_error"
            elif judgement.score is not None and judgement.score < threshold:
                reason = "unanswerable"
            outcomes[n] = outcomes[n]._replace(reason=reason, answerable_score=judgement.score)
        return outcomes

    def parse_query(self, result: Result, record: dict[str, Any]) -> tuple[str, str | None]:
        """The query text and its reject reason (``None`` when it passes the checks before LID)."""
        if not result.ok:
            return "", "engine_error"
        query = _first_line(result.text)
        if not query:
            return query, "empty"
        if len(query.split()) > self.options.max_query_words or (
            result.finish_reason == "length" and "\n" not in result.text
        ):
            return query, "too_long"
        if _normalize(query) and _normalize(query) in _normalize(record["text"]) and len(query) > 20:
            return query, "copy"
        exemplar_questions = {_normalize(e.question) for examples in self._exemplars().values() for e in examples}
        if _normalize(query) in exemplar_questions:
            return query, "exemplar_copy"
        return query, None

    def _row(
        self, record: dict[str, Any], lang: str, summary: str, query: str, reason: str | None, verdict=None,
        candidate_reasons: list[str | None] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": stable_id(record["source_id"], self.name, lang, self.options.mode),
            "source_id": record["source_id"],
            "passage_id": record["source_id"],
            "title": record["title"],
            "passage": record["text"],
            "passage_lang": record["lang"],
            "lang": lang,
            "mode": self.options.mode,
            "summary": summary,
            "query": query,
            "reject_reason": reason,
            "candidate_reasons": candidate_reasons,
            "answerable_score": None,  # set by process when sap.answerability scored the query
            "lid_lang": verdict.lang if verdict else None,
            "lid_score": verdict.score if verdict else None,
            "lid_agree": verdict.agree if verdict else None,
        }


class QueryOutcome(NamedTuple):
    """One candidate query after the checks: its text, reject reason (``None``: kept) and LID verdict, if run."""

    query: str
    reason: str | None
    verdict: Any = None
    answerable_score: float | None = None  # sap.answerability's score, when it ran


def _reason(outcome: QueryOutcome) -> str | None:
    return outcome.reason


def choose_query(outcomes: Sequence[QueryOutcome]) -> tuple[str, str | None, Any, list[str | None]]:
    """The row of a query from its candidates' outcomes (sample order): query, reason, verdict, candidate reasons.

    The first passing candidate is kept. When none passes, the row is candidate 0's (its text, its reason), unless
    a call for candidates failed: then it is ``engine_error``, so the unit is not done and a rerun asks again.
    """
    reasons = [outcome.reason for outcome in outcomes]
    chosen = first_passing(outcomes, _reason)
    if chosen is not None:
        kept = outcomes[chosen]
        return kept.query, None, kept.verdict, reasons
    first = outcomes[0]
    reason = "engine_error" if "engine_error" in reasons else first.reason
    return first.query, reason, first.verdict, reasons


def kept_outcome(outcomes: Sequence[QueryOutcome]) -> QueryOutcome:
    """The candidate whose query the row shows (as :func:`choose_query`): the first passing one, else candidate 0."""
    chosen = first_passing(outcomes, _reason)
    return outcomes[0 if chosen is None else chosen]


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip() if text else ""


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())
