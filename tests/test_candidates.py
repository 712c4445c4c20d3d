"""Candidates (``sampling.candidates``): several answers for one checked request, the first passing one kept.

The recipe tests script the engine's answers (a request for ``n`` candidates gets ``n``) and run the recipes'
real checks, LID included, so which candidate is kept is known in advance. The engine tests run the real
in-process vLLM engine on the tiny test model: ``n`` samples from one call, reproducible, stored and reused.
"""

from __future__ import annotations

import logging
import os
import re

import pyarrow as pa
import pytest

import synth.recipes.cod.localize as localize
from synth.recipes.cod.config import CodConfig
from synth.config import EngineConfig, SamplingConfig
from synth.recipes.sap.config import SapConfig
from synth.filters.lid import LanguageIdentifier
from synth.llm.base import Request, Result, Sampling, Usage
from synth.paths import DATA_DIR
from synth.recipes.base import more_candidates
from synth.recipes.cod.recipe import CodRecipe
from synth.recipes.sap.recipe import SapRecipe
from synth.store.generations import CachingEngine

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PASSAGE = "Paris is the capital of France and its largest city, on the Seine."
GERMAN = " Was ist die Hauptstadt von Frankreich?"
ENGLISH = " What is the capital city of France?"  # the wrong language for a German question
COPY = " Paris is the capital of France and its largest city"  # copied from the passage
TOO_LONG = " " + " ".join(["Frage"] * 50) + "?"


class ScriptedEngine:
    """Answers request id -> its texts (the first ``n`` of them); counts the requests it gets."""

    model_name = "scripted"

    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.requests: list[Request] = []

    def generate(self, requests):
        self.requests += requests
        return [
            Result(r.id, texts=self.script[r.id][: r.sampling.n], finish_reasons=["stop"] * r.sampling.n)
            for r in requests
        ]

    def close(self):
        pass


@pytest.fixture(scope="module")
def lid():
    from synth.config import LidConfig

    return LanguageIdentifier(LidConfig())


def sap_rows(tmp_path, lid, query_texts: list[str], candidates: int = 3) -> tuple[list[dict], ScriptedEngine]:
    """The SAP rows of one passage in German, the query's candidates answered by ``query_texts`` in order."""
    (tmp_path / "p.jsonl").write_text(f'{{"id": "p1", "title": "Paris", "text": "{PASSAGE}"}}\n')
    config = SapConfig(
        input={"path": str(tmp_path / "p.jsonl")}, languages=["de"], sampling={"candidates": candidates}
    )
    engine = ScriptedEngine(
        {
            "p1/summary": [" Paris is the capital of France."],
            "p1/query/de": query_texts[:1],
            "p1/query/de/candidates": query_texts[1:],
        }
    )
    recipe = SapRecipe(config, engine, lid)
    return recipe.process(list(recipe.read_records()), Usage()), engine


def test_the_first_passing_candidate_is_kept(tmp_path, lid):
    [row], _ = sap_rows(tmp_path, lid, [ENGLISH, GERMAN, " Wo liegt Paris?"])
    assert (row["query"], row["reject_reason"], row["candidate_reasons"]) == (GERMAN.strip(), None, ["lid_mismatch", None, None])


def test_a_passing_candidate_zero_asks_for_no_more(tmp_path, lid):
    _, engine = sap_rows(tmp_path, lid, [GERMAN, ENGLISH, ENGLISH])
    assert [r.id for r in engine.requests] == ["p1/summary", "p1/query/de"]


def test_all_failing_candidates_record_every_reason(tmp_path, lid):
    [row], _ = sap_rows(tmp_path, lid, [COPY, ENGLISH, TOO_LONG])
    assert (row["query"], row["reject_reason"], row["candidate_reasons"]) == (COPY.strip(), "copy", ["copy", "lid_mismatch", "too_long"])


