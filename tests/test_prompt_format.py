"""``engine.prompt_format``: completion (one few-shot text) or chat (system + exemplar turns through the chat template).

The fast tests render every recipe's requests in both forms with a recording engine, resolve ``auto``, compare row
fingerprints and generation keys, and switch a run's form on the same output (a scripted engine). The slow ones send
both forms to the real in-process engine and to a real ``vllm serve`` of the tiny test model and check, token by
token, that a chat request went through the model's chat template.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from llm_fixtures import vllm_server  # noqa: F401  (module-scoped: a vllm serve of the tiny test model)

os.environ["HF_HUB_OFFLINE"] = "1"

import synth.llm  # noqa: E402
from synth.config import EngineConfig, LidConfig  # noqa: E402
from synth.config_file import load_config
from synth.filters.lid import LanguageIdentifier  # noqa: E402
from synth.llm.base import Result, Usage  # noqa: E402
from synth.llm.prompt_format import model_prompt_format, resolve_prompt_format  # noqa: E402
from synth.paths import DATA_DIR, PROMPTS_DIR  # noqa: E402
from synth.pipeline import run_recipe  # noqa: E402
from synth.prompts import load_template, template_path  # noqa: E402
from synth.recipes.cod.recipe import CodRecipe  # noqa: E402
from synth.recipes.entitycs.recipe import EntityCSRecipe  # noqa: E402
from synth.recipes.sap.recipe import SapRecipe, cross_lingual_exemplars  # noqa: E402
from synth.store.units import _files_digest, generation_key, row_fingerprint  # noqa: E402

SAMPLE = DATA_DIR / "samples" / "wiki_passages.jsonl"
CONFIGS = DATA_DIR / "configs"
GERMAN_QUESTION = " Welche Stadt ist die Hauptstadt von Deutschland?"


class RecordingEngine:
    """Answers every request with a fixed German question (every candidate); keeps the requests it got."""

    model_name = "recording"

    def __init__(self, text: str = GERMAN_QUESTION):
        self.text = text
        self.requests = []

    def generate(self, requests):
        self.requests += requests
        return [
            Result(r.id, texts=[self.text] * r.sampling.n, finish_reasons=["stop"] * r.sampling.n, prompt_tokens=9)
            for r in requests
        ]

    def close(self):
        pass


@pytest.fixture(scope="module")
def lid():
    return LanguageIdentifier(LidConfig())


def sap_config(tmp_path: Path, form: str, **overrides):
    values = {
        "input.path": str(SAMPLE),
        "input.limit": 2,
        "languages": ["de", "hi"],
        "engine.prompt_format": form,
        "sampling.candidates": 1,
        "output.dir": str(tmp_path / "out"),
        **overrides,
    }
    return load_config(CONFIGS / "sap.yaml", overrides=values)


def roles(messages) -> list[str]:
    return [m["role"] for m in messages]


# -- auto ------------------------------------------------------------------------------------------------------------


def write_model_dir(path: Path, chat_template: str | None) -> Path:
    path.mkdir(parents=True)
    tokenizer = {"bos_token": "<bos>"} | ({"chat_template": chat_template} if chat_template else {})
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    (path / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    return path


def test_auto_picks_completion_for_the_shipped_base_model():
    from llm_fixtures import tiny_test_model_path

    assert resolve_prompt_format(EngineConfig()) == "completion"  # Gemma 3 270M base: measured, see README
    # The tiny model's tokenizer has the Gemma chat template the base model was given, but nothing says instruct.
    tiny = tiny_test_model_path()
    assert (tiny / "chat_template.jinja").is_file() or "chat_template" in (tiny / "tokenizer_config.json").read_text()
    assert resolve_prompt_format(EngineConfig(model=str(tiny))) == "completion"
    # An explicit form wins over the model.
    assert resolve_prompt_format(EngineConfig(prompt_format="chat")) == "chat"
    assert resolve_prompt_format(EngineConfig(model=str(tiny), prompt_format="chat")) == "chat"


def test_auto_picks_chat_for_an_instruction_tuned_model_with_a_chat_template(tmp_path):
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    instruct = write_model_dir(tmp_path / "gemma-3-270m-it", template)
    assert resolve_prompt_format(EngineConfig(model=str(instruct))) == "chat"
    assert resolve_prompt_format(EngineConfig(model=str(instruct), prompt_format="completion")) == "completion"
    # Both conditions are needed: an -it name without a chat template, a chat template without an instruct name.
    assert model_prompt_format(str(write_model_dir(tmp_path / "Qwen2.5-0.5B-Instruct", None))) == "completion"
    assert model_prompt_format(str(write_model_dir(tmp_path / "gemma-3-270m", template))) == "completion"
    # The chat template may sit in its own file, as transformers now saves it.
    own_file = write_model_dir(tmp_path / "SmolLM2-135M-chat", None)
    (own_file / "chat_template.jinja").write_text(template)
    assert model_prompt_format(str(own_file)) == "chat"
    # Names of models that are not local folders (HF ids, an openai server's models) are judged by the name alone.
    assert model_prompt_format("google/gemma-3-1b-IT") == "chat"
    assert model_prompt_format("meta-llama/Llama-2-7b-chat-hf") == "chat"
    assert model_prompt_format("dbmdz/bert-base-italian-cased") == "completion"  # "it" inside a word is no marker


# -- what each recipe sends --------------------------------------------------------------------------------------------


# Every template a recipe sends to the model (the COD outline templates only write English instructions).
MODEL_TEMPLATES = [
    "sap/summary.v1.yaml",
    "sap/query_crosslingual.v1.yaml",
    "sap/query_monolingual.v1.yaml",
    "sap/query_zeroshot.v1.yaml",
    "cod/turn.v1.yaml",
    "cod/localize_value.v1.yaml",
    "entitycs/label_fallback.v1.yaml",
    "entitycs/inflection_repair.v1.yaml",
]


@pytest.mark.parametrize("relative", MODEL_TEMPLATES)
def test_every_model_template_has_a_chat_form_with_its_own_tag(relative):
    completion, chat = load_template(relative), load_template(relative, form="chat")
    assert not completion.chat and chat.chat and chat.request
    assert chat.name == template_path(relative, "chat").removesuffix(".yaml") == completion.name.replace(".v1", ".chat.v1")
    assert chat.tag != completion.tag
    assert (PROMPTS_DIR / template_path(relative, "chat")).is_file()


def test_sap_chat_requests_are_system_exemplar_turns_and_a_user_turn(tmp_path, lid):
    engine = RecordingEngine()
    recipe = SapRecipe(sap_config(tmp_path, "chat"), engine, lid)
    records = list(recipe.read_records())
    rows = recipe.process(records, Usage())
    assert all(r.prompt is None and r.messages for r in engine.requests)
    assert recipe.prompt_version == "sap/summary.chat.v1@v1+sap/query_crosslingual.chat.v1@v1"

    by_id = {r.id: r.messages for r in engine.requests}
    summary = by_id[f"{records[0]['source_id']}/summary"]
    shots = cross_lingual_exemplars()["de"][:5]
    assert roles(summary) == ["system"] + ["user", "assistant"] * len(shots) + ["user"]
    assert [m["content"] for m in summary[2:-1:2]] == [e.summary for e in shots]  # answers are assistant turns
    assert summary[-1]["content"] == f"Article: {records[0]['text']}"

    german = [by_id[f"{record['source_id']}/query/de"] for record in records]
    hindi = by_id[f"{records[0]['source_id']}/query/hi"]
    assert "German" in german[0][0]["content"] and "Hindi" in hindi[0]["content"]
    assert german[0][:-1] == german[1][:-1]  # the few-shot turns are identical across a language's requests
    assert german[0][-1] != german[1][-1] and german[0][:-1] != hindi[:-1]
    assert [m["content"] for m in german[0][2:-1:2]] == [e.question for e in cross_lingual_exemplars()["de"][:5]]
    assert {row["reject_reason"] for row in rows if row["lang"] == "de"} == {None}  # the answer is parsed as before


def test_completion_requests_stay_one_text(tmp_path, lid):
    engine = RecordingEngine()
    recipe = SapRecipe(sap_config(tmp_path, "completion"), engine, lid)
    recipe.process(list(recipe.read_records()), Usage())
    assert all(r.messages is None and r.prompt for r in engine.requests)
    assert recipe.prompt_version == "sap/summary.v1@v1+sap/query_crosslingual.v1@v1"
    query = next(r for r in engine.requests if r.id.endswith("/query/de"))
    assert query.prompt.startswith(recipe.query_prefix("de")) and query.prompt.endswith("Question in German:")


def test_cod_chat_turns_grow_one_exchange_at_a_time(lid):
    config = load_config(
        CONFIGS / "cod.yaml",
        overrides={"languages": ["ru"], "cod.max_turns": 3, "sampling.candidates": 1, "engine.prompt_format": "chat"},
    )
    engine = RecordingEngine(" Здравствуйте!")
    recipe = CodRecipe(config, engine, lid)
    recipe.validate()
    recipe.process(list(recipe.read_records())[:1], Usage())
    assert recipe.prompt_version == "cod/outline.v1@v1+cod/turn.chat.v1@v1+cod/localize_value.chat.v1@v1"
    assert all(r.prompt is None for r in engine.requests)
    turns = [r.messages for r in engine.requests if "/turn" in r.id and r.id.endswith("/try1")]
    assert len(turns) >= 2
    assert turns[1][: len(turns[0])] == turns[0]  # a dialogue's messages only grow: the prefix cache serves them
    new_dialogue = turns[0][-1]["content"]
    assert new_dialogue.startswith("New dialogue.\nInstruction: ") and "Russian" in turns[0][0]["content"]
    assert turns[1][len(turns[0])] == {"role": "assistant", "content": "Здравствуйте!"}
    localize = [r.messages for r in engine.requests if r.id.startswith("cod/localize/")]
    assert all(roles(m)[0] == "system" and roles(m)[-1] == "user" for m in localize)


def test_entitycs_llm_passes_send_chat_turns(lid):
    config = load_config(
        CONFIGS / "entitycs.yaml",
        overrides={
            "languages": ["de", "hi", "ja"],
            "entitycs.llm_inflection_repair": True,
            "entitycs.llm_label_fallback": True,
            "engine.prompt_format": "chat",
        },
    )
    engine = RecordingEngine(" Bulgarisch")
    recipe = EntityCSRecipe(config, engine, lid)
    recipe.validate()
    recipe.process(list(recipe.read_records())[:6], Usage())
    assert recipe.prompt_version == "entitycs/v1+entitycs/label_fallback.chat.v1@v1+entitycs/inflection_repair.chat.v1@v1"
    assert engine.requests and all(r.prompt is None for r in engine.requests)
    repair = engine.requests[0].messages
    assert roles(repair)[0] == "system" and repair[-1]["content"].startswith("Language: ")
    assert [m["content"] for m in repair if m["role"] == "assistant"][:2] == ["Italiener", "немцы"]


# -- identity: the two forms never share units or answers ----------------------------------------------------------------


def test_forms_have_their_own_fingerprints_and_generation_keys(tmp_path, lid):
    completion, chat = sap_config(tmp_path, "completion"), sap_config(tmp_path, "chat")
    recipes = [SapRecipe(c, None, None) for c in (completion, chat)]
    prints = [row_fingerprint(c, "m", r.resources()) for c, r in zip((completion, chat), recipes)]
    assert prints[0] != prints[1]
    # Completion runs do not see the chat templates: the fingerprint is that of the folder without them, i.e. what
    # it was before chat templates existed.
    assert not any(".chat." in p.name for p in recipes[0].resources())
    without_chat = tmp_path / "sap"
    shutil.copytree(PROMPTS_DIR / "sap", without_chat, ignore=shutil.ignore_patterns("*.chat.*"))
    assert _files_digest(recipes[0].resources()) == _files_digest([without_chat])
    assert _files_digest(recipes[1].resources()) != _files_digest([without_chat])

    requests = []
    for config in (completion, chat):
        engine = RecordingEngine()
        recipe = SapRecipe(config, engine, lid)
        recipe.process(list(recipe.read_records())[:1], Usage())
        requests.append({r.id: r for r in engine.requests})
    assert requests[0].keys() == requests[1].keys()  # the same request ids (hence seeds)...
    for request_id, request in requests[0].items():  # ...never the same stored generation
        assert generation_key("m", request) != generation_key("m", requests[1][request_id])


def published_rows(out: Path) -> list[dict]:
    state = json.loads((out / "manifest.json").read_text())["recipes"]["sap"]
    return [row for shard in state["shards"] for row in pq.read_table(out / shard["path"]).to_pylist()]


def test_switching_completion_to_chat_on_the_same_output_reuses_no_answer(tmp_path, monkeypatch):
    from llm_fixtures import tiny_test_model_path

    engine = RecordingEngine()
    monkeypatch.setattr(synth.llm, "get_engine", lambda config: engine)
    model = str(tiny_test_model_path())  # only its name is used: the engine is scripted
    first = run_recipe(sap_config(tmp_path, "completion", **{"engine.model": model}))
    assert first.usage["calls"] == 6 and first.usage["reused"] == 0  # 2 summaries + 2 x 2 questions
    assert {row["prompt_version"] for row in published_rows(tmp_path / "out")} == {
        "sap/summary.v1@v1+sap/query_crosslingual.v1@v1"
    }

    engine.requests.clear()
    switched = run_recipe(sap_config(tmp_path, "chat", **{"engine.model": model}))
    assert switched.units_generated == switched.units_total == 2  # every unit again, none taken as done
    assert switched.usage["reused"] == 0 and switched.usage["calls"] == 6  # no stored completion answer served
    assert len(engine.requests) == 6 and all(r.messages for r in engine.requests)
    assert {row["prompt_version"] for row in published_rows(tmp_path / "out")} == {
        "sap/summary.chat.v1@v1+sap/query_crosslingual.chat.v1@v1"
    }

    # The control: stored answers are reused across runs of one form (a new LID threshold makes new units).
    engine.requests.clear()
    again = run_recipe(sap_config(tmp_path, "chat", **{"engine.model": model, "lid.threshold": 0.4}))
    assert again.units_generated == 2 and again.usage["reused"] == 6 and engine.requests == []


# -- the real engines ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from llm_fixtures import tiny_test_model_path

    return AutoTokenizer.from_pretrained(str(tiny_test_model_path()))


def templated_ids(tokenizer, messages) -> list[int]:
    """The token ids of ``messages`` through the tokenizer's chat template, with the generation prompt."""
    encoded = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(encoded["input_ids"])


