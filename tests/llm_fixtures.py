"""Test helpers for ``synth.llm``: a scriptable fake OpenAI server, a tiny random test model and a real
``vllm serve`` process.

Import what a test module needs (``from llm_fixtures import FakeOpenAIServer, fake_server``); pytest
picks up fixtures imported into a test module.

Example::

    def test_retry(fake_server):
        fake_server.script(Reply(500), Reply())      # first call 500, then the default completion
        ...
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest


@dataclass
class Reply:
    """One scripted answer of the fake server.

    ``body=None`` means a valid completion (or chat completion) reply; ``raw`` sends text as is;
    ``delay_s`` waits first (longer than the client timeout makes a timeout); ``drop`` closes the
    connection without answering.
    """

    status: int = 200
    body: Any = None
    raw: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False


@dataclass
class Seen:
    """A request the fake server received."""

    path: str
    body: Any
    headers: dict[str, str]


def completion_body(path: str, request: Any) -> dict[str, Any]:
    """A minimal valid reply for ``path`` that echoes the prompt or last message."""
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}
    if path.endswith("/models"):
        return {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
    if path.endswith("/chat/completions"):
        content = f"re: {request['messages'][-1]['content']}"
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        return {"choices": [choice], "usage": usage}
    return {"choices": [{"index": 0, "text": f"re: {request['prompt']}", "finish_reason": "length"}], "usage": usage}


class FakeOpenAIServer:
    """A threaded stdlib HTTP server that plays scripted replies, then valid ones; records requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self._by_prompt: dict[str, Reply] = {}
        self.models_reply: Reply | None = None  # what GET /v1/models answers (None: the model list)
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.default_delay_s = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                self._handle(None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self._handle(json.loads(self.rfile.read(length) or b"null"))

            def _handle(self, body: Any) -> None:
                reply = server._enter(Seen(self.path, body, {k.lower(): v for k, v in self.headers.items()}))
                try:
                    time.sleep(reply.delay_s)
                    if reply.drop:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if reply.raw is None:
                        payload = json.dumps(reply.body or completion_body(self.path, body)).encode()
                    else:
                        payload = reply.raw.encode()
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test); nothing to answer
                    pass
                finally:
                    server._leave()

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies`` in order, then with valid completions."""
        with self._lock:
            self._script = list(replies)

    def always(self, prompt: str, reply: Reply) -> None:
        """Answer every request for ``prompt`` with ``reply`` (takes precedence over the script)."""
        with self._lock:
            self._by_prompt[prompt] = reply

    def _enter(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if seen.path.endswith("/models"):  # the model listing (preflight) has its own reply, never the script's
                return self.models_reply or Reply()
            prompt = seen.body.get("prompt") if isinstance(seen.body, dict) else None
            if prompt in self._by_prompt:
                return self._by_prompt[prompt]
            return self._script.pop(0) if self._script else Reply(delay_s=self.default_delay_s)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def posts(self) -> list[Seen]:
        """The generation requests seen (model listing excluded)."""
        return [seen for seen in self.seen if not seen.path.endswith("/models")]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    yield server
    server.close()


@pytest.fixture
def second_fake_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    yield server
    server.close()


def free_port() -> int:
    """A TCP port nobody listens on right now (nor, most likely, in the next few seconds)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class VLLMServer:
    url: str
    model_path: Path
    start_s: float


TINY_MODEL_NAME = "tiny-llama-test"
_TINY_SEED = 1234


def _build_tiny(out_dir: Path) -> None:
    """A 2-layer random Llama with the default model's tokenizer: fast to load, output is noise."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from synth.llm.model import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head size 32: vLLM's CPU attention rejects 16
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(_TINY_SEED)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def tiny_test_model_path() -> Path:
    """Path of a tiny, seeded, randomly initialised Llama for engine tests where content does not matter (built
    once into the model cache, beside the default model it takes its tokenizer from)."""
    from synth.llm.model import cached_build, default_model_path

    default = default_model_path()
    name = f"{TINY_MODEL_NAME}-{default.name.rsplit('-', 1)[-1]}"
    return cached_build(name, _build_tiny, "Preparing tiny test model…")


def start_vllm_server(
    model_path: Path, *, timeout_s: float = 300.0
) -> tuple[subprocess.Popen[bytes], VLLMServer, Path]:
    """Start ``synth serve-model``'s command for ``model_path`` on 127.0.0.1; wait until /health answers."""
    from synth.llm.model import serve_model_command
    from synth.llm.device import cpu_environment

    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"polysynth-vllm-serve-{port}.log"
    env = {**os.environ, **cpu_environment(in_process=False), "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # own session: the teardown signals the whole group (API server, engine core, worker)
        process = subprocess.Popen(
            serve_model_command(str(model_path), "127.0.0.1", port),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, VLLMServer(url, model_path, time.monotonic() - started), log_path
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_process_group(process)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"vllm server did not become healthy within {timeout_s:.0f} s:\n{tail}")


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
    # the engine core / worker may outlive the API server for a moment
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[VLLMServer]:
    """A real OpenAI-compatible vLLM server of the tiny test model (module-scoped; always stopped)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    process, server, log_path = start_vllm_server(tiny_test_model_path())
    print(f"vllm server ready in {server.start_s:.1f} s (log: {log_path})", file=sys.stderr)
    try:
        yield server
    finally:
        stop_process_group(process)
