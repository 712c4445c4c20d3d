"""The engine contract every recipe talks to: a batch of requests in, results out, in order."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one request (a subset every backend understands)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 64
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """What came back for one request. ``error`` is set (and ``text`` empty) when this request failed."""

    request_id: str
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False  # answered from the output's stored generations, not by the model

    @property
    def ok(self) -> bool:
        return self.error is None


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

    def add(self, results: Sequence[Result], step: str, seconds: float) -> None:
        """Count the model calls among ``results``; answers reused from stored generations count as ``reused``."""
        called = [r for r in results if not r.cached]
        self.calls += len(called)
        self.reused += len(results) - len(called)
        self.failed_calls += sum(1 for r in called if not r.ok)
        self.prompt_tokens += sum(r.prompt_tokens for r in called)
        self.completion_tokens += sum(r.completion_tokens for r in called)
        self.cached_tokens += sum(r.cached_tokens for r in called)
        self.generate_s += seconds
        self.per_step[step] = self.per_step.get(step, 0) + len(called)

    def merge(self, other: "Usage") -> None:
        for name in ("calls", "reused", "failed_calls", "prompt_tokens", "completion_tokens", "cached_tokens", "generate_s"):
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
