"""SGD loading (clear errors on bad files) and COD outline rendering on the shipped sample."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from synth.errors import ConfigError, InputError
from synth.paths import DATA_DIR
from synth.sources.sgd import (
    ACTS,
    INTENT_ACTS,
    OutlineTemplates,
    default_schema_path,
    is_verbatim,
    load_schema,
    read_dialogues,
    render_outline,
    truncate,
    turn_values,
    value_pairs,
)

SAMPLE = DATA_DIR / "sgd" / "dialogues.json"
BAD = Path(__file__).parent / "bad_inputs" / "cod"


@pytest.fixture(scope="module")
def schemas():
    return load_schema(DATA_DIR / "sgd" / "schema.json")


@pytest.fixture(scope="module")
def dialogues(schemas):
    return list(read_dialogues(SAMPLE, schemas))


@pytest.fixture(scope="module")
def templates():
    return OutlineTemplates.load()


def test_shipped_sample(dialogues, schemas):
    assert len(dialogues) == 20
    assert default_schema_path(SAMPLE) == DATA_DIR / "sgd" / "schema.json"
    assert {s for d in dialogues for s in d["services"]} == set(schemas)
    assert sum(len(d["turns"]) <= 8 for d in dialogues) >= 5
    assert len(dialogues[0]["turns"]) <= 8  # the demo runs the first dialogue
    acts = {a["act"] for d in dialogues for t in d["turns"] for f in t["frames"] for a in f["actions"]}
    assert len(acts) >= 15 and acts <= set(ACTS)
    assert (DATA_DIR / "sgd" / "LICENSE.md").read_text(encoding="utf-8").count("CC BY-SA 4.0") >= 1


def _one_action_dialogue(service: str, speaker: str, action: dict) -> dict:
    return {
        "dialogue_id": "t",
        "turns": [{"speaker": speaker, "utterance": "x", "frames": [{"service": service, "actions": [action]}]}],
    }


def test_every_shipped_action_is_rendered_with_its_values(dialogues, schemas, templates):
    """Each action alone: its sentence must not be the empty-turn fallback and must carry its values."""
    seen_acts = set()
    for dialogue in dialogues:
        for turn in dialogue["turns"]:
            for frame in turn["frames"]:
                schema = schemas[frame["service"]]
                for action in frame["actions"]:
                    seen_acts.add(action["act"])
                    one = _one_action_dialogue(frame["service"], turn["speaker"], action)
                    [line] = render_outline(one, schemas, templates)
                    speaker = templates.speakers[turn["speaker"]]
                    assert line.startswith(speaker) and line != templates.no_acts.format(speaker=speaker)
                    assert "{" not in line and "}" not in line
                    for surface, canonical in value_pairs(action):
                        if action["act"] in INTENT_ACTS:
                            description = schema.intents[canonical].description.rstrip(".")
                            assert description[1:].lower() in line.lower()
                        elif is_verbatim(schema, action["slot"], canonical):
                            assert f'"{surface}"' in line
                        elif canonical != "dontcare":
                            assert templates.value_words.get(canonical, canonical) in line
                    if action.get("slot") in schema.slots:
                        description = schema.slots[action["slot"]].description.rstrip(".")
                        assert description[1:].lower() in line.lower()
    assert len(seen_acts) >= 15


def test_every_sgd_act_has_a_template(schemas, templates):
    """Acts the sample lacks (NOTIFY_FAILURE) render too."""
    for act in ACTS:
        if act in INTENT_ACTS:
            action = {"act": act, "slot": "intent", "values": ["GetWeather"], "canonical_values": ["GetWeather"]}
        else:
            action = {"act": act, "slot": "", "values": [], "canonical_values": []}
            if act in ("INFORM", "OFFER", "CONFIRM", "REQUEST"):
                action = {"act": act, "slot": "city", "values": ["Toronto"], "canonical_values": ["Toronto"]}
            if act == "INFORM_COUNT":
                action = {"act": act, "slot": "count", "values": ["3"], "canonical_values": ["3"]}
        [line] = render_outline(_one_action_dialogue("Weather_1", "SYSTEM", action), schemas, templates)
        assert line.startswith("The assistant") and line.endswith("."), (act, line)
        assert "continues the conversation" not in line
    failure = {"act": "NOTIFY_FAILURE", "slot": "", "values": [], "canonical_values": []}
    [line] = render_outline(_one_action_dialogue("Weather_1", "SYSTEM", failure), schemas, templates)
    assert templates.unknown_intent in line


def test_outline_quotes_localized_values_and_tracks_intents(dialogues, schemas, templates):
    dialogue = next(d for d in dialogues if d["dialogue_id"] == "1_00030")
    outline = render_outline(dialogue, schemas, templates, {"2019-03-07": "7 марта", "Mexico City": "Мехико"})
    assert len(outline) == len(dialogue["turns"])
    assert outline[0].startswith("The user wants to search for one-way flights")
    assert '"Мехико"' in outline[0] and '"7 марта"' in outline[2] and '"San Diego"' in outline[2]
    assert '"7th of this month"' not in outline[2]
    # NEGATE_INTENT carries no intent in SGD: the outline names the intent the assistant offered.
    homes = next(d for d in dialogues if d["dialogue_id"] == "3_00113")
    lines = render_outline(homes, schemas, templates)
    assert "do not want to schedule a visit" in lines[6]


def test_turn_values_are_the_spanned_slots(dialogues, schemas):
    """Verbatim values are exactly the non-categorical ones SGD gives spans for."""
    for dialogue in dialogues:
        for turn in dialogue["turns"]:
            wanted = {(v.frame, v.slot) for v in turn_values(turn, schemas)}
            spanned = {(f, s["slot"]) for f, frame in enumerate(turn["frames"]) for s in frame["slots"]}
            assert wanted <= spanned


def test_truncate(dialogues):
    assert len(truncate(dialogues[-1], 4)["turns"]) == 4
    assert truncate(dialogues[0], None) is dialogues[0]
    assert len(dialogues[-1]["turns"]) > 4  # the original is untouched


BAD_CASES = [
    ("missing_turns.json", "turns", "missing 'turns'"),
    ("unknown_service.json", "turns[1].frames[0].service", "unknown service 'Weather_9'"),
    ("unknown_slot.json", "turns[1].frames[0].actions[0].slot", "slot 'temperature_celsius' is not in service"),
    ("unknown_span_slot.json", "turns[0].frames[0].slots[0].slot", "slot 'town' is not in service"),
    ("span_outside.json", "turns[0].frames[0].slots[0]", "outside the utterance"),
    ("unknown_act.json", "turns[1].frames[0].actions[0].act", "unknown act 'SUGGEST'"),
]


@pytest.mark.parametrize("name,field,message", BAD_CASES)
def test_bad_dialogues_name_file_dialogue_and_field(name, field, message):
    schemas = load_schema(BAD / "schema.json")
    with pytest.raises(InputError) as caught:
        list(read_dialogues(BAD / name, schemas, schema_file="schema.json"))
    text = str(caught.value)
    assert name in text and "row 1" in text and "'bad_00002'" in text
    assert f"field '{field}'" in text and message in text


@pytest.mark.parametrize(
    "name,message",
    [
        ("not_a_list.json", "expected a JSON list of SGD dialogues"),
        ("multiwoz.json", "unsupported format: MultiWOZ"),
        ("not_utf8.json", "not UTF-8"),
    ],
)
def test_bad_files(name, message):
    with pytest.raises(InputError) as caught:
        list(read_dialogues(BAD / name, load_schema(BAD / "schema.json")))
    assert name in str(caught.value) and message in str(caught.value)
    if name == "multiwoz.json":
        assert "MultiWOZ 2.2" in str(caught.value) and "SGD format" in str(caught.value)


def test_bad_schema(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps([{"service_name": "A_1", "slots": [{"description": "x"}], "intents": []}]))
    with pytest.raises(InputError, match=re.escape("row 0, field 'slots[0].name'")):
        load_schema(path)
    path.write_text(json.dumps({"A_1": {}}))
    with pytest.raises(InputError, match="expected a JSON list of SGD service schemas"):
        load_schema(path)


def test_folder_input_and_duplicate_ids(tmp_path, dialogues):
    (tmp_path / "schema.json").write_text((DATA_DIR / "sgd" / "schema.json").read_text(encoding="utf-8"))
    (tmp_path / "dialogues_001.json").write_text(json.dumps(dialogues[:2]))
    (tmp_path / "dialogues_002.json").write_text(json.dumps(dialogues[2:4]))
    schemas = load_schema(default_schema_path(tmp_path))
    assert [d["dialogue_id"] for d in read_dialogues(tmp_path, schemas)] == [d["dialogue_id"] for d in dialogues[:4]]
    (tmp_path / "dialogues_003.json").write_text(json.dumps(dialogues[1:2]))
    with pytest.raises(InputError, match=f"dialogue '{dialogues[1]['dialogue_id']}' appears twice"):
        list(read_dialogues(tmp_path, schemas))


def test_incomplete_templates_are_refused(tmp_path, monkeypatch):
    import synth.sources.sgd as sgd

    text = (sgd.PROMPTS_DIR / "cod" / "outline.v1.yaml").read_text(encoding="utf-8")
    (tmp_path / "cod").mkdir()
    (tmp_path / "cod" / "outline.v9.yaml").write_text(text.replace("  REQ_MORE:\n", "  REQ_MORE_X:\n"))
    monkeypatch.setattr(sgd, "PROMPTS_DIR", tmp_path)
    with pytest.raises(ConfigError, match="act REQ_MORE"):
        OutlineTemplates.load("cod/outline.v9.yaml")
