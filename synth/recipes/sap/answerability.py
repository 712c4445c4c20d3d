"""Answerability: does a passage answer a question? Asked of the run's own engine (no second model).

The Promptagator round-trip idea (Dai et al., 2022) without a second model: the prompt
(``prompts/sap/answerability.v1.yaml``, few-shot) ends in ``Answer:``; the engine generates one token at
temperature 0 with the top :data:`TOP_LOGPROBS` log-probabilities, and the score is

    p(yes) / (p(yes) + p(no))

where p(yes) sums every spelling of "yes" among those tokens (``" yes"``, ``"Yes"``, ``" YES"``, ...) and p(no)
every spelling of "no". When neither is among them the pair gets no score (``None``) and a reason. Deterministic:
greedy, no seed involved, and the log-probabilities do not depend on sampling.

Example::

    from synth.recipes.sap.answerability import score_pairs
    [judgement] = score_pairs(engine, [("Paris is the capital of France.", "What is the capital of France?", "en")])
    judgement.score   # 0.93, or None with judgement.reason set

``SapRecipe`` uses it as the optional ``sap.answerability`` filter; ``bench/answerability.py`` measures how well
the default model separates matched from mismatched SWIM-IR exemplar pairs (ROC AUC per language, :func:`roc_auc`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from synth.llm.base import Engine, Request, Result, Sampling
from synth.prompts import PromptTemplate, load_template
from synth.recipes.sap.languages import language_names

TEMPLATE = "sap/answerability.v1.yaml"
TOP_LOGPROBS = 20  # vLLM's default cap (max_logprobs) is 20
YES = frozenset({"yes"})
NO = frozenset({"no"})


@dataclass(frozen=True)
class Judgement:
    """The answerability of one pair: ``score`` in [0, 1] (``None``: not scored, ``reason`` says why)."""

    score: float | None
    reason: str | None = None


def template() -> PromptTemplate:
    return load_template(TEMPLATE)


def judge_request(request_id: str, passage: str, question: str, language: str) -> Request:
    """The one-token request asking whether ``passage`` answers ``question`` (``language``: an ISO code)."""
    prompt = template().render_prefix() + template().render_request(
        passage=passage, question=question, language=language_names().get(language, language)
    )
    sampling = Sampling(temperature=0.0, max_tokens=1, repetition_penalty=1.0, logprobs=TOP_LOGPROBS)
    return Request(id=request_id, prompt=prompt, sampling=sampling)


def score_logprobs(logprobs: dict[str, float] | None) -> Judgement:
    """The score from the first generated token's top log-probabilities (token text -> logprob)."""
    if not logprobs:
        return Judgement(None, "no log-probabilities in the answer")
    yes = sum(math.exp(lp) for token, lp in logprobs.items() if token.strip().lower() in YES)
    no = sum(math.exp(lp) for token, lp in logprobs.items() if token.strip().lower() in NO)
    if yes + no <= 0.0:
        return Judgement(None, f"neither yes nor no among the top {len(logprobs)} tokens")
    return Judgement(yes / (yes + no))


def score_result(result: Result) -> Judgement:
    if not result.ok:
        return Judgement(None, f"engine_error: {result.error}")
    return score_logprobs(result.first_token_logprobs)


def score_pairs(
    engine: Engine, pairs: Sequence[tuple[str, str, str]], ids: Sequence[str] | None = None
) -> list[Judgement]:
    """One judgement per (passage, question, language) pair, in order, from one engine call."""
    if not pairs:
        return []
    ids = list(ids) if ids is not None else [f"answerable/{i}" for i in range(len(pairs))]
    requests = [judge_request(rid, *pair) for rid, pair in zip(ids, pairs)]
    return [score_result(result) for result in engine.generate(requests)]


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """ROC AUC of ``scores`` for the positive ``labels``: the probability that a random positive scores higher
    than a random negative, ties counting half (Mann-Whitney U over average ranks). ``nan`` without both classes."""
    positives = sum(1 for label in labels if label)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1  # average 1-based rank of the tied run
        start = end + 1
    rank_sum = sum(rank for rank, label in zip(ranks, labels) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
