"""Slot-value localization for COD: each value of a dialogue gets one form per target language.

COD's annotators did not translate SGD's values, they adapted them (Majewska et al., 2023). Here each
non-categorical value (and each result count) is localized by the first method that applies, judged
on its SGD *canonical* value (``2019-03-03``, ``17:30``, ``45``):

========  ============================================================================================
date      canonical ``YYYY-MM-DD`` -> day and month in the locale's words (CLDR skeleton ``MMMMd``)
time      canonical ``HH:MM`` -> the locale's short time format
currency  a price, rent, balance or amount (slot name, or ``$``/"dollar" in its surface forms) -> the
          locale's currency format, in US dollars (the amount stays the dialogue's fact); whole amounts
          without decimals
number    any other numeric canonical value, counts included -> the locale's decimal format
lexicon   a city, country or area -> ``synth.recipes.entitycs.lexicon.label_for`` (the EntityCS lexicon)
llm       any other name (restaurants, songs, people, addresses) -> a plausible local name from the LLM,
          prompt ``prompts/cod/localize_value.v1.yaml`` (chat form: ``localize_value.chat.v1.yaml``),
          all values of a batch in one engine call
kept      the value as it is: codes and phone numbers, places when ``synth.recipes.entitycs.lexicon`` is absent, and LLM
          answers that fail the checks (empty, cut off, too long, not in the language's script) or equal
          the source
========  ============================================================================================

Each :class:`LocalizedValue` (a row's ``localized_values`` entry in COD: ``slot``, ``source_value``, ``value``,
``method``, ``fallback``) has ``fallback: true`` when the engine failed on its name (an error, no answer):
its ``value`` is then the English source kept as a stand-in, not a judgement that it needs no localizing.
Every other value, LLM answers refused by the checks included, has ``fallback: false``.

Babel output is made plain: no-break spaces become spaces and bidi marks go, because a generated turn
has to contain the value verbatim and models write plain spaces.

A dialogue gets one :class:`ValueMap` per language, keyed by canonical value, so a value reads the
same in every turn and in the dialogue state, even when it moves between services.

Example::

    from synth.recipes.cod.localize import format_date, localize_dialogues

    format_date("2019-03-03", "ru")                  # '3 марта'
    maps = localize_dialogues(dialogues, ["ar", "ru"], schemas, engine, config.sampling, usage)
    maps[("1_00030", "ru")]["2019-03-07"].value      # '7 марта'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml
from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton
from babel.dates import format_time as babel_format_time
from babel.localedata import locale_identifiers
from babel.numbers import format_currency, format_decimal

from synth.config import SamplingConfig
from synth.errors import ConfigError
from synth.filters.lid import check_script
from synth.llm.base import Engine, Request, Result, Usage
from synth.paths import PROMPTS_DIR
from synth.prompts import PromptTemplate, load_template
from synth.recipes.base import request_sampling, timed_generate
from synth.sources.sgd import COUNT_SLOT, Schemas, ServiceSchema, SlotSchema, is_verbatim, value_pairs

METHODS = ("date", "time", "currency", "number", "lexicon", "llm", "kept")
# COD's own languages; any other language with a CLDR locale works too.
COD_LANGUAGES = ("ar", "id", "ru", "sw")

CANONICAL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CANONICAL_TIME = re.compile(r"^\d{1,2}:\d{2}$")
CANONICAL_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# Digits, separators and signs only (phone numbers, codes): nothing to localize.
CODE_LIKE = re.compile(r"^[\d\s()+#./-]+$")
CURRENCY_SLOT = re.compile(r"price|cost|fare|rent|balance|amount|fee|salary")
CURRENCY_SURFACE = re.compile(r"\$|dollar|bucks", re.IGNORECASE)
PLACE_SLOT = re.compile(r"\b(city|cities|country|countries|location|area|town|place)\b|_city$|^city", re.IGNORECASE)
# Characters babel emits that a model would not reproduce: no-break spaces and bidi controls.
_SPACES = dict.fromkeys(map(ord, "\u00a0\u202f\u2007\u2009"), " ")
_BIDI = dict.fromkeys(map(ord, "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
# An LLM value longer than this many times the source (and than LLM_MAX_CHARS) is a runaway, not a name.
LLM_MAX_RATIO = 3
LLM_MAX_CHARS = 60
LLM_MAX_TOKENS = 24
LOCALIZE_TEMPLATE = "cod/localize_value.v1.yaml"
EXEMPLARS_FILE = "cod/exemplars.v1.yaml"


@dataclass(frozen=True)
class LocalizedValue:
    """A value in one language and how it got there (``method`` is one of :data:`METHODS`).

    ``fallback`` is true when the LLM was to localize the value but the engine failed (``method`` is then
    ``kept`` and ``value`` the English source): the value is unlocalized for want of an answer.
    """

    slot: str
    source_value: str
    value: str
    method: str
    fallback: bool = False

    @property
    def keeps_canonical(self) -> bool:
        """Dates, times, amounts and numbers keep SGD's canonical form; names get a new canonical form."""
        return self.method in ("date", "time", "currency", "number")