@pytest.mark.slow  # the in-process engine starts in ~20 s (minutes on a loaded machine)
def test_in_process_engine_renders_chat_through_the_template(tmp_path, monkeypatch, tokenizer):
    import synth.llm.vllm_engine as vllm_engine
    from llm_fixtures import tiny_test_model_path

    seen: dict[str, list[int]] = {}
    real_result = vllm_engine._result

    def spy(request, output, latency_s):
        seen[request.id] = list(output.prompt_token_ids)
        return real_result(request, output, latency_s)

    monkeypatch.setattr(vllm_engine, "_result", spy)
    model = {"engine.model": str(tiny_test_model_path()), "engine.max_model_len": 4096, "languages": ["de"]}
    out = tmp_path / "out"
    try:
        completion = run_recipe(sap_config(tmp_path, "completion", **model))
        completion_ids = dict(seen)
        seen.clear()
        chat = run_recipe(sap_config(tmp_path, "chat", **model))
    finally:
        synth.llm.close_engines()
    # The tiny model writes noise: a summary may come back empty, and then its passage asks no question.
    assert completion.usage["calls"] == len(completion_ids) >= 2 and chat.usage["calls"] == len(seen) >= 2
    assert chat.usage["reused"] == 0  # none of the completion run's stored answers
    start = tokenizer.convert_tokens_to_ids("<start_of_turn>")

    for request_id, ids in completion_ids.items():  # a plain text: <bos> and the few-shot prompt, no turn markers
        assert ids[0] == tokenizer.bos_token_id and start not in ids, request_id
    recipe = SapRecipe(sap_config(tmp_path, "chat", **model), None, None)
    for record in list(recipe.read_records())[:2]:  # input.limit: 2
        request = recipe.summary_request(record)
        ids = seen[request.id]
        assert ids[:2] == [tokenizer.bos_token_id, start]  # <bos><start_of_turn>user ...
        text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert text.startswith("<bos><start_of_turn>user\n" + request.messages[0]["content"] + "\n\nArticle: ")
        assert text.endswith(f"Article: {record['text']}<end_of_turn>\n<start_of_turn>model\n")
        assert text.count("<start_of_turn>model\n") == 6  # 5 exemplar answers + the generation prompt
        assert ids == templated_ids(tokenizer, request.messages)  # exactly the template's rendering, token for token
    assert {ids[ids.index(start) + 1] for ids in seen.values()} == {tokenizer.convert_tokens_to_ids("user")}
    generation_prompt = tokenizer.encode("<start_of_turn>model\n", add_special_tokens=False)
    assert all(ids[-len(generation_prompt) :] == generation_prompt for ids in seen.values())
    versions = {row["prompt_version"] for row in published_rows(out)}
    assert versions == {"sap/summary.chat.v1@v1+sap/query_crosslingual.chat.v1@v1"}


