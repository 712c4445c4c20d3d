"""LLM engines behind one batched interface (see ``synth.llm.base``).

Engines are expensive to start (vLLM loads the model, ~25 s on CPU), so a process creates each
engine once and reuses it for every batch: :func:`get_engine` caches them by config. Importing this
package is cheap; vLLM is imported only when a ``vllm`` engine is created.

Example::

    from synth.config import EngineConfig
    from synth.llm import get_engine, close_engines
    from synth.llm.base import Request, Sampling

    engine = get_engine(EngineConfig())          # same object on every call with an equal config
    results = engine.generate([Request(id="a", prompt="Hello", sampling=Sampling(max_tokens=8))])
    close_engines()
"""

from __future__ import annotations

import atexit
import threading

from synth.config import EngineConfig
from synth.errors import EngineError
from synth.llm.base import Engine, Request, Result, Sampling, Usage, request_seed

__all__ = [
    "Engine",
    "Request",
    "Result",
    "Sampling",
    "Usage",
    "close_engines",
    "create_engine",
    "get_engine",
    "request_seed",
]

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def create_engine(config: EngineConfig) -> Engine:
    """A new engine for ``config.backend`` (``vllm``: in-process; ``openai``: HTTP endpoints)."""
    if config.backend == "vllm":
        from synth.llm.vllm_engine import VLLMEngine

        return VLLMEngine(config)
    if config.backend == "openai":
        from synth.llm.openai_engine import OpenAIEngine

        return OpenAIEngine(config)
    raise EngineError(f"unknown engine backend {config.backend!r}")


def get_engine(config: EngineConfig) -> Engine:
    """The process-wide engine for ``config``, created on first use (thread-safe). ``prompt_format`` is not part of
    the key: it changes what recipes send, not the engine, so both forms share one (one in-process vLLM)."""
    key = config.model_dump_json(exclude={"prompt_format"})
    with _lock:  # held during creation so that concurrent tasks never start a second vLLM
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = create_engine(config)
        return engine


def close_engines() -> None:
    """Close every cached engine (also run at interpreter exit)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.close()


atexit.register(close_engines)
