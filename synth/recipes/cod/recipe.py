"""COD, outline-based dialogue (Majewska et al., 2023), with an LLM in the annotator's place.

COD built dialogues in Arabic, Indonesian, Russian and Swahili not by translating SGD but by having
native speakers write each turn from an *outline* of its dialogue acts, with slot values adapted to
their culture. This recipe does the same for any language with a CLDR locale:

1. **Outline** (:mod:`synth.sources.sgd`): every turn's acts, intents and slots become an English
   instruction from ``prompts/cod/outline.v1.yaml`` and the schema's descriptions.
2. **Values** (:mod:`synth.recipes.cod.localize`): each slot value gets one form per language — dates, times,
   prices and numbers through babel/CLDR, places through the EntityCS lexicon, other names through
   the LLM — consistent across the turns and the state of a dialogue.
3. **Turns**: the LLM writes each turn in the target language from its instruction and the turns
   generated so far (``prompts/cod/turn.v1.yaml``, one hand-written example dialogue per language). With
   ``engine.prompt_format: chat`` (``turn.chat.v1.yaml``, ``localize_value.chat.v1.yaml``) the example dialogue
   and the turns so far are user (instruction, speaker) / assistant (utterance) exchanges after a system
   instruction, through the model's chat template; the form is part of ``prompt_version`` and the fingerprint.
4. **Verification**: every localized value must appear in its turn (exact, then case-insensitive);
   spans are recomputed on the generated text; the utterance's language is checked. A failing turn first
   gets ``sampling.candidates - 1`` more candidates in one call (:func:`synth.recipes.base.generate_candidates`),
   each checked the same way, and keeps the first that passes; when none does, the turn is generated again,
   up to ``cod.max_attempts`` times in all (each with its candidates), with another seed and a temperature of
   at least :data:`RETRY_TEMPERATURE` (a repeat at temperature 0 would only reproduce the same text). A turn
   that passes nowhere keeps its best candidate (a usable one with the most values found; the latest of equals);
   its ``candidate_reasons`` lists every candidate's reason, attempt after attempt.

Turn by turn, not whole dialogues in one structured request: the default model (Gemma 3 270M) is a
small *base* model that continues a few-shot pattern one line at a time but cannot be trusted to fill
a long JSON document; one line per request also lets a single bad turn be regenerated alone instead of
the whole dialogue, and keeps every prompt a growing prefix of the next one, which vLLM's prefix cache
serves. Throughput comes from batching across dialogues: turn *t* of every dialogue × language of the
batch goes to the engine in one ``generate`` call, then turn *t + 1*.

Rows are one per dialogue × language, in SGD structure (turns → frames → actions/slots/state) so SGD
loaders read them (the ``state`` is a JSON string; :func:`synth.recipes.cod.recipe.to_sgd` turns a row back
into an SGD dialogue). System frames lose ``service_call``/``service_results``, which hold unlocalized
English values. A dialogue with any rejected turn is a rejected row that keeps every turn with its
own ``reject_reason``: ``slot_missing``, ``repeat`` (a copy of an earlier turn or of an example turn:
small models loop), ``lid_mismatch``, ``script_mismatch``, ``parse_error`` (cut off at
``cod.turn_max_tokens`` before a sentence ended, or a prompt label instead of a turn), ``empty``,
``engine_error``, and ``not_generated`` for the turns after an ``engine_error``, ``empty`` or
``parse_error`` turn (there is nothing to condition them on). The row's ``reject_reason`` is its first
rejected turn's, or the dialogue-level LID's reason.

Sampling: keep ``sampling.repetition_penalty`` at 1.0 for COD. vLLM applies the penalty to prompt
tokens too, so it pushes the model away from the very values it has to copy and from the example's
language: with Gemma 3 270M on 2 dialogues × ar/id/ru/sw (4 turns, 2 attempts), 1.3 found 7 % of the values
and drifted into English; 1.0 found 33 %.

LID: each utterance is checked with the values masked out (a kept English film title is not the
language's fault). fastText cannot tell languages apart on a few characters, so when fewer than
:data:`SHORT_UTTERANCE` characters remain ("Да.", "Asante!") only a script mismatch rejects the turn;
the dialogue-level check over all utterances joined catches a dialogue of short turns in the wrong
language.

Example::

    from synth.config_file import load_config
    from synth.recipes.cod.recipe import CodRecipe

    config = load_config("data/configs/cod.yaml", overrides={"cod.max_turns": 4})
    recipe = CodRecipe(config, engine, lid)          # engine: synth.llm, lid: synth.filters.lid.LanguageIdentifier
    recipe.validate()
    rows = recipe.process(list(recipe.read_records())[:2], usage)
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pyarrow as pa

from synth.recipes.cod.config import CodConfig
from synth.recipes.cod import views
from synth.errors import ConfigError
from synth.filters.lid import SHORT_CHARS, normalize_lang
from synth.llm.base import Request, Result, Usage
from synth.recipes.cod.localize import (
    ValueMap,
    cod_exemplars,
    language_name,
    locale_for,
    localize_dialogues,
    localize_template,
    surface_index,
)
from synth.prompts import PromptTemplate, load_template
from synth.recipes.base import LID_FIELDS, Recipe, first_passing, generate_candidates, stable_id
from synth.sources.sgd import (
    COUNT_SLOT,
    OutlineTemplates,
    Schemas,
    default_schema_path,
    dialogue_services,
    is_verbatim,
    load_schema,
    read_dialogues,
    render_outline,
    truncate,
    turn_values,
    value_pairs,
)

TURN_TEMPLATE = "cod/turn.v1.yaml"
OUTLINE_TEMPLATES = "cod/outline.v1.yaml"
# Retries sample at least this hot: at temperature 0 another seed gives the same text back.
RETRY_TEMPERATURE = 0.7
# Utterances shorter than this (values masked out) are too short for fastText; only their script is checked.
SHORT_UTTERANCE = SHORT_CHARS

# The end of a sentence (not the dot of "11.40"): where a cut-off completion may be trimmed.
SENTENCE_END = re.compile(r"[.!?…。？！؟](?=\s|$)")
# Turns that later turns cannot be conditioned on.
UNUSABLE = frozenset({"engine_error", "empty", "parse_error", "not_generated"})

SPAN_TYPE = pa.struct([("slot", pa.string()), ("start", pa.int32()), ("exclusive_end", pa.int32())])
ACTION_TYPE = pa.struct(
    [
        ("act", pa.string()),
        ("slot", pa.string()),
        ("values", pa.list_(pa.string())),
        ("canonical_values", pa.list_(pa.string())),
    ]
)
FRAME_TYPE = pa.struct(
    [
        ("service", pa.string()),
        ("actions", pa.list_(ACTION_TYPE)),
        ("slots", pa.list_(SPAN_TYPE)),
        ("state", pa.string()),  # SGD's state object as JSON (null on system turns), so its slot map survives Parquet
    ]
)
TURN_TYPE = pa.struct(
    [
        ("speaker", pa.string()),
        ("utterance", pa.string()),
        ("frames", pa.list_(FRAME_TYPE)),
        ("reject_reason", pa.string()),
        ("lid_lang", pa.string()),
        ("lid_score", pa.float32()),
        ("attempts", pa.int32()),
        # every candidate of every attempt, in order: its reject reason (null: it passed); null if not generated
        ("candidate_reasons", pa.list_(pa.string())),
        ("source_utterance", pa.string()),
    ]
)
# synth.recipes.cod.localize.LocalizedValue; ``fallback``: the engine failed, ``value`` is the English source standing in.
LOCALIZED_TYPE = pa.struct(
    [
        ("slot", pa.string()),
        ("source_value", pa.string()),
        ("value", pa.string()),
        ("method", pa.string()),
        ("fallback", pa.bool_()),
    ]
)


@dataclass
class TurnResult:
    """One generated turn after verification; ``spans`` maps (frame index, slot) to [start, end)."""

    utterance: str
    reason: str | None
    spans: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    found: int = 0
    required: int = 0
    lid_lang: str | None = None
    lid_score: float | None = None
    attempts: int = 0
    candidate_reasons: list[str | None] | None = None  # every candidate of every attempt, in order

    @property
    def usable(self) -> bool:
        """Whether later turns can follow this one: it has a real utterance, even if it lacks a value or
        reads as another language, but not a cut-off line or a prompt label."""
        return self.reason not in UNUSABLE

    def rank(self) -> tuple[bool, bool, int]:
        """Which of several attempts to keep: a passing one, else a usable one, else the most values found."""
        return self.reason is None, self.usable, self.found


@dataclass
class DialogueJob:
    """One dialogue in one language while its turns are being generated."""

    source_id: str
    dialogue: dict[str, Any]
    lang: str
    values: ValueMap
    outline: list[str]
    turns: list[TurnResult] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        """An unusable turn ends the dialogue: later turns would have nothing to follow."""
        return bool(self.turns) and not self.turns[-1].usable


def _turn_reason(outcome: TurnResult) -> str | None:
    return outcome.reason


def find_value(text: str, value: str) -> tuple[int, int] | None:
    """Where ``value`` occurs in ``text``: exact match first, then case-insensitive (spans index ``text``).

    A value that begins or ends with a digit must not be part of a longer number: "8" is not found in "89", "18"
    or "8,7" (the model writes such numbers, and a span inside one would mark a value the text does not state).
    Letters get no such boundary: an inflected place name ("Montarassa") still contains its value.
    """
    for flags in (0, re.IGNORECASE):
        for match in re.finditer(re.escape(value), text, flags):
            if not _splits_a_number(text, match.start(), match.end()):
                return match.start(), match.end()
    return None


def _splits_a_number(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` continues a number on either side (a digit, or a decimal or thousands separator
    followed by a digit)."""
    def digit(at: int) -> bool:
        return 0 <= at < len(text) and text[at].isdigit()

    before = text[start].isdigit() and (digit(start - 1) or (start >= 2 and text[start - 1] in ".,٫" and digit(start - 2)))
    after = text[end - 1].isdigit() and (digit(end) or (end + 1 < len(text) and text[end] in ".,٫" and digit(end + 1)))
    return before or after