def test_the_rows_fit_the_schema(tmp_path, lid):
    rows, _ = sap_rows(tmp_path, lid, [COPY, ENGLISH, GERMAN])
    config = SapConfig(input={"path": str(tmp_path / "p.jsonl")}, languages=["de"])
    assert pa.Table.from_pylist(rows, schema=SapRecipe(config, None, None).schema()).num_rows == 1


def test_more_candidates_sample_hot_with_their_own_seeds():
    request = Request(id="r", prompt="p", sampling=Sampling(temperature=0.0, seed=41, max_tokens=9))
    more = more_candidates(request, SamplingConfig(candidates=4, candidate_temperature=0.8))
    assert (more.sampling.n, more.sampling.temperature, more.sampling.seed, more.prompt) == (3, 0.8, 42, "p")


def test_one_candidate_asks_for_no_more():
    request = Request(id="r", prompt="p", sampling=Sampling(seed=41))
    assert more_candidates(request, SamplingConfig(candidates=1)) is None


def test_a_one_sample_request_keeps_its_generation_key():
    """Generations stored before requests had ``n`` still answer the same one-sample requests."""
    assert "n" not in Sampling(seed=3).as_dict() and Sampling(seed=3, n=2).as_dict()["n"] == 2


# -- COD: a failing turn is retried from its candidates --------------------------------------------------------


class CodEngine:
    """Localizes names as "Lokal <name>"; writes every turn as Russian filler with its values, except turn 0's
    first try: candidates 0 and 1 lack the values, any later candidate has them."""

    model_name = "cod-fake"
    FILLER = "Хорошо, давайте посмотрим, что можно сделать"

    def __init__(self):
        self.requests: list[Request] = []

    def generate(self, requests):
        self.requests += requests
        results = []
        for request in requests:
            if request.id.startswith("cod/localize/"):
                source = request.prompt.rsplit("English: ", 1)[1].split("\n", 1)[0]
                results.append(Result(request.id, text=f" Lokal {source}\n", finish_reason="stop"))
                continue
            instruction = request.prompt.rsplit("Instruction: ", 1)[1].split("\n", 1)[0]
            values = ", ".join(re.findall(r'"([^"]*)"', instruction))
            turn = request.id.split("/")[2]
            good = f" {self.FILLER} ({turn}): {values}."
            texts = [good] * request.sampling.n
            if "/turn0/try1" in request.id:  # candidate 0 alone, then candidates 1.. (one bad, then good ones)
                bad = f" {self.FILLER} ({turn})."
                texts = [bad] + [good] * (request.sampling.n - 1) if request.id.endswith("/candidates") else [bad]
            results.append(Result(request.id, texts=texts, finish_reasons=["stop"] * len(texts)))
        return results

    def close(self):
        pass


@pytest.fixture
def no_lexicon(monkeypatch):
    monkeypatch.setattr(localize, "_lexicon", lambda: None)


def test_cod_retries_a_failing_turn_from_its_candidates(lid, no_lexicon):
    config = CodConfig(
        input={"path": str(DATA_DIR / "sgd" / "dialogues.json")}, languages=["ru"], sampling={"candidates": 3},
        cod={"max_turns": 2},
    )
    recipe = CodRecipe(config, CodEngine(), lid)
    recipe.validate()
    [row] = recipe.process([r for r in recipe.read_records() if r["source_id"] == "3_00078"], Usage())
    turn = row["turns"][0]
    assert (turn["reject_reason"], turn["attempts"], turn["candidate_reasons"]) == (None, 1, ["slot_missing", "slot_missing", None])


# -- the real engine: n samples from one call -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_engine():
    from synth.llm import close_engines, get_engine
    from tests.llm_fixtures import tiny_test_model_path

    engine = get_engine(EngineConfig(model=str(tiny_test_model_path()), dtype="float32", max_model_len=2048))
    yield engine
    close_engines()


def story(n: int, seed: int = 1234) -> Request:
    return Request(id="s", prompt="Once upon a time", sampling=Sampling(temperature=1.0, max_tokens=8, seed=seed, n=n))


