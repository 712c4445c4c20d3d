"""Answerability (``synth.recipes.sap.answerability``, the optional ``sap.answerability`` filter).

The score of a pair from the tiny test model means nothing (random weights), so the scoring math, the SAP filter
and the caching rule run on scripted engines; the real in-process engine is checked to return first-token
log-probabilities; the default model's judgement is checked on pairs it separates (slow).
"""

from __future__ import annotations

import math
import os

import pyarrow as pa
import pytest
from llm_fixtures import FakeOpenAIServer, Reply, fake_server  # noqa: F401

from synth.recipes.sap.answerability import TOP_LOGPROBS, judge_request, roc_auc, score_logprobs, score_pairs
from synth.config import EngineConfig, LidConfig
from synth.recipes.sap.config import SapConfig
from synth.filters.lid import LanguageIdentifier
from synth.llm.base import Request, Result, Sampling, Usage
from synth.recipes.sap.recipe import SapRecipe
from synth.store.generations import CachingEngine
from synth.store.units import generation_key, row_fingerprint

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PASSAGE = "Paris is the capital of France and its largest city, on the Seine."
UNANSWERABLE = " Was ist die Hauptstadt von Frankreich?"  # scripted "no" below
ANSWERABLE = " Welcher Fluss fließt durch die Hauptstadt von Frankreich?"  # scripted "yes"


def logprobs(**probabilities: float) -> dict[str, float]:
    """Token text -> logprob; keyword names spell the tokens with ``_`` for a leading space."""
    return {token.replace("_", " "): math.log(p) for token, p in probabilities.items()}


# -- (a) the score from scripted log-probabilities --------------------------------------------------------------


def test_the_score_sums_every_spelling_of_yes_and_no():
    judgement = score_logprobs(logprobs(_yes=0.5, Yes=0.1, _YES=0.1, _no=0.2, No=0.05, _maybe=0.05))
    assert judgement.reason is None
    assert judgement.score == pytest.approx(0.7 / 0.95)


def test_only_yes_or_only_no_scores_one_or_zero():
    assert score_logprobs(logprobs(_yes=0.3, _the=0.5)).score == pytest.approx(1.0)
    assert score_logprobs(logprobs(No=0.3, _the=0.5)).score == pytest.approx(0.0)


def test_neither_yes_nor_no_gives_no_score_and_a_reason():
    judgement = score_logprobs(logprobs(_the=0.5, _a=0.2, _yesterday=0.1, _nothing=0.1))
    assert judgement.score is None and "neither yes nor no" in judgement.reason
    assert score_logprobs(None).score is None and score_logprobs(None).reason


class JudgeEngine:
    """Answers every judge request with the log-probabilities of its question (by substring), else a default;
    other requests from a script (request id -> texts, the first ``n``)."""

    model_name = "judge-fake"

    def __init__(self, judgements: dict[str, dict[str, float]], script: dict[str, list[str]] | None = None,
                 default: dict[str, float] | None = None):
        self.judgements = judgements
        self.script = script or {}
        self.default = default if default is not None else logprobs(_yes=0.9, _no=0.1)
        self.requests: list[Request] = []

    def generate(self, requests):
        self.requests += requests
        results = []
        for r in requests:
            if r.sampling.logprobs is not None:
                question = r.prompt.rsplit("Question (", 1)[1]
                found = next((lp for text, lp in self.judgements.items() if text.strip() in question), self.default)
                top = max(found, key=found.get)
                results.append(Result(r.id, text=top, finish_reason="length", first_token_logprobs=found))
            else:
                results.append(Result(r.id, texts=self.script[r.id][: r.sampling.n], finish_reasons=["stop"] * r.sampling.n))
        return results

    def close(self):
        pass


def test_score_pairs_scores_in_order_from_one_greedy_token():
    engine = JudgeEngine({"Who?": logprobs(_no=0.8, _yes=0.2), "Where?": logprobs(_yes=0.6, _no=0.2)})
    judgements = score_pairs(engine, [(PASSAGE, "Who?", "en"), (PASSAGE, "Where?", "de")])
    assert [j.score for j in judgements] == [pytest.approx(0.2), pytest.approx(0.75)]
    sampling = engine.requests[0].sampling
    assert (sampling.temperature, sampling.max_tokens, sampling.logprobs, sampling.repetition_penalty) == (0.0, 1, TOP_LOGPROBS, 1.0)


def test_the_judge_prompt_comes_from_the_template():
    request = judge_request("r", PASSAGE, "Wo liegt Paris?", "de")
    assert request.prompt.endswith(f"Passage: {PASSAGE}\nQuestion (German): Wo liegt Paris?\nAnswer:")
    assert request.prompt.startswith("Decide whether the passage")


def test_a_failed_judge_call_has_no_score():
    class Failing(JudgeEngine):
        def generate(self, requests):
            return [Result(r.id, error="boom") for r in requests]

    [judgement] = score_pairs(Failing({}), [(PASSAGE, "Who?", "en")])
    assert judgement.score is None and judgement.reason.startswith("engine_error")


