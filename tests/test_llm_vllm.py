"""The in-process vLLM engine on the real default model (Gemma 3 270M).

One engine serves the whole module: vLLM takes ~20 s to start on CPU and one in-process LLM per
process is what it supports reliably.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from synth.config import EngineConfig  # noqa: E402
from synth.llm.base import Request, Sampling  # noqa: E402

pytestmark = pytest.mark.slow

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["yes", "no"]},
        "count": {"type": "integer", "enum": [1, 2, 3]},
    },
    "required": ["answer", "count"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine():
    from synth.llm import close_engines, get_engine
    from synth.llm.vllm_engine import VLLMEngine

    engine = get_engine(EngineConfig())
    assert isinstance(engine, VLLMEngine) and get_engine(EngineConfig()) is engine
    yield engine
    close_engines()


def test_generates_real_text_in_order(engine) -> None:
    prompts = ["The capital of France is", "Water boils at", "My favourite colour is", "One, two, three,"]
    requests = [Request(id=f"r{i}", prompt=p, sampling=Sampling(max_tokens=8)) for i, p in enumerate(prompts)]
    results = engine.generate(requests)
    assert [r.request_id for r in results] == ["r0", "r1", "r2", "r3"]
    for result in results:
        assert result.ok and result.text.strip()
        assert result.prompt_tokens >= 3 and 1 <= result.completion_tokens <= 8
        assert result.finish_reason in {"length", "stop"} and result.latency_s > 0
    assert "Paris" in results[0].text or "capital" in results[0].text  # the real model, not noise
    assert engine.model_name.startswith("gemma-3-270m-")


def test_seeded_sampling_is_reproducible_and_batch_independent(engine) -> None:
    sampling = Sampling(temperature=1.0, max_tokens=12, seed=1234)
    story = Request(id="s", prompt="Once upon a time", sampling=sampling)
    alone = engine.generate([story])[0].text
    neighbour = Request(id="x", prompt="Hello", sampling=Sampling(temperature=1.0, max_tokens=12))
    in_batch = engine.generate([neighbour, story])[1].text
    reseeded = Request(id="s", prompt="Once upon a time", sampling=Sampling(temperature=1.0, max_tokens=12, seed=99))
    assert alone == in_batch
    assert engine.generate([reseeded])[0].text != alone


def test_chat_messages_use_the_chat_template(engine) -> None:
    request = Request(id="c", messages=({"role": "user", "content": "Say hello."},), sampling=Sampling(max_tokens=8))
    [result] = engine.generate([request])
    assert result.ok and result.text and result.prompt_tokens > 5  # turn markers were added


def test_json_schema_output_parses(engine) -> None:
    requests = [
        Request(
            id=str(i),
            prompt=f"Question {i}: is the sky blue? Reply in JSON:",
            sampling=Sampling(max_tokens=40, temperature=0.8, seed=i),
            json_schema=ANSWER_SCHEMA,
        )
        for i in range(3)
    ]
    for result in engine.generate(requests):
        value = json.loads(result.text)
        assert value["answer"] in {"yes", "no"} and value["count"] in {1, 2, 3} and set(value) == {"answer", "count"}


def test_one_bad_request_does_not_poison_the_batch(engine) -> None:
    too_long = "word " * 5000  # over max_model_len (4096): vLLM rejects it
    requests = [
        Request(id="a", prompt="Good morning", sampling=Sampling(max_tokens=4)),
        Request(id="b", prompt=too_long, sampling=Sampling(max_tokens=4)),
        Request(id="c", messages=({"role": "user", "content": "Hi"},), sampling=Sampling(max_tokens=4)),
    ]
    a, b, c = engine.generate(requests)
    assert a.ok and c.ok
    assert not b.ok and b.text == "" and "4096" in b.error


def test_shared_prefixes_hit_the_prefix_cache(engine) -> None:
    prefix = "Here are examples of short questions and answers. " * 40  # several 128-token blocks
    requests = [Request(id=str(i), prompt=f"{prefix}Question {i}:", sampling=Sampling(max_tokens=2)) for i in range(4)]
    engine.generate(requests[:1])
    results = engine.generate(requests[1:])
    assert all(r.cached_tokens >= 128 for r in results)
    stats = engine.prefix_cache_stats()
    assert 0 < stats["hit_rate"] <= 1 and stats["cached_tokens"] >= 3 * 128


def test_prompts_sharing_a_prefix_in_one_batch_all_hit_the_cache(engine) -> None:
    # All four fit in one engine step: without prefilling the shared prefix first, those admitted with the first
    # one would find nothing cached.
    prefix = "Examples of questions people ask about rivers and the towns along them. " * 30
    requests = [Request(id=str(i), prompt=f"{prefix}Question {i}:", sampling=Sampling(max_tokens=2)) for i in range(4)]
    results = engine.generate(requests)
    assert all(r.ok for r in results)
    assert min(r.cached_tokens for r in results) >= 128, [r.cached_tokens for r in results]


def test_shared_prefixes_are_the_longest_and_not_nested() -> None:
    from synth.llm.vllm_engine import shared_prefixes

    a, b = "A" * 500, "B" * 450
    prompts = [a + "x1", b + "q", a + "y", a + "x2", b + "r", "C" * 900]
    # a+"x" is shared by two prompts and caches a for the third; b by two; the lone C prompt by none
    assert sorted(shared_prefixes(prompts, 400)) == sorted([a + "x", b])
    assert shared_prefixes(prompts, 460) == [a + "x"]
    assert shared_prefixes(["same " * 100] * 2, 400) == ["same " * 100]
    assert shared_prefixes([a], 1) == []


def test_worker_threads_share_the_engine(engine) -> None:
    # Prefect's thread task runner calls generate from several threads at once
    def one(i: int) -> str:
        return engine.generate([Request(id=str(i), prompt=f"Number {i} is", sampling=Sampling(max_tokens=3))])[0].text

    with ThreadPoolExecutor(3) as pool:
        texts = list(pool.map(one, range(3)))
    assert all(texts)