ValueMap = dict[str, LocalizedValue]


# -- languages ---------------------------------------------------------------------------------------------


def locale_for(lang: str) -> Locale:
    """The CLDR locale of an ISO code (``pt-br`` works); ConfigError listing what is supported otherwise."""
    try:
        return Locale.parse(lang, sep="-")
    except (UnknownLocaleError, ValueError):
        raise ConfigError(
            f"no CLDR locale for {lang!r}; supported: COD's {', '.join(COD_LANGUAGES)} and any CLDR language: "
            + ", ".join(supported_languages()),
            field="languages",
        ) from None


@lru_cache(maxsize=1)
def supported_languages() -> list[str]:
    """Base language codes babel has locale data for (regional variants such as ``pt-br`` work too)."""
    return sorted({identifier.split("_")[0] for identifier in locale_identifiers() if identifier != "root"})


def language_name(lang: str) -> str:
    """English name of a language, as the prompts use it (``sw`` -> ``Swahili``)."""
    return locale_for(lang).get_display_name("en")


# -- babel formats -----------------------------------------------------------------------------------------


def plain(text: str) -> str:
    """Babel output as a model would write it: plain spaces, no bidi marks."""
    return text.translate(_SPACES).translate(_BIDI).strip()


def format_date(canonical: str, lang: str) -> str:
    """``2019-03-03`` -> day and month in the locale (``3 марта``, ``3 Maret``)."""
    return plain(format_skeleton("MMMMd", dt.date.fromisoformat(canonical), locale=locale_for(lang)))


def format_time(canonical: str, lang: str) -> str:
    """``17:30`` -> the locale's short time (``17:30``, ``17.30``, ``5:30 م``)."""
    hours, minutes = canonical.split(":")
    return plain(babel_format_time(dt.time(int(hours), int(minutes)), "short", locale=locale_for(lang)))


def format_price(canonical: str, lang: str, currency: str = "USD") -> str:
    """``45`` -> ``45 $`` / ``US$45``: the locale's currency format, whole amounts without decimals."""
    locale = locale_for(lang)
    amount = Decimal(canonical)
    if amount == amount.to_integral_value():
        # The locale's own pattern minus its fraction digits: "$273", not "$273.00" (SGD prices are whole dollars).
        pattern = locale.currency_formats["standard"].pattern.replace(".00", "")
        return plain(format_currency(amount, currency, format=pattern, locale=locale, currency_digits=False))
    return plain(format_currency(amount, currency, locale=locale))


def format_number(canonical: str, lang: str) -> str:
    """``5.90`` -> ``5,9`` (ru): the locale's decimal format."""
    return plain(format_decimal(Decimal(canonical), locale=locale_for(lang)))


# -- classification ----------------------------------------------------------------------------------------


def value_method(slot: str, spec: SlotSchema | None, canonical: str, surfaces: Iterable[str]) -> str:
    """The method that applies to a value: ``date``, ``time``, ``currency``, ``number``, ``lexicon``,
    ``llm`` or ``kept`` (before any lookup; a missing lexicon label moves a place on to ``llm``)."""
    if CANONICAL_DATE.match(canonical):
        return "date"
    if CANONICAL_TIME.match(canonical):
        return "time"
    if CANONICAL_NUMBER.match(canonical):
        money = CURRENCY_SLOT.search(slot) or any(CURRENCY_SURFACE.search(s) for s in surfaces)
        return "currency" if money else "number"
    if CODE_LIKE.match(canonical):
        return "kept"
    about = f"{slot} {spec.description if spec else ''}"
    return "lexicon" if PLACE_SLOT.search(about) else "llm"


