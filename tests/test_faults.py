"""Engine faults end to end: a run through the pipeline against OpenAI-compatible servers that misbehave.

Every test runs SAP (1 summary + 2 queries per passage) through ``synth.pipeline.run_recipe`` — or, for the
endpoint going down for good, through ``synth run`` and its Prefect flow — with ``engine.backend: openai`` pointed at
a local HTTP server: the scriptable fake of ``tests/llm_fixtures.py``, or :class:`FlakyServer` below, which can die
after N completions and come back on the same port. What must hold:

* transient faults (HTTP 500/429, a reply slower than ``engine.timeout_s``, a dropped connection, a body that is
  not JSON, truncated JSON, JSON without ``choices``) are retried with backoff: the run completes with exactly the
  rows of a run without faults;
* a request that keeps failing becomes rejected rows with reason ``engine_error`` (never a missing row, never an
  empty batch passed on as data); the rest of the run is unaffected;
* an endpoint that dies and comes back within the retry budget costs nothing;
* an endpoint that stays down stops the run with an error naming the endpoint, keeps every finished batch, and a
  rerun once it is back generates only what is missing;
* nothing hangs: every test has a timeout, and a server that never answers gives ``engine_error`` rows in bounded time.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from synth.config_file import load_config
from synth.errors import EngineError
from synth.pipeline import IncompleteRunError, run_recipe
from synth.store.segments import SegmentStore
from tests.bad_inputs.cli_harness import (
    CORPUS,
    error_line,
    sap_config_text,
    shard_rows,
    synth_cli,
    temp_files,
)
from tests.llm_fixtures import FakeOpenAIServer, Reply, completion_body, fake_server, free_port  # noqa: F401

PASSAGES = Path(__file__).resolve().parent.parent / "data" / "samples" / "wiki_passages.jsonl"
LIMIT, BATCH = 6, 2  # 3 batches of 2 passages: 2 summaries + 4 queries = 6 engine calls per batch
CALLS_PER_BATCH = 6
LANGUAGES = ("de", "zh")


def _config(tmp_path: Path, url: str, name: str = "run", **engine: Any):
    """A SAP config on the sample passages whose engine is the server at ``url`` (``engine``: timeout_s, max_retries)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(sap_config_text(PASSAGES, url, languages=list(LANGUAGES), batch_size=BATCH, **engine), encoding="utf-8")
    return load_config(path, overrides={"input.limit": LIMIT, "output.dir": str(tmp_path / name)})


def _rows(out: Path) -> list[tuple]:
    """What a run produced, without the wall clock: (group, id, reason, summary, query, source_id, lang) per row."""
    return sorted(
        (r["_group"], r["id"], r["reject_reason"], r["summary"], r["query"], r["source_id"], r["lang"])
        for r in shard_rows(out, "sap")
    )


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> list[tuple]:
    """The rows of a run against a well-behaved server (the fake answers deterministically)."""
    tmp = tmp_path_factory.mktemp("baseline")
    server = FakeOpenAIServer()
    try:
        run_recipe(_config(tmp, server.url))
    finally:
        server.close()
    rows = _rows(tmp / "run")
    assert len(rows) == LIMIT * len(LANGUAGES) and not [r for r in rows if r[2] == "engine_error"]
    return rows


