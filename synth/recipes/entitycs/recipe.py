"""EntityCS, entity-centric code-switching (Whitehouse et al., 2022): English Wikipedia sentences whose
linked entities are replaced by their names in other languages.

Policy, as in the paper's released code:

1. Each link of a sentence is resolved to a lexicon entity by its title (redirects and aliases included).
   Links the lexicon does not know stay English and do not restrict the languages.
2. The candidate languages of a sentence are the configured ``languages`` that have a label for **every**
   resolved entity. A lexicon label that fails the script check of its language (a Latin label for
   ``hi``) counts as missing. With ``llm_label_fallback`` every configured language is a candidate and
   the missing labels are asked from the LLM.
3. Up to ``languages_per_sentence`` candidates are sampled with an RNG seeded by ``sampling.seed`` and the
   sentence id, so the choice is the same whatever batch the sentence lands in.
4. One row per chosen language, every resolved entity switched, wrapped in markers: ``lang``
   (``<de>Japan</de>``), ``entity`` (``<e>Japan</e>``) or ``none``. ``entities[i].start/end`` index
   ``cs_sentence`` so that ``cs_sentence[start:end] == label`` (inside the markers).

Nothing is dropped: a sentence without any lexicon entity is rejected as ``no_lexicon_entity``, one whose
entities share no language as ``no_candidate_language`` (both with lang ``und``); a language whose LLM
label failed is rejected as ``llm_label_<engine_error|empty|too_long|script_mismatch|lid_mismatch>``.

LID: switched names are checked where that means something. Lexicon labels get the script check (step 2);
a kept row records fastText's verdict on its labels joined (``lid_*``) when they are at least
``synth.filters.lid.SHORT_CHARS`` long and the language is checkable, else the ``lid_*`` fields are null: a
short Latin-script name says nothing about its language. LLM labels must pass the script check and, from
that length on, LID too.

Optional LLM passes (both off by default, then no engine is created): ``llm_label_fallback`` (prompt
``prompts/entitycs/label_fallback.v1.yaml``, few-shot from the lexicon's own labels) and
``llm_inflection_repair`` (``inflection_repair.v1.yaml``): when the linked English words differ from the
entity's English names ("Italians" → Italy), the LLM puts the label in their form; the lexicon label is
kept as ``original_label``, and a suggestion that fails the checks or repeats an exemplar's answer is
dropped (the label stays). Both have a chat form (``engine.prompt_format: chat``; ``*.chat.v1.yaml``): the same
exemplars as user/assistant turns after a system instruction; the template tags in ``prompt_version`` name the form.

Example::

    from synth.recipes.entitycs.config import EntityCSConfig
    from synth.recipes.entitycs.recipe import EntityCSRecipe
    from synth.llm.base import Usage

    config = EntityCSConfig(input={"path": "data/samples/wiki_sentences.jsonl"}, languages=["de", "hi", "ja"])
    recipe = EntityCSRecipe(config, engine=None, lid=None)
    recipe.validate()
    rows = recipe.process(list(recipe.read_records())[:16], Usage())
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from synth.recipes.entitycs.config import EntityCSConfig
from synth.recipes.entitycs import views
from synth.errors import ConfigError, InputError
from synth.sources.records import check_fields, input_name, read_numbered_records
from synth.recipes.entitycs.lexicon import Entity, Lexicon, load_lexicon
from synth.filters.lid import SHORT_CHARS, LanguageIdentifier, check_script, is_checkable
from synth.llm.base import Engine, Request, Sampling, Usage, request_seed
from synth.paths import PROMPTS_DIR
from synth.prompts import PromptTemplate, load_template
from synth.recipes.base import LID_FIELDS, Recipe, stable_id
from synth.sources.wikipedia import iter_linked_sentences

PROMPT_VERSION = "entitycs/v1"
FALLBACK_TEMPLATE = "entitycs/label_fallback.v1.yaml"
REPAIR_TEMPLATE = "entitycs/inflection_repair.v1.yaml"
REPAIR_EXEMPLARS = PROMPTS_DIR / "entitycs" / "inflection_exemplars.v1.yaml"
FALLBACK_SHOTS = 8
# A name is a few tokens; longer answers are the model rambling on.
LABEL_MAX_TOKENS = 24
MAX_LLM_LABEL_CHARS = 80
UNDETERMINED = "und"
DUMP_SUFFIXES = (".xml", ".xml.bz2", ".xml.gz")
TABLE_SUFFIXES = (".jsonl", ".ndjson", ".parquet")
# Fields of a linked-sentence record (the output of synth.sources.wikipedia.iter_linked_sentences).
REQUIRED = {"sentence_id": str, "text": str, "entities": list}
# Fields of each of its ``entities`` (a link: the linked page's title and where the linked words are in ``text``).
MENTION_FIELDS = {"title": str, "mention": str, "start": int, "end": int}

ENTITY_TYPE = pa.struct(
    [
        ("entity_id", pa.string()),
        ("mention", pa.string()),
        ("label", pa.string()),
        ("label_source", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("original_label", pa.string()),
    ]
)
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("source_id", pa.string()),
        pa.field("sentence_id", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("en_sentence", pa.string()),
        pa.field("cs_sentence", pa.string()),
        pa.field("entities", pa.list_(ENTITY_TYPE)),
        pa.field("reject_reason", pa.string()),
        *LID_FIELDS,
    ]
)


@cache
def language_name(lang: str) -> str:
    """English name of a language for prompts (CLDR via babel), the code itself when babel has none."""
    from babel import Locale

    return Locale("en").languages.get(lang.replace("-", "_"), lang)


def _dump_input(path: str) -> bool:
    return path.lower().endswith(DUMP_SUFFIXES)


def _check_entities(record: dict[str, Any], file: str, row: int) -> None:
    """Each mention must be an object whose span slices its mention out of ``text``."""
    text = record["text"]
    for index, mention in enumerate(record["entities"]):
        where = f"entities[{index}]"
        check_fields(mention, MENTION_FIELDS, file=file, row=row, prefix=f"{where}.")
        if text[mention["start"] : mention["end"]] != mention["mention"]:
            raise InputError(
                f"text[{mention['start']}:{mention['end']}] is not the mention {mention['mention']!r}",
                file=file,
                row=row,
                field=f"{where}.start",
            )


@dataclass
class _Switch:
    """One entity of one output row: where it is in the English sentence and what replaces it."""

    mention: dict[str, Any]
    entity: Entity
    label: str | None = None
    label_source: str | None = None
    original_label: str | None = None


@dataclass
class _Row:
    record: dict[str, Any]
    lang: str
    switches: list[_Switch]
    reject_reason: str | None = None
    lid: tuple[str | None, float | None, bool | None] = (None, None, None)


@dataclass
class _LlmAnswer:
    label: str | None
    reason: str | None = None


class EntityCSRecipe(Recipe):
    """Code-switched sentences from entity-linked English sentences (see the module docstring)."""

    name = "entitycs"
    config_model = EntityCSConfig
    id_field = "sentence_id"
    card = views.CARD
    view = views.VIEW
    show = staticmethod(views.show)
    # The code-switched sentence: what is trained on, and per language what differs (en_sentence is the input,
    # the same in every language of a sentence).
    dedup_columns = ("cs_sentence",)

    def __init__(self, config: EntityCSConfig, engine: Engine | None, lid: LanguageIdentifier | None):
        super().__init__(config, engine, lid)
        self.config: EntityCSConfig = config
        self.options = config.entitycs
        # LLM labels are cached per process: the same (entity, language) recurs across batches. Only answers
        # are cached (a label, or a refusal of its content); an engine error is retried by the next batch.
        self._llm_labels: dict[tuple[str, str], _LlmAnswer] = {}

    def resources(self) -> list[Path]:
        from synth.recipes.entitycs.lexicon import DEFAULT_LEXICON

        return super().resources() + [Path(self.options.lexicon) if self.options.lexicon else DEFAULT_LEXICON]

    @classmethod
    def needs_engine(cls, config: EntityCSConfig) -> bool:
        """Only the LLM label fallback and inflection repair call the model; plain switching needs no engine."""
        return config.entitycs.llm_label_fallback or config.entitycs.llm_inflection_repair

    @property
    def prompt_version(self) -> str:
        parts = [PROMPT_VERSION]
        if self.options.llm_label_fallback:
            parts.append(self._fallback_template.tag)
        if self.options.llm_inflection_repair:
            parts.append(self._repair_template.tag)
        return "+".join(parts)

    @cached_property
    def lexicon(self) -> Lexicon:
        """The configured lexicon (the shipped CLDR one by default), holding labels of ``languages`` only."""
        return load_lexicon(self.options.lexicon, languages=self.config.languages)

    @cached_property
    def _fallback_template(self) -> PromptTemplate:
        return load_template(FALLBACK_TEMPLATE, form=self.prompt_format)

    @cached_property
    def _repair_template(self) -> PromptTemplate:
        return load_template(REPAIR_TEMPLATE, form=self.prompt_format)

    # --- contract ------------------------------------------------------------------------------

    def validate(self) -> None:
        if "en" in self.config.languages:
            raise ConfigError("'en' is the language of the input sentences, not a switch target", field="languages")
        path = self.config.input.path
        if path is not None and not path.lower().endswith(DUMP_SUFFIXES + TABLE_SUFFIXES):
            raise ConfigError(
                "EntityCS reads linked sentences (.jsonl, .parquet) or a MediaWiki dump (.xml, .xml.bz2, .xml.gz)",
                field="input.path",
            )
        available = self.lexicon.available_languages
        missing = [lang for lang in self.config.languages if lang not in available]
        if missing:
            raise ConfigError(
                f"the lexicon has no labels in {', '.join(missing)}; it has: {', '.join(sorted(available))}",
                field="languages",
            )
        # Load the prompts now: a missing or broken template is a config error, not a failed batch.
        if self.options.llm_label_fallback:
            load_template(FALLBACK_TEMPLATE, form=self.prompt_format)
        if self.options.llm_inflection_repair:
            load_template(REPAIR_TEMPLATE, form=self.prompt_format)
            repair_exemplars()

    def schema(self) -> pa.Schema:
        return SCHEMA

    def read_records(self) -> Iterator[dict[str, Any]]:
        """Linked sentences from JSONL/Parquet/HF (``iter_linked_sentences`` format) or straight from a dump."""
        spec = self.config.input
        if spec.path is not None and _dump_input(spec.path):
            for sentence in iter_linked_sentences(spec.path, max_words=self.options.max_words):
                yield {**sentence, "source_id": sentence["sentence_id"]}
            return
        source = input_name(spec)
        for row, record in read_numbered_records(spec, REQUIRED):
            _check_entities(record, source, row)
            yield {**record, "source_id": record["sentence_id"]}

    def process(self, records: list[dict[str, Any]], usage: Usage) -> list[dict[str, Any]]:
        rows: list[_Row] = []
        for record in records:
            rows.extend(self._plan(record))
        if self.options.llm_label_fallback:
            self._fill_llm_labels(rows, usage)
        if self.options.llm_inflection_repair:
            self._repair_inflections(rows, usage)
        self._identify(rows)
        return [self._output(row) for row in rows]

    # --- switching -----------------------------------------------------------------------------

    def _lexicon_label(self, entity: Entity, lang: str) -> tuple[str, str] | None:
        """The lexicon's label, unless it fails the language's script check (it then counts as missing)."""
        found = self.lexicon.labels(entity).get(lang)
        if found is None or (self.config.lid.script_check and not check_script(found[0], lang)):
            return None
        return found

    def _plan(self, record: dict[str, Any]) -> list[_Row]:
        """Resolve entities and choose languages; labels come from the lexicon (or are left for the LLM)."""
        mentions: list[dict[str, Any]] = []
        for mention in sorted(record["entities"], key=lambda m: (m["start"], m["end"])):
            if not mentions or mention["start"] >= mentions[-1]["end"]:  # overlapping links: keep the first
                mentions.append(mention)
        resolved = [(m, self.lexicon.lookup(m["title"])) for m in mentions]
        known = [(m, entity) for m, entity in resolved if entity is not None]
        if not known:
            return [_Row(record, UNDETERMINED, [], "no_lexicon_entity")]
        languages = self.config.languages
        if not self.options.llm_label_fallback:
            languages = [lang for lang in languages if all(self._lexicon_label(entity, lang) for _, entity in known)]
        if not languages:
            return [_Row(record, UNDETERMINED, [], "no_candidate_language")]
        rng = random.Random(request_seed(self.config.sampling.seed, f"entitycs:{record['sentence_id']}"))
        chosen = set(rng.sample(languages, min(self.options.languages_per_sentence, len(languages))))
        rows = []
        for lang in (lang for lang in languages if lang in chosen):  # config order, for readable output
            switches = []
            for mention, entity in known:
                found = self._lexicon_label(entity, lang)
                switches.append(_Switch(mention, entity, *(found or (None, None))))
            rows.append(_Row(record, lang, switches))
        return rows

    def _markers(self, lang: str) -> tuple[str, str]:
        if self.options.markers == "lang":
            return f"<{lang}>", f"</{lang}>"
        if self.options.markers == "entity":
            return "<e>", "</e>"
        return "", ""

    def _output(self, row: _Row) -> dict[str, Any]:
        record = row.record
        text = record["text"]
        out: dict[str, Any] = {
            "id": stable_id(record["sentence_id"], self.name, row.lang, self.options.markers),
            "source_id": str(record["source_id"]),
            "sentence_id": record["sentence_id"],
            "lang": row.lang,
            "en_sentence": text,
            "cs_sentence": None,
            "entities": [],
            "reject_reason": row.reject_reason,
            "lid_lang": row.lid[0],
            "lid_score": row.lid[1],
            "lid_agree": row.lid[2],
        }
        if row.reject_reason:
            return out
        opening, closing = self._markers(row.lang)
        pieces: list[str] = []
        length = cursor = 0
        for switch in row.switches:
            before = text[cursor : switch.mention["start"]] + opening
            pieces += [before, switch.label, closing]
            start = length + len(before)
            end = start + len(switch.label)
            length = end + len(closing)
            cursor = switch.mention["end"]
            out["entities"].append(
                {
                    "entity_id": switch.entity.entity_id,
                    "mention": switch.mention["mention"],
                    "label": switch.label,
                    "label_source": switch.label_source,
                    "start": start,
                    "end": end,
                    "original_label": switch.original_label,
                }
            )
        pieces.append(text[cursor:])
        out["cs_sentence"] = "".join(pieces)
        return out

    # --- LID -----------------------------------------------------------------------------------

    def _llm_text_reason(self, text: str, lang: str) -> str | None:
        """Why an LLM-written name is refused for ``lang`` (None: accepted)."""
        if not text:
            return "empty"
        if len(text) > MAX_LLM_LABEL_CHARS:
            return "too_long"
        if self.config.lid.script_check and not check_script(text, lang):
            return "script_mismatch"
        if self.lid is not None and len(text) >= SHORT_CHARS and is_checkable(lang):
            verdict = self.lid.check([text], [lang])[0]
            if not verdict.keep:
                return verdict.reason or "lid_mismatch"
        return None

    def _identify(self, rows: list[_Row]) -> None:
        """Record LID of each kept row's labels, joined, where they are long enough to mean something."""
        if self.lid is None:
            return
        todo = []
        for row in rows:
            if row.reject_reason is None and is_checkable(row.lang):
                joined = " ".join(switch.label for switch in row.switches)
                if len(joined) >= SHORT_CHARS:
                    todo.append((row, joined))
        if todo:
            verdicts = self.lid.check([joined for _, joined in todo], [row.lang for row, _ in todo])
            for (row, _), verdict in zip(todo, verdicts):
                row.lid = (verdict.lang, verdict.score, verdict.agree)

    # --- LLM passes ----------------------------------------------------------------------------

    def _sampling(self, request_id: str) -> Sampling:
        """A label's sampling: the run's, with at most :data:`LABEL_MAX_TOKENS` (a name is a few tokens)."""
        return self.sampling(request_id, min(self.config.sampling.max_tokens, LABEL_MAX_TOKENS))

    def fallback_body(self, entity: Entity, lang: str) -> dict[str, Any]:
        """The few-shot prompt asking for ``entity``'s name in ``lang`` (prefix shared per language), in the run's
        prompt form: ``{"prompt": text}`` or ``{"messages": turns}`` (:meth:`synth.prompts.PromptTemplate.render`)."""
        examples = [
            {"english": english, "label": label} for english, label in self.lexicon.examples(lang, FALLBACK_SHOTS)
        ]
        return self._fallback_template.render(examples, {"english": entity.en_title}, language=language_name(lang))

    def _fill_llm_labels(self, rows: list[_Row], usage: Usage) -> None:
        """Ask the LLM for labels the lexicon lacks; a row whose label is refused or failed is rejected.

        Labels and content refusals are cached for the process; an ``engine_error`` holds for this batch only.
        """
        failed: dict[tuple[str, str], _LlmAnswer] = {}  # engine errors of this batch: never cached
        pending: dict[str, tuple[str, str, Request]] = {}
        for row in rows:
            for switch in row.switches:
                key = (switch.entity.entity_id, row.lang)
                if switch.label is None and key not in self._llm_labels:
                    request_id = f"entitycs:label:{key[0]}:{key[1]}"
                    if request_id not in pending:
                        request = Request(
                            id=request_id,
                            sampling=self._sampling(request_id),
                            **self.fallback_body(switch.entity, row.lang),
                        )
                        pending[request_id] = (*key, request)
        if pending:
            results = self.generate([request for _, _, request in pending.values()], usage, "label_fallback")
            for (entity_id, lang, _), result in zip(pending.values(), results):
                if not result.ok:
                    failed[(entity_id, lang)] = _LlmAnswer(None, "engine_error")
                    continue
                label = parse_label(result.text, language_name(lang))
                reason = self._llm_text_reason(label, lang)
                self._llm_labels[(entity_id, lang)] = _LlmAnswer(None if reason else label, reason)
        for row in rows:
            for switch in row.switches:
                if switch.label is None:
                    key = (switch.entity.entity_id, row.lang)
                    answer = self._llm_labels.get(key) or failed[key]
                    if answer.label is None:
                        row.reject_reason = row.reject_reason or f"llm_label_{answer.reason}"
                    else:
                        switch.label, switch.label_source = answer.label, "llm"

    def repair_body(self, record: dict[str, Any], switch: _Switch, lang: str) -> dict[str, Any]:
        """The prompt asking for ``switch.label`` in the form of the linked English words, in the run's prompt form
        (``{"prompt": text}`` or ``{"messages": turns}``)."""
        mention = switch.mention
        text = record["text"]
        sentence = f"{text[: mention['start']]}[[{mention['mention']}]]{text[mention['end'] :]}"
        request = {
            "language": language_name(lang), "sentence": sentence, "mention": mention["mention"], "label": switch.label
        }
        return self._repair_template.render(repair_exemplars(), request)

    def _repair_inflections(self, rows: list[_Row], usage: Usage) -> None:
        """Let the LLM fit labels to inflected mentions; refused suggestions leave the label as it was."""
        todo: list[tuple[_Row, _Switch, Request]] = []
        for row in rows:
            if row.reject_reason is not None:
                continue
            for index, switch in enumerate(row.switches):
                names = {switch.entity.en_title.casefold(), *(a.casefold() for a in switch.entity.aliases)}
                if switch.mention["mention"].casefold() in names:
                    continue  # the words are the name itself: the label already has their form
                request_id = f"entitycs:inflect:{row.record['sentence_id']}:{row.lang}:{index}"
                request = Request(
                    id=request_id,
                    sampling=self._sampling(request_id),
                    **self.repair_body(row.record, switch, row.lang),
                )
                todo.append((row, switch, request))
        if not todo:
            return
        results = self.generate([request for _, _, request in todo], usage, "inflection_repair")
        # Small models echo an exemplar's answer ("немцы" for any Russian demonym): never a repair.
        exemplar_answers = {exemplar["fitted"] for exemplar in repair_exemplars()}
        for (row, switch, _), result in zip(todo, results):
            if not result.ok:
                continue
            fitted = parse_label(result.text, language_name(row.lang))
            if not fitted or fitted == switch.label or fitted in exemplar_answers:
                continue
            if len(fitted) <= 3 * len(switch.label) + 10 and self._llm_text_reason(fitted, row.lang) is None:
                switch.original_label, switch.label = switch.label, fitted


@lru_cache(maxsize=1)
def repair_exemplars() -> tuple[dict[str, str], ...]:
    """The hand-written few-shot examples of the inflection repair prompt."""
    try:
        exemplars = yaml.safe_load(REPAIR_EXEMPLARS.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read inflection exemplars ({exc})", file=str(REPAIR_EXEMPLARS)) from None
    return tuple(exemplars)


def parse_label(text: str, language: str) -> str:
    """The name in an LLM answer: its first line, without an echoed ``<Language>:`` prefix, quotes or markup.

    >>> parse_label(' "Deutschland"\\nEnglish: France', "German")
    'Deutschland'
    """
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    for prefix in (f"{language}:", "Same form:", "Name:"):
        if line.startswith(prefix):
            line = line[len(prefix) :].strip()
    return line.strip(" []<>\"'“”«»「」").strip()
