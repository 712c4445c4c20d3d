"""Schema-Guided Dialogue (SGD; Rastogi et al., 2020) files: strict loading and COD outlines.

An SGD dialogue is a list of turns; each turn has a speaker (``USER``/``SYSTEM``), an utterance and
one frame per service with dialogue ``actions`` (act, slot, values, canonical_values), character
``slots`` spans and, on user turns, the dialogue ``state``. A schema file lists every service with its
intents and slots and their natural-language descriptions.

Loading checks everything the COD recipe relies on and fails with an :class:`InputError` naming the
file, the dialogue (index as ``row`` and id in the message) and the JSON path of the bad field
(``turns[2].frames[0].actions[1].slot``): not a list, missing ``turns``, unknown service or slot,
unknown act, spans outside the utterance, non-UTF-8 bytes. MultiWOZ 2.0/2.1 files (a mapping of
dialogue id to ``log``) are recognised and refused with a pointer to MultiWOZ 2.2, which is
distributed in SGD format.

The outline (COD, Majewska et al., 2023) turns every dialogue act into an English instruction from
the templates in ``prompts/cod/outline.v1.yaml`` and the schema's descriptions, e.g.
``The user wants to search for one-way flights to the destination of choice. The user says that the
city in which the journey originates is "Mexico City".`` Quoted values are the ones a generated turn must repeat
verbatim (non-categorical slots, as SGD spans them); categorical values are given unquoted.

Example::

    from synth.sources.sgd import OutlineTemplates, load_schema, read_dialogues, render_outline

    schemas = load_schema("data/sgd/schema.json")
    dialogue = next(read_dialogues("data/sgd/dialogues.json", schemas))
    for line in render_outline(dialogue, schemas, OutlineTemplates.load()):
        print(line)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NoReturn

import yaml

from synth.errors import ConfigError, InputError
from synth.paths import PROMPTS_DIR

USER_ACTS = (
    "INFORM_INTENT", "NEGATE_INTENT", "AFFIRM_INTENT", "INFORM", "REQUEST", "AFFIRM", "NEGATE",
    "SELECT", "REQUEST_ALTS", "THANK_YOU", "GOODBYE",
)  # fmt: skip
SYSTEM_ACTS = (
    "INFORM", "REQUEST", "CONFIRM", "OFFER", "NOTIFY_SUCCESS", "NOTIFY_FAILURE", "INFORM_COUNT",
    "OFFER_INTENT", "REQ_MORE", "GOODBYE",
)  # fmt: skip
# Every act of the SGD paper (Table 6); an act outside this list cannot be rendered, so loading refuses it.
ACTS: tuple[str, ...] = tuple(dict.fromkeys(USER_ACTS + SYSTEM_ACTS))
# Acts whose ``slot`` is a schema slot (values optional) and acts whose ``slot`` is the pseudo-slot "intent".
SLOT_ACTS = frozenset({"INFORM", "REQUEST", "CONFIRM", "OFFER", "INFORM_COUNT", "SELECT"})
INTENT_ACTS = frozenset(
    {"INFORM_INTENT", "NEGATE_INTENT", "AFFIRM_INTENT", "OFFER_INTENT", "NOTIFY_SUCCESS", "NOTIFY_FAILURE"}
)
INTENT_SLOT = "intent"
COUNT_SLOT = "count"
DONTCARE = "dontcare"
SPEAKERS = ("USER", "SYSTEM")


@dataclass(frozen=True)
class SlotSchema:
    name: str
    description: str
    is_categorical: bool
    possible_values: tuple[str, ...]


@dataclass(frozen=True)
class IntentSchema:
    name: str
    description: str


@dataclass(frozen=True)
class ServiceSchema:
    name: str
    description: str
    slots: Mapping[str, SlotSchema]
    intents: Mapping[str, IntentSchema]


Schemas = dict[str, ServiceSchema]


@dataclass(frozen=True)
class SlotValue:
    """A value a turn must repeat verbatim: non-categorical slot of ``frame`` (SGD spans exactly these)."""

    frame: int
    slot: str
    canonical: str
    surface: str


# -- reading ------------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """Parse a UTF-8 JSON file (a BOM is tolerated); InputError on unreadable, non-UTF-8 or invalid JSON."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror}", file=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8: byte {raw[exc.start : exc.start + 1]!r} at offset {exc.start}", file=str(path)
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", file=str(path)
        ) from None


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def load_schema(path: str | Path) -> Schemas:
    """Read an SGD schema file into ``{service_name: ServiceSchema}``."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of SGD service schemas, got {type(data).__name__}", file=str(path))
    schemas: Schemas = {}
    for index, entry in enumerate(data):
        service = _service_schema(entry, partial(InputError, file=str(path), row=index))
        if service.name in schemas:
            raise InputError(
                f"service {service.name!r} is defined twice", file=str(path), row=index, field="service_name"
            )
        schemas[service.name] = service
    return schemas


def _service_schema(entry: Any, error: Callable[..., InputError]) -> ServiceSchema:
    """One schema entry; ``error(message, field=...)`` builds the InputError to raise."""
    if not isinstance(entry, dict):
        raise error(f"expected an object, got {type(entry).__name__}", field=None)
    name = entry.get("service_name")
    if not _text(name) or not name:
        raise error("missing service name", field="service_name")
    for key in ("slots", "intents"):
        if not isinstance(entry.get(key), list):
            raise error(f"service {name!r}: expected a list", field=key)
    slots: dict[str, SlotSchema] = {}
    for i, slot in enumerate(entry["slots"]):
        if not isinstance(slot, dict) or not _text(slot.get("name")) or not slot["name"]:
            raise error(f"service {name!r}: slot without a name", field=f"slots[{i}].name")
        if not _str_list(slot.get("possible_values", [])):
            raise error(f"service {name!r}: expected a list of strings", field=f"slots[{i}].possible_values")
        slots[slot["name"]] = SlotSchema(
            name=slot["name"],
            description=str(slot.get("description") or slot["name"].replace("_", " ")),
            is_categorical=bool(slot.get("is_categorical", False)),
            possible_values=tuple(slot.get("possible_values", [])),
        )
    intents: dict[str, IntentSchema] = {}
    for i, intent in enumerate(entry["intents"]):
        if not isinstance(intent, dict) or not _text(intent.get("name")) or not intent["name"]:
            raise error(f"service {name!r}: intent without a name", field=f"intents[{i}].name")
        intents[intent["name"]] = IntentSchema(intent["name"], str(intent.get("description") or intent["name"]))
    return ServiceSchema(name, str(entry.get("description") or ""), slots, intents)


def default_schema_path(dialogues: str | Path) -> Path:
    """``schema.json`` beside the dialogue file, or inside the dialogue folder (SGD's own layout)."""
    path = Path(dialogues)
    return path / "schema.json" if path.is_dir() else path.parent / "schema.json"


def dialogue_files(path: str | Path) -> list[Path]:
    """The dialogue files of ``path``: the file itself, or every ``*.json`` of a folder except ``schema.json``."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.glob("*.json") if p.name != "schema.json")
    if not files:
        raise InputError("no SGD dialogue files (*.json besides schema.json) in this folder", file=str(path))
    return files


def read_dialogues(path: str | Path, schemas: Schemas, *, schema_file: str = "the schema") -> Iterator[dict[str, Any]]:
    """Yield the validated dialogues of an SGD file or folder, in file order; dialogue ids must be unique."""
    seen: dict[str, str] = {}
    for file in dialogue_files(path):
        data = read_json(file)
        if isinstance(data, dict):
            raise InputError(_dict_format_message(data), file=str(file))
        if not isinstance(data, list):
            raise InputError(f"expected a JSON list of SGD dialogues, got {type(data).__name__}", file=str(file))
        for index, dialogue in enumerate(data):
            _DialogueCheck(str(file), index, schemas, schema_file).check(dialogue)
            dialogue_id = dialogue["dialogue_id"]
            if dialogue_id in seen:
                raise InputError(
                    f"dialogue {dialogue_id!r} appears twice (first in {seen[dialogue_id]})",
                    file=str(file),
                    row=index,
                    field="dialogue_id",
                )
            seen[dialogue_id] = str(file)
            yield dialogue


def _dict_format_message(data: dict[str, Any]) -> str:
    first = next(iter(data.values()), None)
    if isinstance(first, dict) and "log" in first:
        return (
            "unsupported format: MultiWOZ 2.0/2.1 (dialogue id -> 'log'); convert it to SGD first: MultiWOZ 2.2 "
            "(github.com/budzianowski/multiwoz, data/MultiWOZ_2.2) is released in SGD format with its dialogue acts in "
            "dialog_acts.json, which go into each frame's 'actions'"
        )
    return "expected a JSON list of SGD dialogues, got an object"


class _DialogueCheck:
    """Validation of one dialogue; every failure names the JSON path of the offending field."""

    def __init__(self, file: str, index: int, schemas: Schemas, schema_file: str):
        self.file, self.index, self.schemas, self.schema_file = file, index, schemas, schema_file
        self.dialogue_id = f"#{index}"

    def fail(self, message: str, field: str) -> NoReturn:
        raise InputError(
            f"dialogue {self.dialogue_id!r}: {message}", file=self.file, row=self.index, field=field or None
        )

    def check(self, dialogue: Any) -> None:
        if not isinstance(dialogue, dict):
            self.fail(f"expected an object, got {type(dialogue).__name__}", "")
        if not _text(dialogue.get("dialogue_id")) or not dialogue["dialogue_id"]:
            self.fail("missing 'dialogue_id'", "dialogue_id")
        self.dialogue_id = dialogue["dialogue_id"]
        for i, service in enumerate(dialogue.get("services") or []):
            if service not in self.schemas:
                self.fail(f"unknown service {service!r} (not in {self.schema_file})", f"services[{i}]")
        turns = dialogue.get("turns")
        if not isinstance(turns, list) or not turns:
            self.fail("missing 'turns' (a non-empty list)", "turns")
        for t, turn in enumerate(turns):
            self._turn(turn, f"turns[{t}]")

    def _turn(self, turn: Any, at: str) -> None:
        if not isinstance(turn, dict):
            self.fail("expected an object", at)
        if turn.get("speaker") not in SPEAKERS:
            self.fail(f"speaker must be USER or SYSTEM, got {turn.get('speaker')!r}", f"{at}.speaker")
        if not _text(turn.get("utterance")):
            self.fail("missing 'utterance'", f"{at}.utterance")
        frames = turn.get("frames")
        if not isinstance(frames, list):
            self.fail("missing 'frames' (a list)", f"{at}.frames")
        for f, frame in enumerate(frames):
            self._frame(frame, turn["utterance"], f"{at}.frames[{f}]")

    def _frame(self, frame: Any, utterance: str, at: str) -> None:
        if not isinstance(frame, dict):
            self.fail("expected an object", at)
        service = frame.get("service")
        if service not in self.schemas:
            self.fail(f"unknown service {service!r} (not in {self.schema_file})", f"{at}.service")
        schema = self.schemas[service]
        actions = frame.get("actions")
        if not isinstance(actions, list):
            self.fail("missing 'actions' (a list)", f"{at}.actions")
        for a, action in enumerate(actions):
            self._action(action, schema, f"{at}.actions[{a}]")
        spans = frame.get("slots", [])
        if not isinstance(spans, list):
            self.fail("expected a list", f"{at}.slots")
        for s, span in enumerate(spans):
            self._span(span, schema, utterance, f"{at}.slots[{s}]")
        if frame.get("state") is not None:
            self._state(frame["state"], schema, f"{at}.state")

    def _slot(self, slot: Any, schema: ServiceSchema, field: str) -> None:
        if slot not in schema.slots:
            self.fail(f"slot {slot!r} is not in service {schema.name!r} of {self.schema_file}", field)

    def _action(self, action: Any, schema: ServiceSchema, at: str) -> None:
        if not isinstance(action, dict):
            self.fail("expected an object", at)
        act = action.get("act")
        if act not in ACTS:
            self.fail(f"unknown act {act!r}; SGD acts: {', '.join(ACTS)}", f"{at}.act")
        for key in ("values", "canonical_values"):
            if not _str_list(action.get(key, [])):
                self.fail("expected a list of strings", f"{at}.{key}")
        slot, values = action.get("slot", ""), action.get("values", [])
        if not _text(slot):
            self.fail("expected a string", f"{at}.slot")
        if slot == INTENT_SLOT and act in INTENT_ACTS:
            for value in values:
                if value not in schema.intents:
                    self.fail(
                        f"intent {value!r} is not in service {schema.name!r} of {self.schema_file}", f"{at}.values"
                    )
        elif slot == COUNT_SLOT and act == "INFORM_COUNT":
            pass
        elif slot and act in SLOT_ACTS:
            self._slot(slot, schema, f"{at}.slot")
        elif slot or (values and act not in INTENT_ACTS):
            self.fail(f"act {act} takes no slot or values here (slot {slot!r})", f"{at}.slot")

    def _span(self, span: Any, schema: ServiceSchema, utterance: str, at: str) -> None:
        if not isinstance(span, dict):
            self.fail("expected an object", at)
        self._slot(span.get("slot"), schema, f"{at}.slot")
        start, end = span.get("start"), span.get("exclusive_end")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            self.fail("'start' and 'exclusive_end' must be integers", at)
        if not 0 <= start < end <= len(utterance):
            self.fail(f"span [{start}, {end}) is outside the utterance ({len(utterance)} characters)", at)

    def _state(self, state: Any, schema: ServiceSchema, at: str) -> None:
        if not isinstance(state, dict):
            self.fail("expected an object", at)
        intent = state.get("active_intent", "NONE")
        if intent != "NONE" and intent not in schema.intents:
            self.fail(
                f"intent {intent!r} is not in service {schema.name!r} of {self.schema_file}", f"{at}.active_intent"
            )
        for slot in state.get("requested_slots", []):
            self._slot(slot, schema, f"{at}.requested_slots")
        slot_values = state.get("slot_values", {})
        if not isinstance(slot_values, dict):
            self.fail("expected an object", f"{at}.slot_values")
        for slot, values in slot_values.items():
            self._slot(slot, schema, f"{at}.slot_values.{slot}")
            if not _str_list(values):
                self.fail("expected a list of strings", f"{at}.slot_values.{slot}")


# -- values ----------------------------------------------------------------------------------------------


def value_pairs(action: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(surface, canonical)`` of each value; the surface stands in where SGD gives no canonical value."""
    values = list(action.get("values", []))
    canonical = list(action.get("canonical_values") or [])
    return [(value, canonical[i] if i < len(canonical) else value) for i, value in enumerate(values)]


def is_verbatim(schema: ServiceSchema, slot: str, value: str) -> bool:
    """Whether a turn must repeat the value word for word: non-categorical schema slots, as SGD spans them."""
    spec = schema.slots.get(slot)
    return spec is not None and not spec.is_categorical and value != DONTCARE


def turn_values(turn: Mapping[str, Any], schemas: Schemas) -> list[SlotValue]:
    """The verbatim values of a turn's actions, once per (frame, slot, value)."""
    seen: dict[tuple[int, str, str], SlotValue] = {}
    for f, frame in enumerate(turn["frames"]):
        schema = schemas[frame["service"]]
        for action in frame["actions"]:
            for surface, canonical in value_pairs(action):
                if is_verbatim(schema, action.get("slot", ""), canonical):
                    seen.setdefault((f, action["slot"], canonical), SlotValue(f, action["slot"], canonical, surface))
    return list(seen.values())


def dialogue_services(dialogue: Mapping[str, Any]) -> list[str]:
    """The dialogue's ``services``, or the services of its frames in order of appearance."""
    if dialogue.get("services"):
        return list(dialogue["services"])
    return list(dict.fromkeys(frame["service"] for turn in dialogue["turns"] for frame in turn["frames"]))


def truncate(dialogue: dict[str, Any], max_turns: int | None) -> dict[str, Any]:
    """The dialogue with only its first ``max_turns`` turns (all when ``None``)."""
    if max_turns is None or len(dialogue["turns"]) <= max_turns:
        return dialogue
    return {**dialogue, "turns": dialogue["turns"][:max_turns]}


# -- outline ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActTemplate:
    """How one act reads: ``plain`` without slots, ``items`` with a list of rendered ``item``s."""

    plain: str | None = None
    items: str | None = None
    item: str | None = None
    no_value: str | None = None
    dontcare: str | None = None


@dataclass(frozen=True)
class OutlineTemplates:
    """The outline templates of ``prompts/cod/outline.<version>.yaml`` (see the file for the fields)."""

    name: str
    version: str
    speakers: Mapping[str, str]
    quote: str
    separator: str
    last_separator: str
    alternative: str
    value_words: Mapping[str, str]
    unknown_intent: str
    no_acts: str
    order: tuple[str, ...]
    acts: Mapping[str, ActTemplate]

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def load(cls, relative: str = "cod/outline.v1.yaml") -> "OutlineTemplates":
        return _load_outline_templates(relative)


@lru_cache(maxsize=8)
def _load_outline_templates(relative: str) -> OutlineTemplates:
    path = PROMPTS_DIR / relative
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        acts = {act: ActTemplate(**spec) for act, spec in data.pop("acts").items()}
        order = tuple(data.pop("order"))
        templates = OutlineTemplates(name=relative.removesuffix(".yaml"), acts=acts, order=order, **data)
    except OSError:
        raise ConfigError("outline templates not found", file=str(path)) from None
    except (TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(f"bad outline templates ({exc})", file=str(path)) from None
    for act in ACTS:
        spec = acts.get(act)
        # Every act must render, with the forms its SGD usage needs: slot acts list items, the rest read plainly.
        needs_items = act in SLOT_ACTS
        if spec is None or (needs_items and not (spec.items and spec.item)) or (not needs_items and not spec.plain):
            raise ConfigError(f"no complete template for act {act}", file=str(path), field=f"acts.{act}")
    return templates


def _lower_first(text: str) -> str:
    """Lower-case a description's first letter so it reads inside a sentence, unless it starts an acronym.

    A leading "The" goes: the templates supply their own article ("the {slot}")."""
    text = text.strip().rstrip(".")
    if text[:4].lower() == "the ":
        text = text[4:]
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def render_outline(
    dialogue: Mapping[str, Any],
    schemas: Schemas,
    templates: OutlineTemplates,
    values: Mapping[str, str] | None = None,
) -> list[str]:
    """One English instruction per turn. ``values`` maps canonical values to the text to quote (localized
    values); values not in it are quoted as they appear in the source turn."""
    values = values or {}
    offered: dict[str, str] = {}  # service -> intent last offered (AFFIRM_/NEGATE_INTENT refer back to it)
    active: dict[str, str] = {}  # service -> the user's active intent (NOTIFY_* report on it)
    outline = []
    for turn in dialogue["turns"]:
        speaker = templates.speakers[turn["speaker"]]
        sentences: list[str] = []
        for frame in turn["frames"]:
            schema = schemas[frame["service"]]
            call = frame.get("service_call") or {}
            if call.get("method") in schema.intents:
                active[schema.name] = call["method"]
            state_intent = (frame.get("state") or {}).get("active_intent")
            if state_intent in schema.intents:
                active[schema.name] = state_intent
            grouped: dict[str, list[Mapping[str, Any]]] = {}
            for action in frame["actions"]:
                grouped.setdefault(action["act"], []).append(action)
            rank = {act: i for i, act in enumerate(templates.order)}
            for act, actions in sorted(grouped.items(), key=lambda item: rank.get(item[0], len(rank))):
                sentences.append(_render_act(act, actions, schema, speaker, templates, values, offered, active))
        outline.append(" ".join(_capitalize(s) for s in sentences) or templates.no_acts.format(speaker=speaker))
    return outline


def _render_act(
    act: str,
    actions: list[Mapping[str, Any]],
    schema: ServiceSchema,
    speaker: str,
    templates: OutlineTemplates,
    values: Mapping[str, str],
    offered: dict[str, str],
    active: dict[str, str],
) -> str:
    spec = templates.acts[act]
    if act in INTENT_ACTS:
        named = [canonical for action in actions for _, canonical in value_pairs(action)]
        if act == "OFFER_INTENT" and named:
            offered[schema.name] = named[-1]
        if act == "INFORM_INTENT" and named:
            active[schema.name] = named[-1]
        if not named:
            fallback = (
                offered.get(schema.name) if act in ("AFFIRM_INTENT", "NEGATE_INTENT") else active.get(schema.name)
            )
            named = [fallback] if fallback else []
        intent = _join(
            [_lower_first(schema.intents[name].description) for name in named], templates, templates.last_separator
        )
        return spec.plain.format(speaker=speaker, intent=intent or templates.unknown_intent)
    items = [_render_item(action, spec, schema, templates, values) for action in actions if action.get("slot")]
    if items and spec.items:
        return spec.items.format(speaker=speaker, items=_join(items, templates, templates.last_separator))
    return spec.plain.format(speaker=speaker)


def _render_item(
    action: Mapping[str, Any],
    spec: ActTemplate,
    schema: ServiceSchema,
    templates: OutlineTemplates,
    values: Mapping[str, str],
) -> str:
    slot = action["slot"]
    slot_text = _lower_first(schema.slots[slot].description) if slot in schema.slots else slot.replace("_", " ")
    pairs = value_pairs(action)
    if not pairs:
        return (spec.no_value or spec.item).format(slot=slot_text, value="")
    if all(canonical == DONTCARE for _, canonical in pairs) and spec.dontcare:
        return spec.dontcare.format(slot=slot_text)
    shown = []
    for surface, canonical in pairs:
        if is_verbatim(schema, slot, canonical):
            shown.append(templates.quote.format(value=values.get(canonical, surface)))
        elif slot == COUNT_SLOT:
            shown.append(values.get(canonical, canonical))
        else:
            # Categorical values are meant to be paraphrased in the target language, so they go unquoted.
            shown.append(templates.value_words.get(canonical, canonical))
    return spec.item.format(slot=slot_text, value=_join(shown, templates, templates.alternative))


def _join(parts: list[str], templates: OutlineTemplates, last: str) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return templates.separator.join(parts[:-1]) + last + parts[-1]