FAULTS = {
    "http-500": Reply(500, raw="internal error"),
    "http-429-retry-after": Reply(429, raw="slow down", headers={"Retry-After": "1"}),
    "timeout": Reply(delay_s=3.0),
    "dropped-connection": Reply(drop=True),
    "not-json": Reply(raw="<html>502 Bad Gateway</html>"),
    "truncated-json": Reply(raw='{"choices": [{"index": 0, "text": "Wie hoch'),
    "json-without-choices": Reply(body={"object": "text_completion", "usage": {}}),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_transient_faults_are_retried_and_the_run_completes(fault, baseline, fake_server, tmp_path):
    fake_server.script(*[FAULTS[fault]] * 4)  # the first 4 requests fail once each (3 tries per request)
    started = time.monotonic()
    summary = run_recipe(_config(tmp_path, fake_server.url, timeout_s=1.0))
    assert summary.units_generated == summary.units_total == LIMIT
    assert _rows(tmp_path / "run") == baseline
    assert len(fake_server.posts()) == LIMIT * (1 + len(LANGUAGES)) + 4, "every failed try was retried once"
    if fault == "http-429-retry-after":
        assert time.monotonic() - started >= 1.0, "Retry-After was not honoured"


@pytest.mark.timeout(120)
def test_a_request_that_keeps_failing_leaves_its_unit_not_done(baseline, fake_server, tmp_path):
    from synth.recipes.sap.recipe import SapRecipe

    config = _config(tmp_path, fake_server.url)
    recipe = SapRecipe(config, None, None)
    records = {r["source_id"]: r for r in list(recipe.read_records())[:LIMIT]}
    first, second = list(records)[1], list(records)[4]
    # one passage's summary and another passage's German query fail on every try
    fake_server.always(recipe.summary_request(records[first]).prompt, Reply(500, raw="model crashed"))
    summary_of_second = next(r[3] for r in baseline if r[1] == _row_id(second, "de", baseline))
    query = recipe.query_request(records[second], summary_of_second, "de").prompt
    fake_server.always(query, Reply(raw="not json at all"))

    with pytest.raises(IncompleteRunError) as caught:
        run_recipe(config)
    summary = caught.value.summary
    assert (summary.units_failed, summary.units_total) == (2, LIMIT)
    assert "2 of 6 units failed" in str(caught.value) and "rerun" in str(caught.value)
    assert summary.usage["failed_calls"] == 2
    rows = shard_rows(tmp_path / "run", "sap")
    # a failed unit is not done: none of its rows is published, every other unit's rows are
    assert {r["source_id"] for r in rows} == set(records) - {first, second}
    assert not [r for r in rows if r["reject_reason"] == "engine_error"]
    assert _rows(tmp_path / "run") == [r for r in baseline if r[1] in {x["id"] for x in rows}]
    # the server recovers: the rerun asks only for what failed (an error is never stored as a result)
    fake_server._by_prompt.clear()
    before = len(fake_server.posts())
    again = run_recipe(config)
    # the first passage: its summary and both queries; the second: only its German query
    assert again.units_generated == 2 and len(fake_server.posts()) - before == 4 == again.usage["calls"]
    assert again.usage["reused"] == 2  # the second passage's summary and Chinese query
    assert _rows(tmp_path / "run") == baseline


def _row_id(source_id: str, lang: str, rows: list[tuple]) -> str:
    return next(r[1] for r in rows if (r[5], r[6]) == (source_id, lang))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("recipe", ["sap", "cod"])
def test_every_request_failing_never_passes_an_empty_batch_on(recipe, fake_server, tmp_path):
    """A reachable server that fails everything: every unit stays not done, nothing is published as data, and
    the run ends with an error that counts them; a rerun would generate them all."""
    fake_server.script(*[Reply(503, raw="overloaded")] * 1000)
    if recipe == "sap":
        config = _config(tmp_path, fake_server.url, max_retries=1)
        units = LIMIT
    else:
        path = tmp_path / "cod.yaml"
        path.write_text(
            f"recipe: cod\ninput:\n  path: {CORPUS / 'cod' / 'duplicated_ids.json'}\nlanguages: [sw]\n"
            f"engine:\n  backend: openai\n  base_urls: [{fake_server.url}]\n  model: fake-model\n  max_retries: 1\n"
            "runner:\n  retries: 0\n",
            encoding="utf-8",
        )
        config = load_config(path, overrides={"input.limit": 2, "output.dir": str(tmp_path / "run")})
        units = 2
    with pytest.raises(IncompleteRunError) as caught:
        run_recipe(config)
    assert (caught.value.summary.units_failed, caught.value.summary.units_total) == (units, units)
    assert shard_rows(tmp_path / "run", recipe) == []
    assert len(SegmentStore(tmp_path / "run", recipe).done_keys()) == 0


@pytest.mark.timeout(120)
def test_a_server_that_never_answers_fails_every_unit_in_bounded_time(fake_server, tmp_path):
    fake_server.default_delay_s = 30.0
    started = time.monotonic()
    with pytest.raises(IncompleteRunError) as caught:
        run_recipe(_config(tmp_path, fake_server.url, timeout_s=0.5, max_retries=1))
    assert caught.value.summary.units_failed == LIMIT
    assert shard_rows(tmp_path / "run", "sap") == []
    assert time.monotonic() - started < 60


# --- an endpoint that dies ------------------------------------------------------------------------------------------


class FlakyServer:
    """An OpenAI-compatible server on a fixed port that stops listening after ``die_after`` completions and,
    ``back_after_s`` later (``None``: never), listens again on the same port. Answers like the fake server."""

    def __init__(self, die_after: int | None = None, back_after_s: float | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.die_after, self.back_after_s = die_after, back_after_s
        self.completions = 0
        self.deaths = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.start()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the model listing of the preflight
                payload = json.dumps(completion_body(self.path, None)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                payload = json.dumps(completion_body(self.path, body)).encode()
                server._completed()  # the last completion before dying closes the port before it answers
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        self._httpd = httpd

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def _completed(self) -> None:
        with self._lock:
            self.completions += 1
            dies = self.die_after is not None and self.completions == self.die_after
        if dies:
            self.deaths += 1
            self.stop()  # no new connection gets through from now on (this one is already accepted)
            if self.back_after_s is not None:
                threading.Timer(self.back_after_s, self.start).start()


@pytest.fixture
def flaky():
    servers: list[FlakyServer] = []

    def make(**kwargs: Any) -> FlakyServer:
        servers.append(FlakyServer(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.mark.timeout(120)
def test_endpoint_dies_mid_run_and_comes_back(baseline, flaky, tmp_path):
    # dies inside the second batch's query step, with requests in flight (not at a batch boundary)
    server = flaky(die_after=CALLS_PER_BATCH + 3, back_after_s=2.0)
    summary = run_recipe(_config(tmp_path, server.url, max_retries=6))
    assert server.deaths == 1
    assert summary.units_generated == summary.units_total == LIMIT
    assert _rows(tmp_path / "run") == baseline


@pytest.mark.timeout(120)
def test_endpoint_down_for_good_stops_naming_it_and_keeps_finished_batches(baseline, flaky, tmp_path):
    server = flaky(die_after=CALLS_PER_BATCH)
    config = _config(tmp_path, server.url, max_retries=1)
    out = tmp_path / "run"
    with pytest.raises(EngineError) as caught:
        run_recipe(config)
    assert server.url in str(caught.value) and "no endpoint reachable" in str(caught.value)
    assert len(SegmentStore(out, "sap").done_keys()) == BATCH, "the finished batch was not kept"
    assert not temp_files(out) and not (out / ".lock").read_text()
    server.start()  # back on the same port: the rerun generates only what is missing
    summary = run_recipe(config)
    assert (summary.units_generated, summary.units_total) == (LIMIT - BATCH, LIMIT)
    assert _rows(out) == baseline


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_endpoint_down_through_the_cli_flow(baseline, flaky, tmp_path):
    """``synth run`` (Prefect flow, one task retry) against an endpoint that dies after the first batch."""
    server = flaky(die_after=CALLS_PER_BATCH)
    config_path = tmp_path / "run.yaml"
    config_path.write_text(
        sap_config_text(PASSAGES, server.url, languages=list(LANGUAGES), batch_size=BATCH, max_retries=1, task_retries=1),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    proc = synth_cli("run", "sap", "--config", str(config_path), "--out", str(out), "--limit", str(LIMIT), timeout=300)
    line = error_line(proc, prefect_logs=True)
    assert server.url in line and "no endpoint reachable" in line
    assert len(SegmentStore(out, "sap").done_keys()) == BATCH
    assert not temp_files(out) and not (out / ".lock").read_text()
    server.start()
    summary = run_recipe(load_config(config_path, overrides={"input.limit": LIMIT, "output.dir": str(out)}))
    assert (summary.units_generated, summary.units_total) == (LIMIT - BATCH, LIMIT)
    assert _rows(out) == baseline


# --- failures no retry can fix: the run stops at once, in one line --------------------------------------------------


@pytest.mark.timeout(60)
def test_a_401_server_stops_the_cli_in_seconds_with_one_line(fake_server, tmp_path):
    fake_server.models_reply = Reply(401, raw='{"error": "invalid api key"}')
    config_path = tmp_path / "run.yaml"
    config_path.write_text(sap_config_text(PASSAGES, fake_server.url, languages=list(LANGUAGES), batch_size=BATCH))
    out = tmp_path / "out"
    started = time.monotonic()
    proc = synth_cli("run", "sap", "--config", str(config_path), "--out", str(out), "--limit", str(LIMIT), timeout=60)
    line = error_line(proc)
    assert proc.returncode == 2 and time.monotonic() - started < 30
    assert fake_server.url in line and "HTTP 401" in line and "OPENAI_API_KEY" in line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert fake_server.posts() == [] and not out.exists()


@pytest.mark.timeout(60)
def test_a_model_the_server_does_not_serve_is_named_with_what_it_serves(fake_server, tmp_path):
    config = _config(tmp_path, fake_server.url)
    config = config.model_copy(update={"engine": config.engine.model_copy(update={"model": "llama-70b"})})
    with pytest.raises(EngineError, match=r"model 'llama-70b' is not served; the server serves: fake-model"):
        run_recipe(config)
    assert fake_server.posts() == []


@pytest.mark.timeout(60)
def test_a_401_in_the_middle_of_a_run_stops_it_at_the_first_occurrence(fake_server, tmp_path):
    """The key is revoked after the preflight: the first 401 stops the run, finished units are kept."""
    config = _config(tmp_path, fake_server.url, max_retries=3)
    run_recipe(config.model_copy(update={"input": config.input.model_copy(update={"limit": BATCH})}))
    fake_server.script(*[Reply(401, raw="revoked")] * 100)
    before = len(fake_server.posts())
    with pytest.raises(EngineError, match=r"HTTP 401.*set OPENAI_API_KEY"):
        run_recipe(config)
    assert len(fake_server.posts()) - before <= CALLS_PER_BATCH, "the run went on after the first 401"
    assert len(SegmentStore(tmp_path / "run", "sap").done_keys()) == BATCH


@pytest.mark.timeout(60)
def test_model_null_records_the_model_the_server_serves(fake_server, tmp_path):
    """The documented `synth serve-model` setup (engine.model: null): every row names the served model."""
    config = _config(tmp_path, fake_server.url)
    config = config.model_copy(update={"engine": config.engine.model_copy(update={"model": None})})
    summary = run_recipe(config)
    rows = shard_rows(tmp_path / "run", "sap")
    assert summary.model == "fake-model" and len(rows) == LIMIT * len(LANGUAGES)
    assert {r["model"] for r in rows} == {"fake-model"}


@pytest.mark.timeout(60)
def test_a_prompt_longer_than_the_context_stops_the_run_naming_the_fix(fake_server, tmp_path):
    fake_server.script(Reply(400, raw='{"error": {"message": "This model\'s maximum context length is 2048 tokens."}}'))
    with pytest.raises(EngineError, match=r"HTTP 400.*maximum context length.*--max-model-len"):
        run_recipe(_config(tmp_path, fake_server.url))
    assert len(fake_server.posts()) <= BATCH, "the run went on after the first context overflow"
