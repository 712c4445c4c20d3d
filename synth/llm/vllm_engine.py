"""In-process vLLM: the default backend, one ``vllm.LLM`` per process.

``vllm`` is imported only when an engine is created (importing it costs 5–50 s), so importing this
module stays cheap. On a machine without CUDA the engine picks settings that make vLLM's CPU backend
start in well under a minute and run at full speed (see :mod:`synth.llm.device`).

Example::

    from synth.config import EngineConfig
    from synth.llm.base import Request, Sampling
    from synth.llm.vllm_engine import VLLMEngine

    engine = VLLMEngine(EngineConfig())                      # the default model, converted on first use
    [result] = engine.generate([Request(id="r1", prompt="The capital of France is", sampling=Sampling(max_tokens=8))])
    print(result.text, result.prompt_tokens, result.completion_tokens)
    engine.close()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

from synth.report import progress
from synth.config import EngineConfig
from synth.errors import EngineError
from synth.llm.base import Request, Result, Sampling, add_logprob
from synth.llm.device import (
    CPU_KV_CACHE_BYTES,
    CPU_MAX_BATCHED_TOKENS,
    STRUCTURED_OUTPUTS_CONFIG,
    cpu_environment,
    cuda_available,
)
from synth.llm.model import resolve_model, served_model_name

if TYPE_CHECKING:
    from vllm import LLM, RequestOutput, SamplingParams

log = logging.getLogger(__name__)

# A prefix shared by prompts of one batch is prefilled on its own first when it is at least this long (characters;
# ~100 tokens, several KV blocks): shorter ones are not worth an engine step.
MIN_SHARED_PREFIX_CHARS = 400


def _common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (binary search over C-level slice compares)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def shared_prefixes(prompts: Sequence[str], min_chars: int) -> list[str]:
    """The longest prefixes of at least ``min_chars`` characters that two or more ``prompts`` share, none a prefix
    of another (prefilling the longer one caches the shorter). A prompt's longest shared prefix is the longest it
    shares with a neighbour in sorted order."""
    ordered = sorted(prompts)
    found = {
        a[:length]
        for a, b in zip(ordered, ordered[1:])
        if (length := _common_prefix_len(a, b)) >= min_chars
    }
    longest_first = sorted(found, reverse=True)  # a prefix sorts right before the strings it begins
    return [p for i, p in enumerate(longest_first) if not any(q.startswith(p) for q in longest_first[:i])]


def _sampling_params(sampling: Sampling, json_schema: dict[str, Any] | None) -> "SamplingParams":
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        repetition_penalty=sampling.repetition_penalty,
        seed=sampling.seed,
        stop=list(sampling.stop) or None,
        n=sampling.n,  # children seeded seed + i: sample 0 is what n=1 with this seed gives
        logprobs=sampling.logprobs,  # top-k per generated token (the sampled token is added when not among them)
        structured_outputs=StructuredOutputsParams(json=json_schema) if json_schema is not None else None,
    )


def _first_token_logprobs(completion: Any) -> dict[str, float] | None:
    """The first generated token's top log-probabilities, token text -> logprob (vLLM: a dict token id ->
    ``Logprob(logprob, rank, decoded_token)`` per generated token; ``None`` when none were asked for)."""
    if not completion.logprobs:
        return None
    first: dict[str, float] = {}
    for token_id, entry in completion.logprobs[0].items():
        text = entry.decoded_token if entry.decoded_token is not None else str(token_id)
        add_logprob(first, text, float(entry.logprob))
    return first


def _result(request: Request, output: "RequestOutput", latency_s: float) -> Result:
    completions = sorted(output.outputs, key=lambda completion: completion.index)  # sample order (n > 1)
    return Result(
        request_id=request.id,
        texts=[completion.text for completion in completions],
        finish_reasons=[completion.finish_reason for completion in completions],
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=sum(len(completion.token_ids) for completion in completions),
        cached_tokens=output.num_cached_tokens or 0,
        latency_s=latency_s,
        first_token_logprobs=_first_token_logprobs(completions[0]) if request.sampling.logprobs is not None else None,
    )


def _raise_if_dead(exc: Exception) -> None:
    """A dead or closed engine fails every request that follows: stop the run instead of failing each unit."""
    if isinstance(exc, EngineError):
        raise exc
    if "longer than the maximum model length" in str(exc):  # no retry, and no later request, can fix it
        raise EngineError(f"a prompt is longer than the model's context ({exc}); raise engine.max_model_len "
                          "or shorten the input") from None
    if type(exc).__name__ == "EngineDeadError":
        raise EngineError(f"the in-process vLLM engine died ({exc}); a rerun resumes with the units not done") from None


class VLLMEngine:
    """The Engine protocol over one in-process ``vllm.LLM``; thread-safe (calls are serialised).

    Results carry the wall time of the engine call that produced them as ``latency_s``: vLLM batches
    the whole call, so every request in it finishes at about the same time.
    """

    def __init__(self, config: EngineConfig):
        self.config = config
        model = resolve_model(config.model)
        self.model_name = served_model_name(model)
        self._lock = threading.Lock()
        self._prompt_tokens = 0
        self._cached_tokens = 0
        started = time.monotonic()
        self._llm: LLM | None = self._start(model)
        self.start_s = time.monotonic() - started
        log.info("vLLM engine for %s ready in %.1f s", self.model_name, self.start_s)

    def _start(self, model: str) -> "LLM":
        config = self.config
        on_cpu = not cuda_available()
        if on_cpu:
            single = config.tensor_parallel_size == 1 and config.data_parallel_size == 1
            os.environ.update(cpu_environment(in_process=single))
        from vllm import LLM

        options: dict[str, Any] = {
            "model": model,
            "dtype": config.dtype,
            "max_model_len": config.max_model_len,
            "enable_prefix_caching": config.enable_prefix_caching,
            # vLLM seeds its global RNG with this; per-request seeds make results batch-independent anyway.
            "seed": 0,
            "tensor_parallel_size": config.tensor_parallel_size,
            "data_parallel_size": config.data_parallel_size,
            # CUDA graphs / torch.compile cost minutes at start on CPU and buy little for small models.
            "enforce_eager": on_cpu if config.enforce_eager is None else config.enforce_eager,
            # JSON-schema output without free whitespace: small models otherwise pad with newlines and
            # spaces until max_tokens cuts the JSON off. Also saves tokens. Only xgrammar and guidance
            # support it, so "auto" (xgrammar with fallbacks) becomes xgrammar.
            "structured_outputs_config": dict(STRUCTURED_OUTPUTS_CONFIG),
            # Loading progress is written straight to stderr, past the log file: the run draws its own.
            "use_tqdm_on_load": False,
        }
        if on_cpu:
            # vLLM's sampler rewinds the generator of a seeded request whose prompt is only partly prefilled, which
            # only CUDA generators allow: on CPU a sampled (temperature > 0) seeded request prefilled in chunks fails
            # its whole batch ("CPU Generator does not use offset"), as candidates and COD retries are. Without
            # chunked prefill a prompt is prefilled in one step (a step holds at least one whole prompt).
            options["enable_chunked_prefill"] = False
            options["max_num_batched_tokens"] = max(config.max_model_len, CPU_MAX_BATCHED_TOKENS)
        if config.gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = config.gpu_memory_utilization
        elif on_cpu and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            options["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        if config.max_num_seqs is not None:
            options["max_num_seqs"] = config.max_num_seqs
        try:
            return LLM(**options)
        except Exception as exc:
            raise EngineError(f"vLLM could not start model {model}: {type(exc).__name__}: {exc}") from exc

    @property
    def llm(self) -> "LLM":
        if self._llm is None:
            raise EngineError("the vLLM engine is closed")
        return self._llm

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        """Generate for all ``requests`` in one vLLM batch; results in request order.

        If the batch call fails (one malformed or over-long request makes vLLM reject the whole
        call), every request is retried alone so only the bad ones come back with ``error`` set.
        """
        if not requests:
            return []
        with self._lock:
            try:
                results = self._run(requests)
            except Exception as exc:  # noqa: BLE001 - isolate the bad request(s), see below
                _raise_if_dead(exc)
                log.warning("vLLM batch of %d failed (%s); retrying one by one", len(requests), exc)
                results = [self._run_one(request) for request in requests]
        for result in results:
            self._prompt_tokens += result.prompt_tokens
            self._cached_tokens += result.cached_tokens
        return results

    def _run_one(self, request: Request) -> Result:
        started = time.monotonic()
        try:
            return self._run([request])[0]
        except Exception as exc:  # noqa: BLE001 - reported per request, the batch goes on
            _raise_if_dead(exc)
            error = f"{type(exc).__name__}: {exc}"
            return Result(request_id=request.id, error=error, latency_s=time.monotonic() - started)

    def _run(self, requests: Sequence[Request]) -> list[Result]:
        """Prompts go through ``LLM.generate`` and chats through ``LLM.chat`` (the model's chat template)."""
        llm = self.llm
        started = time.monotonic()
        params = [_sampling_params(request.sampling, request.json_schema) for request in requests]
        prompt_idx = [i for i, request in enumerate(requests) if request.prompt is not None]
        chat_idx = [i for i, request in enumerate(requests) if request.messages is not None]
        outputs: dict[int, RequestOutput] = {}
        if self.config.enable_prefix_caching and len(prompt_idx) > 1:
            self._prefill_shared_prefixes([requests[i].prompt or "" for i in prompt_idx])
        if prompt_idx:
            done = llm.generate(
                [requests[i].prompt for i in prompt_idx], [params[i] for i in prompt_idx], use_tqdm=_count_answers
            )
            outputs.update(zip(prompt_idx, done))
        if chat_idx:
            done = llm.chat(
                [[dict(message) for message in requests[i].messages or ()] for i in chat_idx],
                [params[i] for i in chat_idx],
                use_tqdm=_count_answers,
            )
            outputs.update(zip(chat_idx, done))
        latency = time.monotonic() - started
        return [_result(request, outputs[i], latency) for i, request in enumerate(requests)]

    def _prefill_shared_prefixes(self, prompts: list[str]) -> None:
        """Prefill each few-shot prefix that several ``prompts`` share once, before the batch.

        vLLM looks a prompt up in the prefix cache when it admits it, and a step admits as many whole prompts as
        fit (4096 tokens on CPU): prompts admitted in the same step as the first one carrying a prefix find nothing
        cached and each prefill it again. On the demo's SAP work that left the hit rate at 0.27 of prompt tokens
        against 0.55 possible. Prefilling the shared prefixes alone first (one token generated each) lets every
        prompt of the batch find them cached.
        """
        shared = shared_prefixes(prompts, MIN_SHARED_PREFIX_CHARS)
        if shared:
            from vllm import SamplingParams

            self.llm.generate(shared, SamplingParams(max_tokens=1), use_tqdm=False)

    def prefix_cache_stats(self) -> dict[str, float]:
        """Prompt tokens served so far, how many came from the prefix cache, and the hit rate.

        Example::

            >>> engine.prefix_cache_stats()
            {'prompt_tokens': 4096.0, 'cached_tokens': 3072.0, 'hit_rate': 0.75}
        """
        rate = self._cached_tokens / self._prompt_tokens if self._prompt_tokens else 0.0
        return {
            "prompt_tokens": float(self._prompt_tokens),
            "cached_tokens": float(self._cached_tokens),
            "hit_rate": rate,
        }

    def close(self) -> None:
        """Drop the vLLM engine and free its memory; the engine cannot be used afterwards."""
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is None:
            return
        shutdown = getattr(llm.llm_engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm


class _AnswerCounter:
    """Stands in for the tqdm bar of vLLM's offline loop: each finished request goes to ``synth.report.progress``, so a
    long batch shows answers arriving instead of a frozen screen."""

    def __init__(self) -> None:
        self.n = 0
        self.postfix = ""
        self._started = time.monotonic()

    @property
    def format_dict(self) -> dict[str, float]:
        return {"elapsed": max(time.monotonic() - self._started, 1e-6)}

    def update(self, count: int = 1) -> None:
        self.n += count
        progress.answers_arrived(count)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def _count_answers(iterable: Any = None, **_: Any) -> Any:
    """vLLM calls its ``use_tqdm`` factory on the prompts it renders (pass them through) and once with no
    iterable for the generation loop (count answers)."""
    return iterable if iterable is not None else _AnswerCounter()