FORMATTERS: dict[str, Callable[[str, str], str]] = {
    "date": format_date,
    "time": format_time,
    "currency": format_price,
    "number": format_number,
}


def _lexicon() -> Callable[[str, str], str | None] | None:
    """``synth.recipes.entitycs.lexicon.label_for`` when that module exists (it is the EntityCS recipe's; imported lazily)."""
    try:
        from synth.recipes.entitycs.lexicon import label_for
    except ModuleNotFoundError as exc:
        if exc.name != "synth.recipes.entitycs.lexicon":
            raise
        return None
    return label_for


# -- collection ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceValue:
    """A value of a source dialogue to localize: its first slot, that slot's schema and every surface form."""

    slot: str
    spec: SlotSchema | None
    canonical: str
    surfaces: tuple[str, ...]


def dialogue_values(dialogue: Mapping[str, Any], schemas: Schemas) -> list[SourceValue]:
    """The values to localize, once per canonical value in order of first use: verbatim slot values and counts."""
    found: dict[str, SourceValue] = {}
    for turn in dialogue["turns"]:
        for frame in turn["frames"]:
            schema: ServiceSchema = schemas[frame["service"]]
            for action in frame["actions"]:
                slot = action.get("slot", "")
                for surface, canonical in value_pairs(action):
                    if not (is_verbatim(schema, slot, canonical) or slot == COUNT_SLOT):
                        continue
                    known = found.get(canonical)
                    surfaces = (known.surfaces if known else ()) + (surface,)
                    found[canonical] = SourceValue(
                        known.slot if known else slot,
                        known.spec if known else schema.slots.get(slot),
                        canonical,
                        surfaces,
                    )
    return list(found.values())


def surface_index(dialogue: Mapping[str, Any]) -> dict[str, str]:
    """Surface form -> canonical value, from every action of the dialogue (the state lists surface forms)."""
    index: dict[str, str] = {}
    for turn in dialogue["turns"]:
        for frame in turn["frames"]:
            for action in frame["actions"]:
                for surface, canonical in value_pairs(action):
                    index.setdefault(surface, canonical)
                    index.setdefault(canonical, canonical)
    return index


# -- the LLM step ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def cod_exemplars() -> dict[str, Any]:
    """The hand-written few-shot examples of the COD prompts (``prompts/cod/exemplars.v1.yaml``)."""
    path = PROMPTS_DIR / EXEMPLARS_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read COD exemplars ({exc})", file=str(path)) from None
    if (
        not isinstance(data, dict)
        or not {"speaker_labels", "localize", "turns"} <= set(data)
        or "default" not in data["turns"]
    ):
        raise ConfigError("expected 'speaker_labels', 'localize' and 'turns' (with 'default')", file=str(path))
    return data


def localize_template(form: str = "completion") -> PromptTemplate:
    """The value-localization template in prompt form ``form`` (``localize_value.v1.yaml`` or its ``.chat``)."""
    return load_template(LOCALIZE_TEMPLATE, form=form)


def localize_request(value: str, kind: str, lang: str, sampling: SamplingConfig, form: str = "completion") -> Request:
    """The few-shot request for one name; its id (hence seed) depends only on language, kind and value.
    ``form``: ``completion`` (one text) or ``chat`` (the examples as user/assistant turns)."""
    template = localize_template(form)
    digest = hashlib.sha256(f"{kind}\x1f{value}".encode()).hexdigest()[:16]
    request_id = f"cod/localize/{lang}/{digest}"
    body = template.render(cod_exemplars()["localize"], {"language": language_name(lang), "kind": kind, "source": value})
    return Request(id=request_id, **body, sampling=request_sampling(sampling, request_id, LLM_MAX_TOKENS))


