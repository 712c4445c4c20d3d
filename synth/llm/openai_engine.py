"""OpenAI-compatible servers (first of all ``vllm serve``, see ``synth serve-model``) as an engine.

Requests of a batch are sent concurrently, at most ``max_concurrency`` in flight per endpoint, each
to the endpoint with the fewest requests in flight. Connection errors, timeouts, HTTP 429 and 5xx
and unreadable replies are retried with exponential backoff and jitter (``Retry-After`` is honoured),
moving to another endpoint where there is one. A request that still fails comes back as
``Result(error=...)`` naming the endpoint; if no endpoint could be reached at all the whole call
raises :class:`~synth.errors.EngineError`.

``generate`` is synchronous and thread-safe: the HTTP work runs on a private event loop in a
background thread, so it works from plain threads, from Prefect task threads and from code that
already runs an event loop, and the concurrency bounds hold across all callers of one engine.

Example::

    from synth.config import EngineConfig
    from synth.llm.base import Request, Sampling
    from synth.llm.openai_engine import OpenAIEngine

    engine = OpenAIEngine(EngineConfig(backend="openai", base_urls=["http://127.0.0.1:8000"]))
    results = engine.generate([Request(id="1", prompt="Hello", sampling=Sampling(max_tokens=8))])
    engine.close()
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Coroutine, Sequence, TypeVar

import httpx

from synth.report import progress
from synth.config import EngineConfig
from synth.errors import EngineError
from synth.llm.base import Request, Result, add_logprob

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0


# The preflight is one small metadata request before the run: a busy server (or machine) may take a few seconds to
# answer it, and ``timeout_s`` is tuned for generation requests, which are retried; this one is not.
PREFLIGHT_TIMEOUT_S = 30.0

class _RetryableError(Exception):
    """A failure worth another try; ``retry_after`` is the server's wish in seconds, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, unreachable: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable


