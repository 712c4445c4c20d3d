"""The COD recipe: records, rows in SGD structure, verification and rejection paths.

The engine and LID here are small fakes defined in this file: they exercise parsing, span recomputation,
retries and rejection deterministically. The one end-to-end run with the real engine is marked ``slow``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pyarrow as pa
import pytest

import synth.recipes.cod.localize as localize
from synth.recipes.cod.config import CodConfig
from synth.errors import ConfigError
from synth.llm.base import Result, Usage
from synth.paths import DATA_DIR
from synth.recipes.cod.recipe import RETRY_TEMPERATURE, CodRecipe, find_value, masked, to_sgd
from synth.sources.sgd import is_verbatim, load_schema, read_dialogues, value_pairs

SAMPLE = DATA_DIR / "sgd" / "dialogues.json"
# A sentence per language, so a fake turn reads as that language to a real LID too.
FILLER = {
    "ru": "Хорошо, давайте посмотрим, что можно сделать",
    "sw": "Sawa, hebu tuangalie tunachoweza kufanya",
    "id": "Baik, mari kita lihat apa yang bisa dilakukan",
}


def _instruction(prompt: str) -> str:
    return prompt.rsplit("Instruction: ", 1)[1].split("\n", 1)[0]


def _lang(request_id: str) -> str:
    return request_id.split("/")[1]


class FakeEngine:
    """Writes each turn as filler text plus every quoted value of its instruction; ``behave`` can override
    a turn (return a Result) by request id. Localization answers "Lokal <name>"."""

    model_name = "fake"

    def __init__(self, behave=None):
        self.behave = behave or (lambda request: None)
        self.calls: list[list] = []

    def generate(self, requests):
        self.calls.append(list(requests))
        results = []
        for request in requests:
            if request.id.startswith("cod/localize/"):
                source = request.prompt.rsplit("English: ", 1)[1].split("\n", 1)[0]
                results.append(Result(request.id, text=f" Lokal {source}\n", finish_reason="stop"))
                continue
            override = self.behave(request)
            if override is not None:
                results.append(override)
                continue
            values = re.findall(r'"([^"]*)"', _instruction(request.prompt))
            turn = request.id.split("/")[2]  # "turn3": keeps turns without values distinct
            text = f" {FILLER[_lang(request.id)]} ({turn}): {', '.join(values)}.\n"
            results.append(Result(request.id, text=text, finish_reason="stop"))
        return results

    def close(self):
        pass


@dataclass(frozen=True)
class Verdict:
    lang: str | None
    score: float
    agree: bool | None
    keep: bool
    reason: str | None


class FakeLid:
    """Keeps everything unless ``wrong`` says a text is in the wrong language (then ``reason``)."""

    def __init__(self, wrong=lambda text: False, reason="lid_mismatch"):
        self.wrong, self.reason, self.calls = wrong, reason, []

    def check(self, texts, targets):
        self.calls.append(list(texts))
        return [
            Verdict("en", 0.9, None, False, self.reason) if self.wrong(t) else Verdict(lang, 0.9, None, True, None)
            for t, lang in zip(texts, targets)
        ]


def make_recipe(engine=None, lid=None, langs=("ru", "sw"), **cod) -> CodRecipe:
    config = CodConfig(input={"path": str(SAMPLE)}, languages=list(langs), cod=cod)
    recipe = CodRecipe(config, engine or FakeEngine(), lid or FakeLid())
    recipe.validate()
    return recipe


@pytest.fixture(autouse=True)
def no_lexicon(monkeypatch):
    """Places go through the (fake) LLM, so these tests do not depend on the shipped lexicon."""
    monkeypatch.setattr(localize, "_lexicon", lambda: None)


def records(recipe: CodRecipe, ids=("1_00030", "3_00078", "5_00073")) -> list[dict]:
    return [r for r in recipe.read_records() if r["source_id"] in ids]


def test_read_records_and_validate(tmp_path):
    recipe = make_recipe(max_turns=4)
    recs = list(recipe.read_records())
    assert [r["source_id"] for r in recs][:2] == ["1_00030", "3_00078"] and len(recs) == 20
    assert all(len(r["dialogue"]["turns"]) <= 4 for r in recs)
    assert recipe.prompt_version.startswith("cod/outline.v1@v1+cod/turn.v1@v1")
    with pytest.raises(ConfigError, match="no CLDR locale for 'qq'.*ar, id, ru, sw"):
        make_recipe(langs=("qq",))
    no_schema = CodConfig(input={"path": str(tmp_path / "d.json")}, languages=["ru"])
    with pytest.raises(ConfigError, match="field 'cod.schema_path'"):
        CodRecipe(no_schema, None, None).validate()
    hf = CodConfig(input={"hf": {"name": "x"}}, languages=["ru"])
    with pytest.raises(ConfigError, match="input.hf is not supported"):
        CodRecipe(hf, None, None).validate()


def test_rows_are_sgd_with_spans_on_the_generated_text():
    engine, lid = FakeEngine(), FakeLid()
    recipe = make_recipe(engine, lid)
    recs = records(recipe)
    usage = Usage()
    rows = recipe.process(recs, usage)
    assert len(rows) == 6 and {(r["dialogue_id"], r["lang"]) for r in rows} == {
        (d, lang) for d in ("1_00030", "3_00078", "5_00073") for lang in ("ru", "sw")
    }
    table = pa.Table.from_pylist(rows, schema=recipe.schema())
    assert table.num_rows == 6
    for row in rows:
        assert row["reject_reason"] is None and row["turns_kept"] == row["turns_total"] == len(row["turns"])
        assert row["slot_found_rate"] == 1.0 and len(row["outline"]) == row["turns_total"]
        assert row["id"] != row["source_id"] and row["lid_lang"] == row["lang"]
        for turn in row["turns"]:
            assert turn["reject_reason"] is None and turn["attempts"] == 1 and turn["source_utterance"]
            for frame in turn["frames"]:
                values = {a["slot"]: a["values"][0] for a in frame["actions"] if a["values"]}
                for span in frame["slots"]:
                    assert turn["utterance"][span["start"] : span["exclusive_end"]] == values[span["slot"]]
    # Usage: one localization call, then per turn index one call for every dialogue × language that has it.
    assert usage.per_step["localize"] == len(engine.calls[0])
    turn_calls = engine.calls[1:]
    assert [len(c) for c in turn_calls] == [6, 6, 6, 6, 2, 2]  # 1_00030 has 6 turns, the others 4
    assert usage.per_step["turn"] == sum(len(c) for c in turn_calls)


def test_a_value_reads_the_same_in_every_turn_and_in_the_state():
    recipe = make_recipe()
    schemas = recipe.schemas
    for row in recipe.process(records(recipe, ("1_00066", "12_00100")), Usage()):
        localized = {v["source_value"]: v for v in row["localized_values"]}
        forms = {v["value"] for v in localized.values()}
        seen: dict[str, set[str]] = {}
        for turn in row["turns"]:
            for frame in turn["frames"]:
                schema = schemas[frame["service"]]
                for action in frame["actions"]:
                    for value, canonical in value_pairs(action):
                        if is_verbatim(schema, action["slot"], value):
                            seen.setdefault(action["slot"], set()).add(value)
                            assert value in forms
                            entry = next(v for v in localized.values() if v["value"] == value)
                            assert canonical == (
                                entry["source_value"]
                                if entry["method"] in ("date", "time", "currency", "number")
                                else value
                            )
                if frame["state"]:
                    state = json.loads(frame["state"])
                    for slot, values in state["slot_values"].items():
                        if not schema.slots[slot].is_categorical:
                            assert set(values) <= forms | {"dontcare"}, (slot, values)
        # The source uses several surface forms of one date; the output uses one.
        assert all(len(values) == 1 for slot, values in seen.items() if slot.endswith("date")), seen


def test_slot_missing_after_max_attempts_keeps_every_turn():
    def drop_values(request):
        if "/turn1/" in request.id:
            return Result(request.id, text=f" {FILLER[_lang(request.id)]}.\n", finish_reason="stop")
        if "/turn2/" in request.id:  # values in the instruction but none in the reply
            return Result(request.id, text=f" {FILLER[_lang(request.id)]}, ничего.\n", finish_reason="stop")
        return None

    engine = FakeEngine(drop_values)
    recipe = make_recipe(engine, max_attempts=3)
    [row] = [r for r in recipe.process(records(recipe, ("1_00030",)), Usage()) if r["lang"] == "ru"]
    turn = row["turns"][2]
    assert turn["reject_reason"] == "slot_missing" and turn["attempts"] == 3 and turn["frames"][0]["slots"] == []
    assert row["turns"][1]["reject_reason"] is None  # nothing to find in a REQUEST turn
    assert row["reject_reason"] == "slot_missing" and row["turns_kept"] == row["turns_total"] - 1
    assert row["slot_found_rate"] < 1.0 and len(row["turns"]) == 6 and row["turns"][3]["utterance"]
    tries = [r for call in engine.calls for r in call if r.id.startswith("1_00030/ru/turn2/")]
    assert [r.id.rsplit("/", 1)[1] for r in tries] == ["try1", "try2", "try3"]
    assert len({r.sampling.seed for r in tries}) == 3
    assert tries[0].sampling.temperature == 0.0 and tries[1].sampling.temperature == RETRY_TEMPERATURE


def test_a_cut_off_turn_keeps_its_complete_sentences():
    def rambling(request):
        if "/turn3/" in request.id:
            return Result(
                request.id, text=" До свидания! Всего доброго. А ещё мне нужно сказать", finish_reason="length"
            )
        return None

    recipe = make_recipe(FakeEngine(rambling), langs=("ru",))
    [row] = recipe.process(records(recipe, ("3_00078",)), Usage())
    assert row["turns"][3]["utterance"] == "До свидания! Всего доброго." and row["reject_reason"] is None


def test_repeated_turns_are_rejected():
    def parrot(request):
        if "/turn2/" in request.id:  # the user's goodbye copies the first turn word for word
            return Result(
                request.id,
                text=" «Хорошо, давайте посмотрим, что можно сделать (turn0): Montara»\n",
                finish_reason="stop",
            )
        if "/turn3/" in request.id:  # the assistant copies the example dialogue
            return Result(
                request.id,
                text=" Могу предложить ресторан «Траттория Рома», там есть свободный столик на 19:30.\n",
                finish_reason="stop",
            )
        return None

    recipe = make_recipe(FakeEngine(parrot), langs=("ru",))
    [row] = recipe.process(records(recipe, ("3_00078",)), Usage())
    assert [t["reject_reason"] for t in row["turns"]] == [None, None, "repeat", "repeat"]
    assert row["reject_reason"] == "repeat" and row["turns"][2]["attempts"] == 2


def test_a_retry_can_recover():
    def first_try_fails(request):
        if "/turn0/try1" in request.id:
            return Result(request.id, text=" Привет.\n", finish_reason="stop")
        return None

    recipe = make_recipe(FakeEngine(first_try_fails), langs=("ru",))
    [row] = recipe.process(records(recipe, ("3_00078",)), Usage())
    assert row["reject_reason"] is None and row["turns"][0]["attempts"] == 2


@pytest.mark.parametrize(
    "reply,reason",
    [
        (Result("x", error="engine down"), "engine_error"),
        (Result("x", text="  \n", finish_reason="stop"), "empty"),
        (Result("x", text=" Instruction: The user says goodbye.\n", finish_reason="stop"), "parse_error"),
        (Result("x", text=" Хорошо, давайте посмотрим, что можно сделать для", finish_reason="length"), "parse_error"),
        (Result("x", text=" Хорошо, в 11.40 давайте", finish_reason="length"), "parse_error"),
    ],
)
def test_unusable_turns_end_the_dialogue(reply, reason):
    def broken(request):
        if "/turn1/" in request.id:
            return Result(request.id, text=reply.text, finish_reason=reply.finish_reason, error=reply.error)
        return None

    engine = FakeEngine(broken)
    recipe = make_recipe(engine, langs=("ru",))
    [row] = recipe.process(records(recipe, ("3_00078",)), Usage())
    reasons = [t["reject_reason"] for t in row["turns"]]
    assert reasons == [None, reason, "not_generated", "not_generated"]
    assert row["reject_reason"] == reason and row["turns_kept"] == 1 and row["turns"][1]["attempts"] == 2
    assert not any("/turn2/" in r.id for call in engine.calls for r in call)
    assert pa.Table.from_pylist([row], schema=recipe.schema()).num_rows == 1


class LocalizationDownEngine(FakeEngine):
    """Every localization request fails; turns are written as usual."""

    def generate(self, requests):
        results = super().generate(requests)
        return [Result(r.request_id, error="down") if r.request_id.startswith("cod/localize/") else r for r in results]


def test_rows_mark_values_the_engine_failed_to_localize():
    recipe = make_recipe(LocalizationDownEngine(), langs=("ru",))
    [row] = recipe.process(records(recipe, ("5_00073",)), Usage())
    pa.Table.from_pylist([row], schema=recipe.schema())  # the flag fits the declared schema
    fallbacks = {v["source_value"] for v in row["localized_values"] if v["fallback"]}
    assert fallbacks == {"Taraji P. Henson", "Drama", "The Best of Enemies"}


def test_lid_rejects_long_turns_and_lets_short_ones_through():
    # Turn 2 of 3_00078 is a goodbye the fake writes as bare filler; make the long filler "English".
    lid = FakeLid(wrong=lambda text: "давайте" in text or text == "Да.")

    def short_goodbye(request):
        if "/turn3/" in request.id:
            return Result(request.id, text=" Да.\n", finish_reason="stop")
        return None

    recipe = make_recipe(FakeEngine(short_goodbye), lid, langs=("ru",))
    [row] = recipe.process(records(recipe, ("3_00078",)), Usage())
    reasons = [t["reject_reason"] for t in row["turns"]]
    assert reasons[:3] == ["lid_mismatch"] * 3 and reasons[3] is None  # "Да." is too short to judge
    assert row["turns"][0]["lid_lang"] == "en"
    # LID sees the utterance with its values masked out.
    assert all("Montara" not in text for call in lid.calls for text in call)


def test_short_turns_still_fail_on_their_script():
    lid = FakeLid(wrong=lambda text: text == "OK.", reason="script_mismatch")

    def latin(request):
        if "/turn3/" in request.id:
            return Result(request.id, text=" OK.\n", finish_reason="stop")
        return None

    recipe = make_recipe(FakeEngine(latin), lid, langs=("ru",), max_attempts=1)
    [row] = recipe.process(records(recipe, ("3_00078",)), Usage())
    assert row["turns"][3]["reject_reason"] == "script_mismatch" and row["reject_reason"] == "script_mismatch"


def test_a_number_is_not_found_inside_a_longer_number():
    assert find_value('Temperatur "89", Regen 8 %', "8") == (23, 24)
    assert find_value("pukul 89", "8") is None
    assert find_value("на 8,7 и 18", "8") is None
    assert find_value("at 3.8 or 89", "8") is None
    assert find_value("89", "89") == (0, 2)
    assert find_value("8, 9 or 10", "8") == (0, 1)  # a comma and a space: two numbers
    assert find_value("Montarassa", "Montara") == (0, 7)  # letters: an inflected form still contains its value


def test_find_value_and_masking():
    assert find_value("Рейс в Мехико, 7 марта", "7 марта") == (15, 22)
    text = "Flight to MEXICO CITY"
    start, end = find_value(text, "Mexico City")
    assert text[start:end] == "MEXICO CITY"
    assert find_value("nothing here", "Mexico") is None
    assert masked("Рейс в Мехико, 7 марта.", [(7, 13), (15, 22)]) == "Рейс в , ."


def test_rows_read_back_as_sgd(tmp_path):
    recipe = make_recipe(langs=("sw",))
    rows = recipe.process(records(recipe), Usage())
    table = pa.Table.from_pylist(rows, schema=recipe.schema())
    dialogues = [to_sgd(row) for row in table.to_pylist()]
    path = tmp_path / "dialogues.json"
    path.write_text(json.dumps(dialogues, ensure_ascii=False), encoding="utf-8")
    schemas = load_schema(DATA_DIR / "sgd" / "schema.json")
    loaded = list(read_dialogues(path, schemas))  # spans, slots and services all validate
    assert [d["dialogue_id"] for d in loaded] == [r["dialogue_id"] for r in rows]
    assert loaded[0]["turns"][0]["frames"][0]["state"]["active_intent"] == "SearchOnewayFlight"


@pytest.mark.slow
def test_end_to_end_with_the_real_engine():
    """One short dialogue in Indonesian with the default model on CPU (~9 output tokens/s: a few minutes)."""
    reasons = {None, "slot_missing", "lid_mismatch", "script_mismatch", "parse_error", "empty", "engine_error"}
    from synth.filters.lid import LanguageIdentifier
    from synth.llm import get_engine

    config = CodConfig(input={"path": str(SAMPLE)}, languages=["id"], cod={"max_turns": 4, "turn_max_tokens": 40})
    recipe = CodRecipe(config, get_engine(config.engine), LanguageIdentifier(config.lid))
    recipe.validate()
    record = next(iter(recipe.read_records()))
    usage = Usage()
    [row] = recipe.process([record], usage)
    assert pa.Table.from_pylist([row], schema=recipe.schema()).num_rows == 1
    assert row["turns_total"] == 4 and len(row["turns"]) == 4 and usage.per_step.get("turn", 0) >= 4
    assert usage.completion_tokens > 0
    for turn in row["turns"]:
        assert turn["reject_reason"] in reasons | {"not_generated"}
        if turn["reject_reason"] is None:
            assert turn["utterance"]
            for frame in turn["frames"]:
                values = {a["slot"]: a["values"][0] for a in frame["actions"] if a["values"]}
                for span in frame["slots"]:
                    assert turn["utterance"][span["start"] : span["exclusive_end"]] == values[span["slot"]]
    if row["reject_reason"] is None:
        assert row["turns_kept"] == row["turns_total"] and row["slot_found_rate"] == 1.0
    else:
        assert row["reject_reason"] in [t["reject_reason"] for t in row["turns"]] + ["lid_mismatch", "script_mismatch"]
