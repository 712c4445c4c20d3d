"""The engine contract every recipe talks to: a batch of requests in, results out, in order."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one request (a subset every backend understands).

    ``n`` is the number of samples (candidates) the request asks for in one call: vLLM's ``SamplingParams.n``
    (one prefill; with a seed, sample ``i`` is seeded ``seed + i``, so sample 0 is the text an ``n=1`` request
    with the same seed gets) and the OpenAI API's ``n``.

    ``logprobs`` asks for the top-``logprobs`` log-probabilities of each generated token (vLLM's
    ``SamplingParams.logprobs``; the OpenAI API's ``logprobs``/``top_logprobs``); the result carries those of the
    first generated token (:attr:`Result.first_token_logprobs`).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 64
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be at least 0, got {self.logprobs}")

    def as_dict(self) -> dict[str, Any]:
        """The parameters as a dict; ``n`` only when it is not 1 and ``logprobs`` only when set, so a request that
        asks for neither keeps the generation key (``synth.store.units.generation_key``) it had before they existed."""
        values = asdict(self)
        if self.n == 1:
            del values["n"]
        if self.logprobs is None:
            del values["logprobs"]
        return values


@dataclass(frozen=True)
class Request:
    """One generation request: a raw ``prompt`` (base models, few-shot) or chat ``messages``."""

    id: str
    sampling: Sampling
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError(f"request {self.id}: give exactly one of prompt or messages")


@dataclass
class Result:
    """What came back for one request. ``error`` is set (and ``text`` empty) when this request failed.

    A request with ``sampling.n > 1`` gets ``n`` candidates: ``texts`` and ``finish_reasons`` in sample order,
    ``text``/``finish_reason`` are the first one's (what a caller that wants one answer reads), and
    ``completion_tokens`` counts the tokens of all of them. Given only ``text``, ``texts`` is ``[text]``.

    ``first_token_logprobs``: for a request with ``sampling.logprobs``, the top log-probabilities of the first
    generated token of the first candidate, token text -> log-probability (``None`` when not asked for).
    """

    request_id: str
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False  # answered from the output's stored generations, not by the model
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    first_token_logprobs: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.texts:
            self.text = self.texts[0]
            if not self.finish_reasons:
                self.finish_reasons = [self.finish_reason] * len(self.texts)
            self.finish_reason = self.finish_reasons[0]
        elif self.error is None:
            self.texts, self.finish_reasons = [self.text], [self.finish_reason]
        if len(self.finish_reasons) != len(self.texts):
            raise ValueError(f"result {self.request_id}: {len(self.texts)} texts but {len(self.finish_reasons)} finish reasons")

    @property
    def ok(self) -> bool:
        return self.error is None

    def candidates(self) -> list["Result"]:
        """One single-text result per candidate, in sample order (none for a failed request): what a recipe's
        checks read. Token counts stay on the whole result."""
        return [
            Result(self.request_id, text=text, finish_reason=reason, cached=self.cached,
                   first_token_logprobs=self.first_token_logprobs if i == 0 else None)
            for i, (text, reason) in enumerate(zip(self.texts, self.finish_reasons))
        ]


@dataclass
class Usage:
    """Accounting that flows into the manifest and the run report."""

    calls: int = 0
    reused: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    generate_s: float = 0.0
    per_step: dict[str, int] = field(default_factory=dict)
    # Texts the model generated (every sample of every call: a call with n=4 adds 4), like completion_tokens
    # not counting answers reused from stored generations.
    candidates: int = 0

    def add(self, results: Sequence[Result], step: str, seconds: float) -> None:
        """Count the model calls among ``results``; answers reused from stored generations count as ``reused``."""
        called = [r for r in results if not r.cached]
        self.calls += len(called)
        self.reused += len(results) - len(called)
        self.failed_calls += sum(1 for r in called if not r.ok)
        self.prompt_tokens += sum(r.prompt_tokens for r in called)
        self.completion_tokens += sum(r.completion_tokens for r in called)
        self.cached_tokens += sum(r.cached_tokens for r in called)
        self.candidates += sum(len(r.texts) for r in called if r.ok)
        self.generate_s += seconds
        self.per_step[step] = self.per_step.get(step, 0) + len(called)

    def merge(self, other: "Usage") -> None:
        for name in (
            "calls", "reused", "failed_calls", "prompt_tokens", "completion_tokens", "cached_tokens", "generate_s",
            "candidates",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for step, count in other.per_step.items():
            self.per_step[step] = self.per_step.get(step, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Engine(Protocol):
    """A text generation backend, created once per process and reused across batches."""

    model_name: str

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        """Generate for every request; results come back in request order, failures as ``Result.error``."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


def request_seed(base_seed: int, request_id: str) -> int:
    """A per-request seed, so a result does not depend on which batch the request landed in."""
    digest = hashlib.sha256(f"{base_seed}:{request_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def add_logprob(logprobs: dict[str, float], token: str, logprob: float) -> None:
    """Add ``token``'s log-probability to ``logprobs`` (token text -> logprob): two token ids that decode to the
    same text are two ways to write it, so their probabilities add up."""
    if token not in logprobs:
        logprobs[token] = logprob
        return
    high, low = max(logprobs[token], logprob), min(logprobs[token], logprob)
    logprobs[token] = high + math.log1p(math.exp(low - high)) if low > float("-inf") else high