# -- (e) ROC AUC -------------------------------------------------------------------------------------------------


def test_roc_auc_on_known_inputs():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)  # sklearn's example
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9], [True, True, False]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5  # ties count half
    assert roc_auc([0.3, 0.3, 0.1, 0.7], [True, False, False, True]) == pytest.approx(0.875)
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))


# -- (c) the SAP filter ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lid():
    return LanguageIdentifier(LidConfig())


def sap_config(tmp_path, enabled: bool, candidates: int = 3) -> SapConfig:
    (tmp_path / "p.jsonl").write_text(f'{{"id": "p1", "title": "Paris", "text": "{PASSAGE}"}}\n')
    return SapConfig(
        input={"path": str(tmp_path / "p.jsonl")}, languages=["de"], sampling={"candidates": candidates},
        sap={"answerability": {"enabled": enabled, "threshold": 0.5}},
    )


def sap_rows(tmp_path, lid, enabled: bool, queries: list[str]) -> tuple[list[dict], JudgeEngine]:
    engine = JudgeEngine(
        {UNANSWERABLE: logprobs(_no=0.7, _yes=0.1), ANSWERABLE: logprobs(_yes=0.6, _no=0.2)},
        script={"p1/summary": [" Paris is the capital of France."], "p1/query/de": queries[:1],
                "p1/query/de/candidates": queries[1:]},
    )
    recipe = SapRecipe(sap_config(tmp_path, enabled), engine, lid)
    return recipe.process(list(recipe.read_records()), Usage()), engine


def test_an_unanswerable_candidate_is_rejected_and_the_next_one_kept(tmp_path, lid):
    [row], engine = sap_rows(tmp_path, lid, True, [UNANSWERABLE, ANSWERABLE, ANSWERABLE])
    assert (row["query"], row["reject_reason"]) == (ANSWERABLE.strip(), None)
    assert row["candidate_reasons"] == ["unanswerable", None, None]
    assert row["answerable_score"] == pytest.approx(0.75)
    judged = [r for r in engine.requests if r.sampling.logprobs is not None]
    assert len(judged) == 3  # candidate 0, then candidates 1 and 2 (both passed the checks before it)
    config = sap_config(tmp_path, True)
    assert pa.Table.from_pylist([row], schema=SapRecipe(config, None, None).schema()).num_rows == 1


def test_all_unanswerable_keeps_the_row_rejected_with_its_score(tmp_path, lid):
    [row], _ = sap_rows(tmp_path, lid, True, [UNANSWERABLE, UNANSWERABLE, UNANSWERABLE])
    assert (row["query"], row["reject_reason"]) == (UNANSWERABLE.strip(), "unanswerable")
    assert row["candidate_reasons"] == ["unanswerable"] * 3
    assert row["answerable_score"] == pytest.approx(0.125)


def test_the_filter_is_off_by_default_and_asks_nothing(tmp_path, lid):
    assert SapConfig(input={"path": "x.jsonl"}, languages=["de"]).sap.answerability.enabled is False
    [row], engine = sap_rows(tmp_path, lid, False, [UNANSWERABLE, ANSWERABLE, ANSWERABLE])
    assert (row["query"], row["reject_reason"], row["answerable_score"]) == (UNANSWERABLE.strip(), None, None)
    assert all(r.sampling.logprobs is None for r in engine.requests)


def test_turning_the_filter_on_changes_the_row_fingerprint(tmp_path):
    resources = [tmp_path]
    off, on = sap_config(tmp_path, False), sap_config(tmp_path, True)
    stricter = on.model_copy(update={"sap": on.sap.model_copy(update={
        "answerability": on.sap.answerability.model_copy(update={"threshold": 0.8})})})
    prints = {row_fingerprint(config, "m", resources) for config in (off, on, stricter)}
    assert len(prints) == 3


# -- the engine layer: logprobs asked, returned, never cached -----------------------------------------------------


def test_logprobs_leave_the_generation_key_of_other_requests_alone():
    assert "logprobs" not in Sampling(seed=3).as_dict() and Sampling(logprobs=5).as_dict()["logprobs"] == 5
    plain = Request(id="r", prompt="p", sampling=Sampling())
    asked = Request(id="r", prompt="p", sampling=Sampling(logprobs=5))
    assert generation_key("m", plain) != generation_key("m", asked)


def test_log_probability_requests_are_neither_stored_nor_answered_from_the_store(tmp_path):
    engine = JudgeEngine({}, script={"plain": [" text"]})
    caching = CachingEngine(lambda: engine)
    caching.bind(tmp_path, "sap", "run1", "judge-fake")
    judge = judge_request("j", PASSAGE, "Where?", "en")
    plain = Request(id="plain", prompt="p", sampling=Sampling())
    first = caching.generate([judge, plain])
    assert first[0].first_token_logprobs and caching.flush("s1") == 1  # only the plain request is stored
    rerun = CachingEngine(lambda: engine)
    rerun.bind(tmp_path, "sap", "run2", "judge-fake")
    again = rerun.generate([judge, plain])
    assert (again[0].cached, again[1].cached) == (False, True) and again[0].first_token_logprobs