@pytest.mark.slow  # the engine starts in ~20 s (minutes on a loaded machine)
def test_the_engine_returns_k_texts_from_one_call(tiny_engine):
    usage = Usage()
    usage.add(tiny_engine.generate([story(3)]), "story", 0.0)
    assert (usage.calls, usage.candidates) == (1, 3)


@pytest.mark.slow  # the engine starts in ~20 s (minutes on a loaded machine)
def test_k_samples_are_reproducible_with_the_same_seed(tiny_engine):
    assert tiny_engine.generate([story(3)])[0].texts == tiny_engine.generate([story(3)])[0].texts


@pytest.mark.slow  # the engine starts in ~20 s (minutes on a loaded machine)
def test_sample_i_is_seeded_seed_plus_i(tiny_engine):
    """What lets candidates 1..k-1 be one later call (seed + 1, n = k - 1) without changing any candidate."""
    assert tiny_engine.generate([story(3)])[0].texts[1:] == tiny_engine.generate([story(2, seed=1235)])[0].texts


@pytest.mark.slow  # the engine starts in ~20 s (minutes on a loaded machine)
def test_sampled_seeded_prompts_longer_than_an_engine_step_run_in_one_batch(tiny_engine, caplog):
    """vLLM on CPU cannot rewind a seeded generator, so a sampled request whose prompt was prefilled in chunks
    failed its whole batch ("CPU Generator does not use offset") and every request was retried alone."""
    words = " ".join(f"word{i}" for i in range(300))  # ~1,100 tokens: 8 prompts are twice vLLM's 4,096-token step
    requests = [
        Request(id=str(i), prompt=f"{i} {words}", sampling=Sampling(temperature=1.0, max_tokens=4, seed=i, n=2))
        for i in range(8)
    ]
    with caplog.at_level(logging.WARNING, logger="synth.llm.vllm_engine"):
        tiny_engine.generate(requests)
    assert "retrying one by one" not in caplog.text


@pytest.mark.slow  # the engine starts in ~20 s (minutes on a loaded machine)
def test_completion_tokens_count_every_sample(tiny_engine):
    [one] = tiny_engine.generate([story(1)])
    [three] = tiny_engine.generate([story(3)])
    assert three.completion_tokens > one.completion_tokens


@pytest.mark.slow  # the engine starts in ~20 s (minutes on a loaded machine)
def test_stored_generations_answer_a_rerun_with_the_same_k_texts(tiny_engine, tmp_path):
    first = CachingEngine(lambda: tiny_engine)
    first.bind(tmp_path, "sap", "run1", tiny_engine.model_name)
    [made] = first.generate([story(3)])
    first.flush("seg1")

    def no_model():
        raise AssertionError("the model was asked")

    rerun = CachingEngine(no_model)
    rerun.bind(tmp_path, "sap", "run2", tiny_engine.model_name)
    [again] = rerun.generate([story(3)])
    assert (again.cached, again.texts, again.finish_reasons) == (True, made.texts, made.finish_reasons)


def test_generation_files_of_one_text_per_request_still_answer(tmp_path):
    """Files written before ``texts`` existed: key, text, finish_reason and token counts only."""
    from synth.store.location import Location
    from synth.store.units import generation_key

    request = story(1)
    old = pa.table(
        {
            "key": pa.array([generation_key("m", request)], pa.uint64()),
            "text": [" there was"],
            "finish_reason": ["length"],
            "prompt_tokens": [4],
            "completion_tokens": [2],
        }
    )
    Location(tmp_path).write_table(".polysynth/sap/generations/old.parquet", old, durable=False)
    engine = CachingEngine(lambda: pytest.fail("the model was asked"))
    engine.bind(tmp_path, "sap", "run", "m")
    [result] = engine.generate([request])
    assert (result.cached, result.texts, result.finish_reasons) == (True, [" there was"], ["length"])
