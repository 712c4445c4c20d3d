"""Slot-value localization: CLDR formats (checked against babel itself), methods, LLM checks, batching."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from babel.dates import format_skeleton
from babel.dates import format_time as babel_time
from babel.numbers import format_currency, format_decimal, get_decimal_symbol

import synth.recipes.cod.localize as localize
from synth.config import SamplingConfig
from synth.errors import ConfigError
from synth.llm.base import Result, Usage
from synth.recipes.cod.localize import (
    check_llm_value,
    format_date,
    format_number,
    format_price,
    format_time,
    language_name,
    locale_for,
    localize_dialogues,
    plain,
    value_method,
)
from synth.paths import DATA_DIR
from synth.sources.sgd import load_schema, read_dialogues

LANGS = ["ar", "id", "ru", "sw", "de"]


@pytest.fixture(scope="module")
def schemas():
    return load_schema(DATA_DIR / "sgd" / "schema.json")


@pytest.fixture(scope="module")
def dialogues(schemas):
    return list(read_dialogues(DATA_DIR / "sgd" / "dialogues.json", schemas))


@pytest.mark.parametrize("lang", LANGS)
def test_dates_times_numbers_follow_babel(lang):
    for canonical in ("2019-03-03", "2019-03-14"):
        expected = plain(format_skeleton("MMMMd", dt.date.fromisoformat(canonical), locale=lang))
        assert format_date(canonical, lang) == expected
    for canonical, value in (("17:30", dt.time(17, 30)), ("07:05", dt.time(7, 5))):
        assert format_time(canonical, lang) == plain(babel_time(value, "short", locale=lang))
    for canonical in ("89", "5.90", "11130.35"):
        assert format_number(canonical, lang) == plain(format_decimal(Decimal(canonical), locale=lang))


@pytest.mark.parametrize("lang", LANGS)
def test_prices_follow_babel(lang):
    # Whole amounts: babel's currency format without the ".00" (SGD prices are whole dollars).
    full = plain(format_currency(Decimal("1750"), "USD", locale=lang))
    assert format_price("1750", lang) == full.replace(get_decimal_symbol(lang) + "00", "")
    assert format_price("10960.26", lang) == plain(format_currency(Decimal("10960.26"), "USD", locale=lang))


def test_plain_strips_what_models_do_not_write():
    raw = format_currency(Decimal("322"), "USD", locale="ar")
    assert "\u200f" in raw or "\xa0" in raw  # babel's own output has bidi marks / no-break spaces
    assert not set(format_price("322", "ar")) & {"\u200f", "\xa0", "\u202f", "\u061c"}
    assert "322" in format_price("322", "ar") and "\xa0" not in format_date("2019-03-03", "ru")


def test_languages():
    assert language_name("sw") == "Swahili" and language_name("pt-br") == "Portuguese (Brazil)"
    assert str(locale_for("ar")) == "ar"
    with pytest.raises(ConfigError) as caught:
        locale_for("qq")
    message = str(caught.value)
    assert "'qq'" in message and "ar, id, ru, sw" in message and ", de," in message and "field 'languages'" in message


@pytest.mark.parametrize(
    "slot,canonical,surfaces,method",
    [
        ("departure_date", "2019-03-03", ["3rd of March"], "date"),
        ("outbound_departure_time", "11:40", ["11:40 am"], "time"),
        ("price", "273", ["$273"], "currency"),
        ("transfer_amount", "1340", ["one thousand three hundred and forty bucks"], "currency"),
        ("temperature", "89", ["89"], "number"),
        ("count", "3", ["3"], "number"),
        ("phone_number", "408-265-4808", ["408-265-4808"], "kept"),
        ("origin_city", "Mexico City", ["Mexico City"], "lexicon"),
        ("title", "The Best of Enemies", ["The Best of Enemies"], "llm"),
    ],
)
def test_value_method(schemas, slot, canonical, surfaces, method):
    spec = next((s.slots[slot] for s in schemas.values() if slot in s.slots), None)
    assert value_method(slot, spec, canonical, surfaces) == method


def test_area_description_makes_a_place(schemas):
    # Homes_1 'area' is described as "City where the apartment is located".
    assert value_method("area", schemas["Homes_1"].slots["area"], "Fairfield", ["Fairfield"]) == "lexicon"


class RecordingEngine:
    """Answers localization prompts from a table; records every generate call."""

    model_name = "recording"

    def __init__(self, answers: dict[str, str | None]):
        self.answers = answers
        self.calls: list[list] = []

    def generate(self, requests):
        self.calls.append(list(requests))
        results = []
        for request in requests:
            source = request.prompt.rsplit("English: ", 1)[1].split("\n", 1)[0]
            answer = self.answers.get(source, f"Local {source}")
            if answer is None:
                results.append(Result(request.id, error="boom"))
            else:
                results.append(Result(request.id, text=f" {answer}\n", finish_reason="stop"))
        return results

    def close(self):
        pass


def test_one_batched_call_and_one_map_per_dialogue_and_language(dialogues, schemas):
    engine = RecordingEngine({})
    usage = Usage()
    batch = dialogues[:6]
    maps = localize_dialogues(batch, ["ru", "sw"], schemas, engine, SamplingConfig(), usage)
    assert len(engine.calls) == 1 and usage.per_step == {"localize": len(engine.calls[0])}
    ids = [r.id for r in engine.calls[0]]
    assert len(ids) == len(set(ids)) and all(r.sampling.stop == ("\n",) for r in engine.calls[0])
    assert set(maps) == {(d["dialogue_id"], lang) for d in batch for lang in ("ru", "sw")}
    flights = maps[("1_00030", "ru")]
    assert flights["2019-03-07"].value == format_date("2019-03-07", "ru") and flights["2019-03-07"].method == "date"
    assert flights["11:40"].method == "time" and flights["273"].value == format_price("273", "ru")
    assert flights["3"].method == "number"  # the result count
    for value_map in maps.values():
        assert all(v.method in localize.METHODS for v in value_map.values())


def test_llm_answers_that_fail_checks_are_kept(dialogues, schemas):
    movie = next(d for d in dialogues if d["dialogue_id"] == "5_00073")
    answers = {"Taraji P. Henson": "", "The Best of Enemies": "The Best of Enemies", "Drama": "x" * 200}
    maps = localize_dialogues([movie], ["id"], schemas, RecordingEngine(answers), SamplingConfig(), Usage())
    values = maps[("5_00073", "id")]
    for source in answers:
        assert values[source].method == "kept" and values[source].value == source
    maps = localize_dialogues(
        [movie], ["id"], schemas, RecordingEngine({"Drama": "Drama Lokal"}), SamplingConfig(), Usage()
    )
    assert maps[("5_00073", "id")]["Drama"].method == "llm"
    assert maps[("5_00073", "id")]["Drama"].value == "Drama Lokal"


def test_engine_errors_and_collisions_are_kept(dialogues, schemas):
    movie = next(d for d in dialogues if d["dialogue_id"] == "5_00073")
    engine = RecordingEngine({"Taraji P. Henson": None, "Drama": "Sama", "The Best of Enemies": "Sama"})
    values = localize_dialogues([movie], ["id"], schemas, engine, SamplingConfig(), Usage())[("5_00073", "id")]
    assert values["Taraji P. Henson"].method == "kept"
    # Two values may not share a form, or a turn could not tell them apart: the second keeps its source.
    assert [values["Drama"].value, values["The Best of Enemies"].value] == ["Sama", "The Best of Enemies"]


def _llm_values(dialogues, schemas, engine) -> list:
    """The values of movie dialogue 5_00073 in Indonesian that go to the LLM (names, not dates or numbers)."""
    movie = next(d for d in dialogues if d["dialogue_id"] == "5_00073")
    values = localize_dialogues([movie], ["id"], schemas, engine, SamplingConfig(), Usage())[("5_00073", "id")]
    return [values[source] for source in ("Taraji P. Henson", "Drama", "The Best of Enemies")]


def test_engine_errors_are_marked_as_english_fallbacks(dialogues, schemas):
    failing = RecordingEngine(dict.fromkeys(("Taraji P. Henson", "Drama", "The Best of Enemies")))
    values = _llm_values(dialogues, schemas, failing)
    assert [(v.value, v.method, v.fallback) for v in values] == [
        ("Taraji P. Henson", "kept", True),
        ("Drama", "kept", True),
        ("The Best of Enemies", "kept", True),
    ]


def test_answered_values_are_not_marked_as_fallbacks(dialogues, schemas):
    values = _llm_values(dialogues, schemas, RecordingEngine({}))
    assert [(v.method, v.fallback) for v in values] == [("llm", False)] * 3


def test_answers_refused_by_the_checks_are_not_marked_as_fallbacks(dialogues, schemas):
    values = _llm_values(dialogues, schemas, RecordingEngine({"Drama": "", "The Best of Enemies": "x" * 200}))
    assert [(v.method, v.fallback) for v in values[1:]] == [("kept", False), ("kept", False)]


def test_check_llm_value():
    ok = Result("r", text=" «Jalan Merdeka 5»\nLanguage: x", finish_reason="stop")
    assert check_llm_value("12 Oak Street", ok, "id") == "Jalan Merdeka 5"
    assert check_llm_value("X", Result("r", text=" Kind: song\n", finish_reason="stop"), "id") is None
    assert check_llm_value("X", Result("r", text=" Very long name that", finish_reason="length"), "id") is None
    assert check_llm_value("X", Result("r", text=" Mfalme Simba\n", finish_reason="stop"), "sw") is None  # an example
    # A romanized name is not Arabic, a Cyrillic one is Russian.
    assert check_llm_value("San Diego", Result("r", text=" Al-Qasr al-Sultan\n", finish_reason="stop"), "ar") is None
    assert check_llm_value("San Diego", Result("r", text=" Сан-Диего\n", finish_reason="stop"), "ru") == "Сан-Диего"


def test_places_without_the_lexicon_module_are_kept(dialogues, schemas, monkeypatch):
    monkeypatch.setattr(localize, "_lexicon", lambda: None)
    flights = next(d for d in dialogues if d["dialogue_id"] == "1_00030")
    values = localize_dialogues([flights], ["ru"], schemas, RecordingEngine({}), SamplingConfig(), Usage())
    assert values[("1_00030", "ru")]["Mexico City"].method == "kept"


def test_places_use_the_lexicon(dialogues, schemas, monkeypatch):
    labels = {("Mexico City", "ru"): "Мехико"}
    monkeypatch.setattr(localize, "_lexicon", lambda: lambda name, lang: labels.get((name, lang)))
    flights = next(d for d in dialogues if d["dialogue_id"] == "1_00030")
    engine = RecordingEngine({"San Diego": "Сан-Диего"})
    values = localize_dialogues([flights], ["ru"], schemas, engine, SamplingConfig(), Usage())[("1_00030", "ru")]
    assert (values["Mexico City"].value, values["Mexico City"].method) == ("Мехико", "lexicon")
    # A place the lexicon lacks goes to the LLM.
    assert (values["San Diego"].value, values["San Diego"].method) == ("Сан-Диего", "llm")