def test_the_openai_engine_asks_for_and_reads_logprobs(fake_server: FakeOpenAIServer):
    from synth.llm.openai_engine import OpenAIEngine

    completion = {"choices": [{"index": 0, "text": " yes", "finish_reason": "length",
                               "logprobs": {"tokens": [" yes"], "top_logprobs": [{" yes": -0.2, " no": -1.9}]}}],
                  "usage": {"prompt_tokens": 9, "completion_tokens": 1}}
    chat = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "no"}, "finish_reason": "length",
                         "logprobs": {"content": [{"token": "no", "logprob": -0.1, "top_logprobs": [
                             {"token": "no", "logprob": -0.1}, {"token": "Yes", "logprob": -2.5}]}]}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1}}
    fake_server.script(Reply(body=completion), Reply(body=chat))
    engine = OpenAIEngine(EngineConfig(backend="openai", base_urls=[fake_server.url], model="m"), backoff_s=0.01)
    try:
        sampling = Sampling(max_tokens=1, logprobs=5)
        [first] = engine.generate([Request(id="c", prompt="p", sampling=sampling)])
        [second] = engine.generate([Request(id="m", messages=({"role": "user", "content": "q"},), sampling=sampling)])
        [plain] = engine.generate([Request(id="x", prompt="p", sampling=Sampling())])
    finally:
        engine.close()
    assert first.first_token_logprobs == {" yes": -0.2, " no": -1.9}
    assert second.first_token_logprobs == {"no": -0.1, "Yes": -2.5}
    assert plain.first_token_logprobs is None
    bodies = [seen.body for seen in fake_server.posts()]
    assert bodies[0]["logprobs"] == 5 and "top_logprobs" not in bodies[0]
    assert (bodies[1]["logprobs"], bodies[1]["top_logprobs"]) == (True, 5)
    assert "logprobs" not in bodies[2]


# -- (b) the real in-process engine returns first-token log-probabilities ------------------------------------------


@pytest.fixture(scope="module")
def tiny_engine():
    from synth.llm import close_engines, get_engine
    from llm_fixtures import tiny_test_model_path

    engine = get_engine(EngineConfig(model=str(tiny_test_model_path()), dtype="float32", max_model_len=2048))
    yield engine
    close_engines()


def test_the_vllm_engine_returns_the_first_tokens_logprobs(tiny_engine):
    asked = Request(id="a", prompt="Once upon a time", sampling=Sampling(max_tokens=3, logprobs=5))
    plain = Request(id="p", prompt="Once upon a time", sampling=Sampling(max_tokens=3))
    first, second = tiny_engine.generate([asked, plain])
    top = first.first_token_logprobs
    assert top is not None and 5 <= len(top) <= 6  # the top 5, and the sampled token when not among them
    assert all(lp <= 0 for lp in top.values()) and sum(math.exp(lp) for lp in top.values()) <= 1 + 1e-4
    assert second.first_token_logprobs is None and second.text == first.text  # greedy: the same text either way
    greedy = max(top, key=top.get)
    assert first.text.startswith(greedy)


# -- (d) the default model on exemplar pairs ----------------------------------------------------------------------
# The default model barely judges: pooled ROC AUC 0.548 over the 962 exemplar pairs (bench/answerability.py,
# bench/RESULTS.md), so the filter is off by default and a random exemplar pair proves nothing. These are pairs
# where the measurement shows a clear margin: German exemplar question 3 (Łęczna) scored 0.67 with its own passage
# and 0.11-0.32 with the 4 others; the one-sentence Paris passage 0.67 for a German question it answers, 0.37 for
# one it does not. A failure means the judge's path (template, one greedy token, logprobs, yes/no sums) changed.


@pytest.fixture(scope="module")
def default_engine():
    from synth.llm import close_engines, get_engine

    engine = get_engine(EngineConfig(dtype="float32"))  # the shipped model as data/configs/sap.yaml runs it
    yield engine
    close_engines()


@pytest.mark.slow
def test_the_default_model_scores_a_matched_exemplar_pair_above_mismatched_ones(default_engine):
    from synth.recipes.sap.recipe import cross_lingual_exemplars

    examples = cross_lingual_exemplars()["de"]
    question = examples[3].question
    pairs = [(example.passage, question, "de") for example in examples]
    pairs += [(PASSAGE, "Was ist die Hauptstadt von Frankreich?", "de"), (PASSAGE, "Wie hoch ist der Mount Everest?", "de")]
    scores = [judgement.score for judgement in score_pairs(default_engine, pairs)]
    assert None not in scores, scores
    matched, others = scores[3], scores[:3] + scores[4:5]
    assert matched > max(others) + 0.1, scores
    assert scores[5] > scores[6], scores