def masked(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the value spans, whitespace collapsed: what LID should judge."""
    keep, at = [], 0
    for start, end in sorted(spans):
        keep.append(text[at:start])
        at = max(at, end)
    keep.append(text[at:])
    return " ".join("".join(keep).split())


def example_turns(lang: str) -> list[dict[str, str]]:
    """The hand-written example turns for ``lang`` (its base language's, else the English default)."""
    examples = cod_exemplars()["turns"]
    return examples.get(lang) or examples.get(lang.split("-")[0]) or examples["default"]


def _normalized(text: str) -> str:
    """Lower-case letters and digits only, to compare utterances regardless of quotes and punctuation."""
    return "".join(char for char in text.casefold() if char.isalnum())


def lid_reason(verdict: Any, text: str) -> str | None:
    """The reject reason of a LID verdict on ``text``: short texts fail only on their script, and a text
    that is all values (no letters left once they are masked: "11:40, 273 $") has nothing to judge."""
    if verdict.keep or verdict.reason == "empty":
        return None
    reason = verdict.reason or "lid_mismatch"
    return reason if len(text) >= SHORT_UTTERANCE or reason == "script_mismatch" else None


def to_sgd(row: Mapping[str, Any]) -> dict[str, Any]:
    """A COD row as an SGD dialogue (``dialogue_id``, ``services``, ``turns`` with dict states)."""
    turns = []
    for turn in row["turns"]:
        frames = []
        for frame in turn["frames"]:
            sgd_frame = {key: frame[key] for key in ("service", "actions", "slots")}
            if frame.get("state"):
                sgd_frame["state"] = json.loads(frame["state"])
            frames.append(sgd_frame)
        turns.append({"speaker": turn["speaker"], "utterance": turn["utterance"], "frames": frames})
    return {"dialogue_id": row["dialogue_id"], "services": list(row["services"]), "turns": turns}


class CodRecipe(Recipe):
    """Outline-based dialogue generation. See the module docstring for the method, rows and reject reasons."""

    name = "cod"
    config_model = CodConfig
    id_field = "dialogue_id"
    card = views.CARD
    view = views.VIEW
    show = staticmethod(views.show)
    # A row is a whole dialogue: its utterances, joined, are compared with other dialogues' of the language, so a
    # dialogue that mostly repeats an earlier one is the duplicate; a shared "Thank you." turn is not enough.
    dedup_columns = ("turns.utterance",)
    config: CodConfig

    SCHEMA = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("source_id", pa.string()),
            pa.field("dialogue_id", pa.string()),
            pa.field("lang", pa.string()),
            pa.field("services", pa.list_(pa.string())),
            pa.field("turns", pa.list_(TURN_TYPE)),
            pa.field("outline", pa.list_(pa.string())),
            pa.field("localized_values", pa.list_(LOCALIZED_TYPE)),
            pa.field("turns_kept", pa.int32()),
            pa.field("turns_total", pa.int32()),
            pa.field("slot_found_rate", pa.float32()),
            pa.field("reject_reason", pa.string()),
            *LID_FIELDS,
        ]
    )

    # -- configuration ------------------------------------------------------------------------------------------

    @property
    def turn_template(self) -> PromptTemplate:
        """The turn template in the run's prompt form (``turn.v1.yaml`` or ``turn.chat.v1.yaml``)."""
        return load_template(TURN_TEMPLATE, form=self.prompt_format)

    @property
    def outline_templates(self) -> OutlineTemplates:
        return OutlineTemplates.load(OUTLINE_TEMPLATES)

    @property
    def prompt_version(self) -> str:
        templates = (self.outline_templates, self.turn_template, localize_template(self.prompt_format))
        return "+".join(t.tag for t in templates)

    def resources(self) -> list[Path]:
        from synth.recipes.entitycs.lexicon import DEFAULT_LEXICON

        return super().resources() + [self.schema_path, DEFAULT_LEXICON]

    @property
    def schema_path(self) -> Path:
        if self.config.cod.schema_path:
            return Path(self.config.cod.schema_path)
        return default_schema_path(self.config.input.path or ".")

    @cached_property
    def schemas(self) -> Schemas:
        return load_schema(self.schema_path)

    def validate(self) -> None:
        if self.config.input.path is None:
            raise ConfigError(
                "COD reads SGD dialogue files; set input.path (input.hf is not supported)", field="input.path"
            )
        for lang in self.config.languages:
            locale_for(lang)
            normalize_lang(lang)  # LID must know the language too, or every turn would be rejected
        if not self.schema_path.is_file():
            raise ConfigError(f"SGD schema not found: {self.schema_path}; set cod.schema_path", field="cod.schema_path")
        # Load every template now so a broken prompt file fails before any generation.
        _ = self.prompt_version, cod_exemplars()

    def schema(self) -> pa.Schema:
        return self.SCHEMA

    def read_records(self) -> Iterator[dict[str, Any]]:
        """One record per SGD dialogue: ``{"source_id": dialogue_id, "dialogue": <truncated to cod.max_turns>}``."""
        for dialogue in read_dialogues(self.config.input.path, self.schemas, schema_file=str(self.schema_path)):
            yield {"source_id": dialogue["dialogue_id"], "dialogue": truncate(dialogue, self.config.cod.max_turns)}

    # -- prompts ----------------------------------------------------------------------------------------------

    def _label(self, speaker: str) -> str:
        return cod_exemplars()["speaker_labels"][speaker]

    def turn_prompt(self, job: DialogueJob, t: int) -> str:
        """Completion form: example dialogue of the language, the turns generated so far, then turn ``t``'s
        instruction and label."""
        template = load_template(TURN_TEMPLATE)
        turns = job.dialogue["turns"]
        prefix = template.render_prefix(
            (
                {"instruction": e["instruction"], "speaker": self._label(e["speaker"]), "utterance": e["utterance"]}
                for e in example_turns(job.lang)
            ),
            language=language_name(job.lang),
        )
        history = "".join(
            template.exemplar.format(
                instruction=job.outline[i], speaker=self._label(turns[i]["speaker"]), utterance=job.turns[i].utterance
            )
            + template.separator
            for i in range(t)
        )
        return prefix + template.render_request(
            history=history, instruction=job.outline[t], speaker=self._label(turns[t]["speaker"])
        )

    def turn_messages(self, job: DialogueJob, t: int) -> tuple[dict[str, str], ...]:
        """Chat form: system turn, the example dialogue as user (instruction, speaker) / assistant (utterance) turns,
        the turns generated so far in the same shape, then turn ``t``'s instruction as the last user turn."""
        template = load_template(TURN_TEMPLATE, form="chat")
        turns = job.dialogue["turns"]
        language = language_name(job.lang)
        messages = list(
            template.render_chat_prefix(
                (
                    {"instruction": e["instruction"], "speaker": self._label(e["speaker"]), "utterance": e["utterance"]}
                    for e in example_turns(job.lang)
                ),
                language=language,
            )
        )
        for i in range(t):
            done = {
                "instruction": job.outline[i],
                "speaker": self._label(turns[i]["speaker"]),
                "utterance": job.turns[i].utterance,
            }
            messages += template.render_turns(done, opening=i == 0, language=language)
        speaker = self._label(turns[t]["speaker"])
        request = {"instruction": job.outline[t], "speaker": speaker, "language": language}
        messages.append(template.render_user(opening=t == 0, **request))
        return tuple(messages)

    def turn_request(self, job: DialogueJob, t: int, attempt: int) -> Request:
        request_id = f"{job.dialogue['dialogue_id']}/{job.lang}/turn{t}/try{attempt}"
        temperature = self.config.sampling.temperature
        if attempt > 1:
            temperature = max(temperature, RETRY_TEMPERATURE)
        sampling = self.sampling(request_id, self.config.cod.turn_max_tokens, temperature=temperature)
        if self.prompt_format == "chat":
            return Request(id=request_id, messages=self.turn_messages(job, t), sampling=sampling)
        return Request(id=request_id, prompt=self.turn_prompt(job, t), sampling=sampling)

    # -- verification -----------------------------------------------------------------------------------------

    def parse_turn(self, result: Result) -> tuple[str, str | None]:
        """The utterance of one completion and its reject reason before the value and LID checks.

        A completion cut off at ``cod.turn_max_tokens`` keeps its complete sentences (small models run on
        past the turn); with none it is a ``parse_error``, as is a line that starts with a prompt label.
        """
        if not result.ok:
            return "", "engine_error"
        text = result.text.strip().split("\n", 1)[0].strip()
        if result.finish_reason == "length" and "\n" not in result.text:
            ends = [match.end() for match in SENTENCE_END.finditer(text)]
            if not ends:
                return text, "parse_error"
            text = text[: ends[-1]]
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1].strip()
        if not text:
            return "", "empty"
        labels = "|".join(
            re.escape(label) for label in (*cod_exemplars()["speaker_labels"].values(), "Instruction", "Dialogue")
        )
        if re.match(rf"^({labels})\b[^:]{{0,12}}:", text):
            return text, "parse_error"
        return text, None

    def check_turn(self, job: DialogueJob, t: int, result: Result) -> TurnResult:
        """Parse a completion and find every localized value of turn ``t`` in it (LID comes after, batched)."""
        text, reason = self.parse_turn(result)
        wanted = turn_values(job.dialogue["turns"][t], self.schemas)
        outcome = TurnResult(text, reason, required=len(wanted))
        for value in wanted:
            span = find_value(text, job.values[value.canonical].value) if text else None
            if span is not None:
                outcome.spans[(value.frame, value.slot)] = span
                outcome.found += 1
        if outcome.reason is None and outcome.found < outcome.required:
            outcome.reason = "slot_missing"
        if outcome.reason is None and _normalized(text) in self._seen_utterances(job):
            outcome.reason = "repeat"
        return outcome

    def _seen_utterances(self, job: DialogueJob) -> set[str]:
        """Utterances a new turn must not copy: the dialogue's earlier turns and the prompt's example turns."""
        shown = {_normalized(e["utterance"]) for e in example_turns(job.lang)}
        return {_normalized(turn.utterance) for turn in job.turns} | shown

    def apply_lid(self, outcomes: Sequence[TurnResult], langs: Sequence[str]) -> None:
        """Record each utterance's language and reject the ones in the wrong language (see module docstring)."""
        todo = [
            (o, lang, masked(o.utterance, list(o.spans.values()))) for o, lang in zip(outcomes, langs) if o.utterance
        ]
        todo = [item for item in todo if item[2]]
        if not todo:
            return
        verdicts = self.lid.check([text for _, _, text in todo], [lang for _, lang, _ in todo])
        for (outcome, _, text), verdict in zip(todo, verdicts):
            outcome.lid_lang, outcome.lid_score = verdict.lang, verdict.score
            if outcome.reason is None:
                outcome.reason = lid_reason(verdict, text)

    # -- generation -------------------------------------------------------------------------------------------

    def generate_turns(self, jobs: Sequence[DialogueJob], usage: Usage) -> None:
        """Fill ``job.turns`` for every job: turn t of all jobs in one engine call, failures retried together."""
        depth = max((len(job.dialogue["turns"]) for job in jobs), default=0)
        for t in range(depth):
            # By language, so requests sharing a few-shot prefix are scheduled together (vLLM prefix cache).
            active = sorted(
                (job for job in jobs if t < len(job.dialogue["turns"]) and not job.stopped), key=lambda job: job.lang
            )
            best: dict[int, TurnResult] = {}
            tries: dict[int, int] = {}
            reasons: dict[int, list[str | None]] = {id(job): [] for job in active}
            pending = active
            for attempt in range(1, self.config.cod.max_attempts + 1):
                if not pending:
                    break
                candidates = generate_candidates(
                    self.engine,
                    [self.turn_request(job, t, attempt) for job in pending],
                    lambda items, jobs=pending: self.check_turns(jobs, t, items),
                    _turn_reason,
                    self.config.sampling,
                    usage,
                    "turn",
                )
                for job, outcomes in zip(pending, candidates):
                    tries[id(job)] = attempt
                    reasons[id(job)] += [outcome.reason for outcome in outcomes]
                    chosen = first_passing(outcomes, _turn_reason)
                    for outcome in outcomes if chosen is None else [outcomes[chosen]]:
                        previous = best.get(id(job))
                        if previous is None or outcome.rank() >= previous.rank():
                            best[id(job)] = outcome
                pending = [job for job in pending if best[id(job)].reason is not None]
            for job in active:
                best[id(job)].attempts = tries[id(job)]
                best[id(job)].candidate_reasons = reasons[id(job)]
                job.turns.append(best[id(job)])

    def check_turns(self, jobs: Sequence[DialogueJob], t: int, items: list[tuple[int, Result]]) -> list[TurnResult]:
        """Every check of turn ``t`` on each candidate: ``items`` are (index into ``jobs``, candidate). Values and
        repeats per candidate (:meth:`check_turn`), then LID over all of them at once (:meth:`apply_lid`)."""
        outcomes = [self.check_turn(jobs[i], t, candidate) for i, candidate in items]
        self.apply_lid(outcomes, [jobs[i].lang for i, _ in items])
        return outcomes

    def process(self, records: list[dict[str, Any]], usage: Usage) -> list[dict[str, Any]]:
        dialogues = [record["dialogue"] for record in records]
        langs = list(self.config.languages)
        maps = localize_dialogues(
            dialogues, langs, self.schemas, self.engine, self.config.sampling, usage, self.prompt_format
        )
        jobs = []
        for record in records:
            dialogue = record["dialogue"]
            for lang in langs:
                values = maps[(dialogue["dialogue_id"], lang)]
                localized = {canonical: value.value for canonical, value in values.items()}
                outline = render_outline(dialogue, self.schemas, self.outline_templates, localized)
                jobs.append(DialogueJob(str(record["source_id"]), dialogue, lang, values, outline))
        self.generate_turns(jobs, usage)
        return [self._row(job, verdict) for job, verdict in zip(jobs, self._dialogue_lid(jobs))]

    def _dialogue_lid(self, jobs: Sequence[DialogueJob]) -> list[tuple[Any, str]]:
        """Per job, the LID verdict over all its utterances (values masked) and that text; ``None`` without text."""
        texts = [
            " ".join(masked(turn.utterance, list(turn.spans.values())) for turn in job.turns).strip() for job in jobs
        ]
        todo = [i for i, text in enumerate(texts) if text]
        verdicts: list[Any] = [None] * len(jobs)
        if todo:
            for i, verdict in zip(todo, self.lid.check([texts[i] for i in todo], [jobs[i].lang for i in todo])):
                verdicts[i] = verdict
        return list(zip(verdicts, texts))

    # -- rows -------------------------------------------------------------------------------------------------

    def _row(self, job: DialogueJob, lid: tuple[Any, str]) -> dict[str, Any]:
        dialogue = job.dialogue
        index = surface_index(dialogue)
        results = job.turns + [TurnResult("", "not_generated") for _ in dialogue["turns"][len(job.turns) :]]
        turns = [
            {
                "speaker": source["speaker"],
                "utterance": result.utterance,
                "frames": [
                    self._frame(frame, f, result, job.values, index) for f, frame in enumerate(source["frames"])
                ],
                "reject_reason": result.reason,
                "lid_lang": result.lid_lang,
                "lid_score": result.lid_score,
                "attempts": result.attempts,
                "candidate_reasons": result.candidate_reasons,
                "source_utterance": source["utterance"],
            }
            for source, result in zip(dialogue["turns"], results)
        ]
        required = sum(result.required for result in job.turns) + sum(
            len(turn_values(turn, self.schemas)) for turn in dialogue["turns"][len(job.turns) :]
        )
        verdict, text = lid
        reason = next((result.reason for result in results if result.reason), None)
        if reason is None and verdict is not None:
            reason = lid_reason(verdict, text)
        return {
            "id": stable_id(job.source_id, self.name, job.lang, len(dialogue["turns"])),
            "source_id": job.source_id,
            "dialogue_id": dialogue["dialogue_id"],
            "lang": job.lang,
            "services": dialogue_services(dialogue),
            "turns": turns,
            "outline": job.outline,
            "localized_values": [asdict(value) for value in job.values.values()],
            "turns_kept": sum(1 for result in results if result.reason is None),
            "turns_total": len(results),
            "slot_found_rate": sum(result.found for result in job.turns) / required if required else 1.0,
            "reject_reason": reason,
            "lid_lang": verdict.lang if verdict is not None else None,
            "lid_score": verdict.score if verdict is not None else None,
            "lid_agree": verdict.agree if verdict is not None else None,
        }

    def _frame(
        self, frame: Mapping[str, Any], f: int, result: TurnResult, values: ValueMap, index: Mapping[str, str]
    ) -> dict[str, Any]:
        """The source frame with localized values, spans on the generated text and a localized state."""
        schema = self.schemas[frame["service"]]
        actions = []
        for action in frame["actions"]:
            slot = action.get("slot", "")
            new_values, new_canonical = [], []
            for surface, canonical in value_pairs(action):
                localized = (
                    values.get(canonical) if is_verbatim(schema, slot, canonical) or slot == COUNT_SLOT else None
                )
                if localized is None:
                    new_values.append(surface)
                    new_canonical.append(canonical)
                else:
                    new_values.append(localized.value)
                    new_canonical.append(canonical if localized.keeps_canonical else localized.value)
            actions.append(
                {"act": action["act"], "slot": slot, "values": new_values, "canonical_values": new_canonical}
            )
        spans = sorted(
            (
                {"slot": slot, "start": start, "exclusive_end": end}
                for (ff, slot), (start, end) in result.spans.items()
                if ff == f
            ),
            key=lambda span: (span["start"], span["slot"]),
        )
        state = frame.get("state")
        if state is not None:
            slot_values = {}
            for slot, surfaces in state.get("slot_values", {}).items():
                forms = []
                for surface in surfaces:
                    canonical = index.get(surface, surface)
                    localized = values.get(canonical) if is_verbatim(schema, slot, canonical) else None
                    forms.append(localized.value if localized else surface)
                slot_values[slot] = list(dict.fromkeys(forms))
            state = json.dumps({**state, "slot_values": slot_values}, ensure_ascii=False)
        return {"service": frame["service"], "actions": actions, "slots": spans, "state": state}