class _FatalError(Exception):
    """A failure that another try would repeat (HTTP 400, 404, ...); ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


# A prompt longer than the model's context: the server says so in a 400; no retry can fix it.
CONTEXT_LENGTH = re.compile(r"maximum context length|context length|longer than the maximum model length", re.I)
CONTEXT_OVERFLOW = -400
# Statuses no request of this run can get past: the run stops at the first one instead of failing every unit.
RUN_STOPPING = {401: "set {key} to a valid API key", 403: "set {key} to a key allowed to use this model",
                404: "check engine.model against the server's GET /v1/models",
                CONTEXT_OVERFLOW: "serve the model with a longer context (--max-model-len) or shorten the input"}


@dataclass
class _Endpoint:
    url: str
    semaphore: asyncio.Semaphore
    in_flight: int = 0


def _normalise_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all mean the same server."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _first_token_logprobs(choice: dict[str, Any], *, chat: bool) -> dict[str, float] | None:
    """The first generated token's top log-probabilities of one choice, token text -> logprob: completions give
    ``logprobs.top_logprobs`` (a dict per token), chat ``logprobs.content`` (per token, ``top_logprobs`` a list of
    ``{token, logprob}``). ``None`` when the reply has none (no token generated, or a server that ignores it)."""
    logprobs = choice.get("logprobs") or {}
    first: dict[str, float] = {}
    if chat:
        content = logprobs.get("content") or []
        if not content:
            return None
        for entry in content[0].get("top_logprobs") or []:
            add_logprob(first, entry["token"], float(entry["logprob"]))
    else:
        top = logprobs.get("top_logprobs") or []
        if not top or top[0] is None:
            return None
        for token, logprob in top[0].items():
            add_logprob(first, token, float(logprob))
    return first


class OpenAIEngine:
    """The Engine protocol over one or more OpenAI-compatible HTTP endpoints.

    ``backoff_s`` is the first retry delay (doubling each try, capped at ``max_backoff_s``, with
    jitter); tests make it small.
    """

    def __init__(self, config: EngineConfig, *, backoff_s: float = 0.5, max_backoff_s: float = 20.0):
        if not config.base_urls:
            raise EngineError("backend 'openai' needs at least one entry in engine.base_urls")
        self.config = config
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.urls = [_normalise_url(url) for url in config.base_urls]
        # Without engine.model the first model the server lists is used (what `synth serve-model` serves).
        self.model_name = config.model or ""
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-engine-loop", daemon=True)
        self._thread.start()
        self._client: httpx.AsyncClient | None = None
        self._endpoints: list[_Endpoint] = []
        self._next = 0
        self._model_lock: asyncio.Lock | None = None
        self._submit(self._setup(headers)).result()

    async def _setup(self, headers: dict[str, str]) -> None:
        limit = self.config.max_concurrency
        connections = limit * len(self.urls)
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.config.timeout_s),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self._endpoints = [_Endpoint(url, asyncio.Semaphore(limit)) for url in self.urls]
        self._model_lock = asyncio.Lock()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> "Future[T]":
        if self._loop.is_closed():
            coro.close()
            raise EngineError("the OpenAI engine is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        """Send all ``requests`` concurrently; results in request order, failures as ``Result.error``.

        Raises :class:`EngineError` when no endpoint could be reached at all.
        """
        if not requests:
            return []
        if threading.current_thread() is self._thread:
            raise EngineError("OpenAIEngine.generate cannot be called from its own event loop")
        return self._submit(self._generate(list(requests))).result()

    async def _generate(self, requests: list[Request]) -> list[Result]:
        outcomes = await asyncio.gather(*(self._one(request) for request in requests))
        if all(unreachable for _, unreachable in outcomes):
            raise EngineError(f"no endpoint reachable: {', '.join(self.urls)}; last error: {outcomes[0][0].error}")
        return [result for result, _ in outcomes]

    def _pick(self, avoid: _Endpoint | None) -> _Endpoint:
        """The endpoint with the fewest requests in flight (queued included); ties go round robin.

        ``avoid`` (where the last try failed) is skipped unless it is the only endpoint.
        """
        count = len(self._endpoints)
        start, self._next = self._next, (self._next + 1) % count
        rotated = [self._endpoints[(start + i) % count] for i in range(count)]
        candidates = [endpoint for endpoint in rotated if endpoint is not avoid] or rotated
        return min(candidates, key=lambda endpoint: endpoint.in_flight)

    async def _one(self, request: Request) -> tuple[Result, bool]:
        """Run one request with retries; also says whether every try failed to reach any server."""
        started = time.monotonic()
        endpoint: _Endpoint | None = None
        error, tries, unreachable = "", 0, True
        for attempt in range(self.config.max_retries + 1):
            endpoint = self._pick(avoid=endpoint)
            endpoint.in_flight += 1
            tries += 1
            try:
                async with endpoint.semaphore:
                    result = await self._call(endpoint, request)
                result.latency_s = time.monotonic() - started
                progress.answers_arrived(len(result.texts))  # as vLLM counts: one per candidate
                return result, False
            except _FatalError as exc:
                if exc.status in RUN_STOPPING:
                    fix = RUN_STOPPING[exc.status].format(key=self.config.api_key_env)
                    raise EngineError(f"{endpoint.url}: {exc}; {fix}") from None
                error, unreachable = f"{endpoint.url}: {exc}", False
                break
            except _RetryableError as exc:
                error, unreachable = f"{endpoint.url}: {exc}", unreachable and exc.unreachable
                if attempt == self.config.max_retries:
                    break
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                log.debug("request %s: %s; retry %d in %.2f s", request.id, error, attempt + 1, delay)
                await asyncio.sleep(delay)
            finally:
                endpoint.in_flight -= 1
        if tries > 1:
            error += f" (gave up after {tries} tries)"
        return Result(request_id=request.id, error=error, latency_s=time.monotonic() - started), unreachable

    async def _model(self, endpoint: _Endpoint) -> str:
        """The model to ask for: ``engine.model``, else the first one the server lists (asked once)."""
        if self.model_name:
            return self.model_name
        assert self._model_lock is not None
        async with self._model_lock:
            if not self.model_name:
                payload = await self._request(endpoint, "GET", "/v1/models", None)
                try:
                    self.model_name = payload["data"][0]["id"]
                except (KeyError, IndexError, TypeError):
                    raise _FatalError(f"/v1/models lists no model: {_excerpt(json.dumps(payload))}") from None
        return self.model_name

    async def _request(self, endpoint: _Endpoint, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """One HTTP call; classifies every failure as retryable or fatal and returns the parsed JSON."""
        assert self._client is not None
        try:
            response = await self._client.request(method, endpoint.url + path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _RetryableError(f"cannot connect ({exc or type(exc).__name__})", unreachable=True) from None
        except httpx.TimeoutException:
            raise _RetryableError(f"no reply within {self.config.timeout_s:g} s") from None
        except httpx.TransportError as exc:  # dropped connection, protocol errors
            raise _RetryableError(f"connection failed ({type(exc).__name__}: {exc})") from None
        if response.status_code in RETRY_STATUS or response.status_code >= 500:
            raise _RetryableError(
                f"HTTP {response.status_code}: {_excerpt(response.text)}", retry_after=_retry_after(response)
            )
        if response.status_code >= 400:
            status = response.status_code
            if status == 400 and CONTEXT_LENGTH.search(response.text):
                status = CONTEXT_OVERFLOW
            raise _FatalError(f"HTTP {response.status_code}: {_excerpt(response.text)}", status=status)
        try:
            return response.json()
        except ValueError:
            raise _RetryableError(f"reply is not JSON: {_excerpt(response.text)!r}") from None

    async def _call(self, endpoint: _Endpoint, request: Request) -> Result:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": await self._model(endpoint),
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.n != 1:
            body["n"] = sampling.n  # one prompt, n choices (vLLM seeds choice i with seed + i)
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty  # a vLLM extension of the API
        if sampling.logprobs is not None:
            # completions: ``logprobs: k`` (top k per token); chat: ``logprobs: true`` and ``top_logprobs: k``
            if request.prompt is not None:
                body["logprobs"] = sampling.logprobs
            else:
                body["logprobs"], body["top_logprobs"] = True, sampling.logprobs
        if request.json_schema is not None:
            # vLLM turns this into structured outputs on both endpoints; OpenAI accepts it on chat.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema, "strict": True},
            }
        if request.prompt is not None:
            payload = await self._request(endpoint, "POST", "/v1/completions", {**body, "prompt": request.prompt})
        else:
            messages = [dict(message) for message in request.messages or ()]
            payload = await self._request(endpoint, "POST", "/v1/chat/completions", {**body, "messages": messages})
        return self._parse(endpoint, request, payload)

    @staticmethod
    def _parse(endpoint: _Endpoint, request: Request, payload: Any) -> Result:
        wanted = request.sampling.n
        try:
            choices = sorted(payload["choices"], key=lambda choice: choice.get("index", 0))[:wanted]
            if not choices:
                raise IndexError("no choices")
            texts = [
                (choice["text"] if request.prompt is not None else choice["message"]["content"]) or ""
                for choice in choices
            ]
            usage = payload.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            result = Result(
                request_id=request.id,
                texts=texts,
                finish_reasons=[choice.get("finish_reason") for choice in choices],
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                cached_tokens=int(details.get("cached_tokens") or 0),
                first_token_logprobs=(
                    _first_token_logprobs(choices[0], chat=request.prompt is None)
                    if request.sampling.logprobs is not None else None
                ),
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise _RetryableError(f"unexpected reply: {_excerpt(json.dumps(payload))}") from None
        if len(texts) < wanted:  # a server that ignores n: asking again gives the same
            raise _FatalError(f"asked for n={wanted} choices, the server answered {len(texts)}")
        return result

    def close(self) -> None:
        """Close connections and stop the private event loop; the engine cannot be used afterwards."""
        if self._loop.is_closed():
            return
        if self._client is not None:
            self._submit(self._client.aclose()).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def list_served_models(config: EngineConfig) -> list[str]:
    """The models the first endpoint of ``config.base_urls`` serves (``GET /v1/models``), checked before a run.

    Raises EngineError in one line naming the endpoint, the status and the fix: an unreachable server, a
    rejected key, or a server that lists no model.
    """
    url = _normalise_url(config.base_urls[0]) if config.base_urls else ""
    if not url:
        raise EngineError("backend 'openai' needs at least one entry in engine.base_urls")
    headers = {}
    api_key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        response = httpx.get(url + "/v1/models", headers=headers, timeout=PREFLIGHT_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise EngineError(f"{url}: cannot reach the server ({type(exc).__name__}); is it running?") from None
    if response.status_code in (401, 403):
        raise EngineError(
            f"{url}: HTTP {response.status_code} on /v1/models; set {config.api_key_env} to a valid API key"
        )
    if response.status_code >= 400:
        raise EngineError(f"{url}: HTTP {response.status_code} on /v1/models: {_excerpt(response.text)}")
    try:
        models = [entry["id"] for entry in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise EngineError(f"{url}: /v1/models answered no model list: {_excerpt(response.text)}") from None
    if not models:
        raise EngineError(f"{url}: the server lists no model")
    if config.model and config.model not in models:
        raise EngineError(f"{url}: model {config.model!r} is not served; the server serves: {', '.join(models)}")
    return models
