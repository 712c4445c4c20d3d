"""OpenAIEngine against a real vLLM server (``synth serve-model``'s command) of the tiny test model."""

from __future__ import annotations

import json
import os

import pytest
from llm_fixtures import VLLMServer, vllm_server  # noqa: F401

os.environ["HF_HUB_OFFLINE"] = "1"

from synth.config import EngineConfig  # noqa: E402
from synth.errors import EngineError  # noqa: E402
from synth.llm.base import Request, Sampling  # noqa: E402
from synth.llm.openai_engine import OpenAIEngine  # noqa: E402

pytestmark = pytest.mark.slow

CHOICE_SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["red", "green"]}, "n": {"type": "integer", "enum": [1, 2]}},
    "required": ["label", "n"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine(vllm_server: VLLMServer):
    engine = OpenAIEngine(EngineConfig(backend="openai", base_urls=[vllm_server.url], timeout_s=60, max_retries=1))
    yield engine
    engine.close()


def test_completions_chat_and_usage(engine: OpenAIEngine, vllm_server: VLLMServer) -> None:
    requests = [
        Request(id=f"p{i}", prompt=f"Prompt number {i}", sampling=Sampling(max_tokens=6, seed=i, temperature=0.5))
        for i in range(3)
    ]
    chat = ({"role": "user", "content": "Hello"},)
    requests.append(Request(id="chat", messages=chat, sampling=Sampling(max_tokens=6)))
    results = engine.generate(requests)
    assert [r.request_id for r in results] == ["p0", "p1", "p2", "chat"]
    for result in results:
        assert result.ok, result.error
        assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= 6
    assert engine.model_name == vllm_server.model_path.name  # found through /v1/models


def test_seed_is_passed_through(engine: OpenAIEngine) -> None:
    request = Request(id="s", prompt="Seeded", sampling=Sampling(temperature=1.0, max_tokens=8, seed=42))
    first, second = engine.generate([request, request])
    assert first.text == second.text


def test_json_schema_is_enforced_by_the_server(engine: OpenAIEngine) -> None:
    schema, chat = CHOICE_SCHEMA, ({"role": "user", "content": "JSON"},)
    requests = [
        Request(id="p", prompt="JSON:", sampling=Sampling(max_tokens=30, temperature=1.0, seed=3), json_schema=schema),
        Request(id="c", messages=chat, sampling=Sampling(max_tokens=30, temperature=1.0, seed=4), json_schema=schema),
    ]
    for result in engine.generate(requests):
        assert result.ok, result.error
        value = json.loads(result.text)  # a random model: only the grammar makes this parse
        assert value["label"] in {"red", "green"} and value["n"] in {1, 2}


def test_a_prompt_over_the_servers_context_stops_with_the_fix(engine: OpenAIEngine) -> None:
    """vLLM's own 400 for a prompt longer than the context: no retry and no later request can fix it, so the
    run stops at once, saying what to change (the message is the real server's)."""
    too_long = Request(id="long", prompt="word " * 5000, sampling=Sampling(max_tokens=4))
    fine = Request(id="ok", prompt="Short", sampling=Sampling(max_tokens=4))
    with pytest.raises(EngineError, match=r"HTTP 400.*maximum context length.*--max-model-len"):
        engine.generate([too_long, fine])
    [after] = engine.generate([fine])  # the engine itself is still usable
    assert after.ok