@pytest.mark.slow  # starts a vllm server of the tiny model (a minute or more on CPU)
def test_both_forms_through_vllm_serve(vllm_server, tmp_path, lid, tokenizer):  # noqa: F811
    from synth.llm.openai_engine import OpenAIEngine

    engine_config = EngineConfig(backend="openai", base_urls=[vllm_server.url], timeout_s=120, max_retries=1)
    engine = OpenAIEngine(engine_config)
    try:
        for form in ("completion", "chat"):
            recorder = RecordingEngine()
            recorder.generate = _recording(engine, recorder)  # the server answers; we keep requests and results
            config = sap_config(tmp_path, form, languages=["de"])
            recipe = SapRecipe(config, recorder, lid)
            rows = recipe.process(list(recipe.read_records())[:2], Usage())
            assert len(rows) == 2 and all(row["reject_reason"] != "engine_error" for row in rows)
            for request, result in recorder.pairs:
                assert result.ok, result.error
                if form == "chat":
                    assert request.prompt is None
                    # the server's prompt is the chat template's rendering, token for token
                    expected = templated_ids(tokenizer, request.messages)
                    assert result.prompt_tokens == len(expected)
                    assert len(expected) > len(tokenizer("".join(m["content"] for m in request.messages)).input_ids)
                else:
                    assert request.messages is None
                    assert result.prompt_tokens == len(tokenizer(request.prompt).input_ids)
            assert (".chat." in recipe.prompt_version) == (form == "chat")
    finally:
        engine.close()


def _recording(engine, recorder):
    recorder.pairs = []

    def generate(requests):
        results = engine.generate(requests)
        recorder.pairs += list(zip(requests, results))
        return results

    return generate

