"""OpenAIEngine against a scripted local HTTP server: retries, timeouts, balancing, errors."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from llm_fixtures import FakeOpenAIServer, Reply, fake_server, free_port, second_fake_server  # noqa: F401

from synth.config import EngineConfig
from synth.errors import EngineError
from synth.llm.base import Request, Sampling
from synth.llm.openai_engine import OpenAIEngine


def make_engine(*urls: str, **overrides) -> OpenAIEngine:
    options = {"backend": "openai", "base_urls": list(urls), "timeout_s": 5.0, "max_retries": 3, **overrides}
    return OpenAIEngine(EngineConfig(**options), backoff_s=0.01, max_backoff_s=0.05)


def prompt(i: int | str = 0, **sampling) -> Request:
    return Request(id=str(i), prompt=f"p{i}", sampling=Sampling(**sampling))


@pytest.fixture
def engine(fake_server: FakeOpenAIServer):
    engine = make_engine(fake_server.url)
    yield engine
    engine.close()


def test_prompt_and_chat_requests_and_usage(engine: OpenAIEngine, fake_server: FakeOpenAIServer) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    requests = [
        prompt(0, temperature=0.7, seed=11, stop=("\n",), repetition_penalty=1.1),
        Request(id="c", messages=({"role": "user", "content": "hi"},), sampling=Sampling(), json_schema=schema),
    ]
    first, second = engine.generate(requests)
    assert (first.request_id, first.text, first.finish_reason) == ("0", "re: p0", "length")
    assert (first.prompt_tokens, first.completion_tokens, first.cached_tokens) == (5, 3, 2)
    assert (second.request_id, second.text) == ("c", "re: hi")
    assert engine.model_name == "fake-model"  # asked /v1/models once, since engine.model is unset
    bodies = {seen.path: seen.body for seen in fake_server.posts()}
    completion, chat = bodies["/v1/completions"], bodies["/v1/chat/completions"]
    assert completion["model"] == "fake-model" and completion["seed"] == 11 and completion["stop"] == ["\n"]
    assert completion["repetition_penalty"] == 1.1 and "response_format" not in completion
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    assert chat["response_format"]["json_schema"]["schema"] == schema
    assert sum(seen.path.endswith("/models") for seen in fake_server.seen) == 1


def test_results_in_request_order(engine: OpenAIEngine, fake_server: FakeOpenAIServer) -> None:
    # the first request is answered last
    fake_server.script(Reply(delay_s=0.3))
    results = engine.generate([prompt(i) for i in range(6)])
    assert [r.request_id for r in results] == [str(i) for i in range(6)]
    assert [r.text for r in results] == [f"re: p{i}" for i in range(6)]


def test_500_then_success_is_retried(engine: OpenAIEngine, fake_server: FakeOpenAIServer) -> None:
    engine.generate([prompt()])  # resolve the model name first, so the script hits the completion
    fake_server.script(Reply(500, raw="boom"))
    [result] = engine.generate([prompt()])
    assert result.ok and result.text == "re: p0"
    assert len(fake_server.posts()) == 3


def test_429_honours_retry_after(engine: OpenAIEngine, fake_server: FakeOpenAIServer) -> None:
    engine.generate([prompt()])
    fake_server.script(Reply(429, raw="slow down", headers={"Retry-After": "1"}))
    started = time.monotonic()
    [result] = engine.generate([prompt()])
    assert result.ok
    assert time.monotonic() - started >= 0.9


def test_timeout_is_retried_then_reported(fake_server: FakeOpenAIServer) -> None:
    engine = make_engine(fake_server.url, timeout_s=0.3, max_retries=1, model="m")
    try:
        fake_server.script(Reply(delay_s=1.0))
        [result] = engine.generate([prompt()])
        assert result.ok  # the retry got a prompt answer
        fake_server.script(Reply(delay_s=1.0), Reply(delay_s=1.0))
        [result] = engine.generate([prompt()])
        assert not result.ok and result.text == ""
        assert fake_server.url in result.error and "no reply within 0.3 s" in result.error
        assert "2 tries" in result.error
    finally:
        engine.close()


def test_dropped_connection_is_retried(fake_server: FakeOpenAIServer) -> None:
    engine = make_engine(fake_server.url, model="m")
    try:
        fake_server.script(Reply(drop=True))
        [result] = engine.generate([prompt()])
        assert result.ok and len(fake_server.posts()) == 2
    finally:
        engine.close()


def test_non_json_reply_fails_the_request_only(fake_server: FakeOpenAIServer) -> None:
    engine = make_engine(fake_server.url, model="m", max_retries=2)
    try:
        fake_server.always("p0", Reply(raw="<html>gateway</html>"))
        bad, good = engine.generate([prompt(0), prompt(1)])
        assert not bad.ok and fake_server.url in bad.error and "not JSON" in bad.error
        assert "3 tries" in bad.error
        assert good.ok
    finally:
        engine.close()


def test_client_error_is_not_retried(fake_server: FakeOpenAIServer) -> None:
    engine = make_engine(fake_server.url, model="m")
    try:
        fake_server.script(Reply(400, raw='{"error": "prompt too long"}'))
        [result] = engine.generate([prompt()])
        assert not result.ok and "HTTP 400" in result.error and "prompt too long" in result.error
        assert len(fake_server.posts()) == 1
    finally:
        engine.close()


def test_all_endpoints_down_raises_naming_them() -> None:
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}/v1"]
    engine = make_engine(*urls, model="m", max_retries=2)
    try:
        with pytest.raises(EngineError) as caught:
            engine.generate([prompt(0), prompt(1)])
        assert urls[0] in str(caught.value) and urls[1].removesuffix("/v1") in str(caught.value)
    finally:
        engine.close()


def test_dead_endpoint_is_routed_around(fake_server: FakeOpenAIServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    engine = make_engine(dead, fake_server.url, model="m")
    try:
        results = engine.generate([prompt(i) for i in range(8)])
        assert all(r.ok for r in results)
    finally:
        engine.close()


def test_load_is_balanced_across_endpoints(fake_server: FakeOpenAIServer, second_fake_server: FakeOpenAIServer) -> None:
    fake_server.default_delay_s = second_fake_server.default_delay_s = 0.05
    engine = make_engine(fake_server.url, second_fake_server.url, model="m", max_concurrency=4)
    try:
        assert all(r.ok for r in engine.generate([prompt(i) for i in range(20)]))
        counts = (len(fake_server.posts()), len(second_fake_server.posts()))
        assert sum(counts) == 20 and min(counts) >= 8, counts
        assert max(fake_server.max_in_flight, second_fake_server.max_in_flight) <= 4
    finally:
        engine.close()


def test_concurrency_is_bounded_per_endpoint(fake_server: FakeOpenAIServer) -> None:
    fake_server.default_delay_s = 0.05
    engine = make_engine(fake_server.url, model="m", max_concurrency=3)
    try:
        # two threads share the bound: the engine is used from several Prefect task threads
        threads = [threading.Thread(target=engine.generate, args=([prompt(i) for i in range(9)],)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(fake_server.posts()) == 18
        assert fake_server.max_in_flight == 3
    finally:
        engine.close()


def test_generate_works_inside_a_running_event_loop(engine: OpenAIEngine) -> None:
    async def main() -> str:
        return engine.generate([prompt()])[0].text

    assert asyncio.run(main()) == "re: p0"


def test_api_key_is_sent_from_the_environment(fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYSYNTH_TEST_KEY", "sk-secret")
    engine = make_engine(fake_server.url, model="m", api_key_env="POLYSYNTH_TEST_KEY")
    try:
        fake_server.script(Reply(401, raw="unauthorized"))
        with pytest.raises(EngineError, match="HTTP 401.*set POLYSYNTH_TEST_KEY") as caught:
            engine.generate([prompt()])  # a 401 stops everything: no other request can get past it
        assert fake_server.posts()[0].headers["authorization"] == "Bearer sk-secret"
        assert "sk-secret" not in str(caught.value)
    finally:
        engine.close()


def test_closed_engine_refuses_work(fake_server: FakeOpenAIServer) -> None:
    engine = make_engine(fake_server.url, model="m")
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineError):
        engine.generate([prompt()])


def test_n_candidates_come_back_in_choice_order(engine: OpenAIEngine, fake_server: FakeOpenAIServer) -> None:
    choices = [{"index": i, "text": f"c{i}", "finish_reason": "stop" if i else "length"} for i in (2, 0, 1)]
    usage = {"prompt_tokens": 5, "completion_tokens": 9}
    fake_server.script(Reply(body={"choices": choices, "usage": usage}))
    [result] = engine.generate([prompt(0, n=3, temperature=0.7, seed=4)])
    assert (result.texts, result.finish_reasons) == (["c0", "c1", "c2"], ["length", "stop", "stop"])
    assert (result.text, result.completion_tokens) == ("c0", 9) and fake_server.posts()[0].body["n"] == 3


def test_one_sample_requests_do_not_send_n(engine: OpenAIEngine, fake_server: FakeOpenAIServer) -> None:
    engine.generate([prompt(0)])
    assert "n" not in fake_server.posts()[0].body


def test_a_server_that_ignores_n_fails_the_request_without_retries(fake_server: FakeOpenAIServer) -> None:
    engine = make_engine(fake_server.url, model="m")
    try:
        [result] = engine.generate([prompt(0, n=3, temperature=0.7)])  # the fake answers one choice
        assert not result.ok and "n=3" in result.error and len(fake_server.posts()) == 1
    finally:
        engine.close()
