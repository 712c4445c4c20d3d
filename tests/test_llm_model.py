"""Engine factory, model cache and server command: fast tests, no vLLM start."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from llm_fixtures import FakeOpenAIServer, fake_server  # noqa: F401

from synth.config import EngineConfig
from synth.llm import close_engines, get_engine
from synth.llm.model import cached_build, resolve_model, serve_model_command
from synth.llm.device import cuda_available


def test_import_does_not_load_vllm() -> None:
    code = "import sys, synth.llm, synth.llm.vllm_engine, synth.llm.model; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_get_engine_reuses_one_engine_per_config(fake_server: FakeOpenAIServer) -> None:
    config = EngineConfig(backend="openai", base_urls=[fake_server.url])
    try:
        first = get_engine(config)
        assert get_engine(EngineConfig(backend="openai", base_urls=[fake_server.url])) is first
        assert get_engine(config.model_copy(update={"max_retries": 1})) is not first
    finally:
        close_engines()
    assert get_engine(config) is not first
    close_engines()


def test_resolve_model_passes_names_through() -> None:
    assert resolve_model("google/gemma-3-270m") == "google/gemma-3-270m"
    assert resolve_model("/models/x") == "/models/x"


def test_serve_model_command(tmp_path: Path) -> None:
    argv = serve_model_command(str(tmp_path), "127.0.0.1", 8123)
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--model") + 1] == str(tmp_path)
    assert argv[argv.index("--port") + 1] == "8123" and argv[argv.index("--host") + 1] == "127.0.0.1"
    names = argv[argv.index("--served-model-name") + 1 : argv.index("--served-model-name") + 3]
    assert names == [tmp_path.name, str(tmp_path)]
    assert "--enable-prefix-caching" in argv and "--enable-prompt-tokens-details" in argv
    assert ("--enforce-eager" in argv) == (not cuda_available())
    config = json.loads(argv[argv.index("--structured-outputs-config") + 1])
    assert config == {"backend": "xgrammar", "disable_any_whitespace": True}


def test_cached_build_is_atomic_and_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYSYNTH_CACHE", str(tmp_path))
    builds: list[int] = []

    def failing(out: Path) -> None:
        (out / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt  # a killed conversion

    with pytest.raises(KeyboardInterrupt):
        cached_build("m", failing, "building")
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []

    def slow(out: Path) -> None:
        builds.append(1)
        time.sleep(0.2)
        (out / "weights").write_text("ok")

    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(cached_build("m", slow, "building"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(set(paths)) == 1
    assert (paths[0] / "weights").read_text() == "ok"