def check_llm_value(source: str, result: Result, lang: str) -> str | None:
    """The LLM's local name, or ``None`` when it is unusable: failed, empty, cut off, too long, a prompt label,
    an example's answer, or not in the language's script (a romanized "Al-Qasr" for Arabic reads as neither)."""
    if not result.ok or (result.finish_reason == "length" and "\n" not in result.text):
        return None
    text = result.text.strip().split("\n", 1)[0].strip().strip("\"'«»“”„").strip()
    if not text or len(text) > max(LLM_MAX_RATIO * len(source), LLM_MAX_CHARS):
        return None
    if re.match(r"^(Language|Kind|English|Local)\s*:", text) or not check_script(text, lang):
        return None
    # A small model at temperature 0 likes to repeat the last example's answer whatever the question.
    if text in {example["local"] for example in cod_exemplars()["localize"]}:
        return None
    return text


def localize_dialogues(
    dialogues: Sequence[Mapping[str, Any]],
    langs: Sequence[str],
    schemas: Schemas,
    engine: Engine | None,
    sampling: SamplingConfig,
    usage: Usage,
    form: str = "completion",
) -> dict[tuple[str, str], ValueMap]:
    """``{(dialogue_id, lang): {canonical: LocalizedValue}}`` for every dialogue × language (LLM requests in prompt
    form ``form``, see :func:`localize_request`).

    The LLM names of the whole batch go to the engine in one call; identical (language, kind, value)
    requests are sent once, so a name also reads the same across the dialogues of a batch.
    """
    label_for = _lexicon()
    plans: dict[tuple[str, str], list[tuple[SourceValue, str, str | None]]] = {}
    wanted: dict[tuple[str, str, str], Request] = {}
    for dialogue in dialogues:
        values = dialogue_values(dialogue, schemas)
        for lang in langs:
            plan = []
            for value in values:
                method = value_method(value.slot, value.spec, value.canonical, value.surfaces)
                text: str | None = None
                if method in FORMATTERS:
                    try:
                        text = FORMATTERS[method](value.canonical, lang)
                    except (ValueError, ArithmeticError):  # "2019-02-30", "25:00": not a real date or time
                        method, text = "kept", value.canonical
                elif method == "lexicon" and label_for is None:
                    method, text = "kept", value.canonical
                elif method == "lexicon":
                    text = label_for(value.canonical, lang)
                    method = "lexicon" if text else "llm"  # a place the lexicon lacks is a name like any other
                elif method == "kept":
                    text = value.canonical
                if method == "llm":
                    kind = _kind(value)
                    wanted.setdefault(
                        (lang, kind, value.canonical), localize_request(value.canonical, kind, lang, sampling, form)
                    )
                plan.append((value, method, text))
            plans[(dialogue["dialogue_id"], lang)] = plan

    answers: dict[tuple[str, str, str], str | None] = {}
    failed: set[tuple[str, str, str]] = set()  # the engine gave no answer: the English value stands in
    if wanted:
        if engine is None:
            raise ConfigError("COD needs an LLM engine to localize names")
        keys, requests = list(wanted), list(wanted.values())
        results = timed_generate(engine, requests, usage, "localize")
        answers = {key: check_llm_value(key[2], result, key[0]) for key, result in zip(keys, results)}
        failed = {key for key, result in zip(keys, results) if not result.ok}

    maps: dict[tuple[str, str], ValueMap] = {}
    for (dialogue_id, lang), plan in plans.items():
        value_map: ValueMap = {}
        taken: set[str] = set()
        for value, method, text in plan:
            fallback = False
            if method == "llm":
                key = (lang, _kind(value), value.canonical)
                text, fallback = answers.get(key), key in failed
                if text is not None and text.casefold() == value.canonical.casefold():
                    text = None
            # Two values must not collapse into one form, or a turn could not tell them apart.
            if text is None or text.casefold() in taken:
                method, text = "kept", value.canonical
            taken.add(text.casefold())
            value_map[value.canonical] = LocalizedValue(value.slot, value.canonical, text, method, fallback)
        maps[(dialogue_id, lang)] = value_map
    return maps


def _kind(value: SourceValue) -> str:
    """What a name is, for the prompt: the slot's schema description ("Name of the song")."""
    description = value.spec.description if value.spec else value.slot.replace("_", " ")
    return description.strip().rstrip(".")
