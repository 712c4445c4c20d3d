"""6. Engine backends: in-process vLLM vs an OpenAI-compatible ``vllm serve`` on the same prompts.

The prompts are SAP summary requests (5-shot prefix + passage), built by ``SapRecipe.summary_request``. The
in-process side is polysynth's ``VLLMEngine`` (this process's engine); the server side is ``OpenAIEngine`` against
``synth.llm.model.serve_model_command`` on 127.0.0.1, started after the in-process runs (both on the same cores,
never at once) and always killed. The server runs in dev mode so its prefix cache can be reset like the
in-process one before every measured run. ``max_concurrency`` is swept 1, 2, 4, 8, 16; the concurrency needed to
saturate the server is the smallest that reaches 90 % of the best tokens/s of the sweep. The in-process engine
is measured before and after the server (their mean is the baseline), and once more with vLLM's engine-core
process on (``VLLM_ENABLE_V1_MULTIPROCESSING=1``, in a child process), which polysynth turns off on CPU.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from bench.common import ORIGINAL_ENV, ROOT, WORK, Context, Result, log, run_to_end, sap_config, timed

NAME = "engines"
TITLE = "6. Engine backends: in-process vLLM vs vllm serve (OpenAI API)"
CONCURRENCY = (1, 2, 4, 8, 16)
SATURATION = 0.90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log_path) -> subprocess.Popen:
    from synth.llm.model import serve_model_command
    from synth.llm.device import cpu_environment

    env = {k: v for k, v in ORIGINAL_ENV.items()}
    saved = os.environ.copy()
    try:  # cpu_environment reads os.environ to leave out what the user set: evaluate it against the original
        os.environ.clear()
        os.environ.update(ORIGINAL_ENV)
        env.update(cpu_environment(in_process=False))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    env.update({"VLLM_SERVER_DEV_MODE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"})
    argv = serve_model_command(None, "127.0.0.1", port)
    handle = open(log_path, "w")
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float = 600) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"vllm serve not healthy after {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and any child it started
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


def run(ctx: Context) -> Result:
    import httpx

    from synth.config import EngineConfig
    from synth.llm.openai_engine import OpenAIEngine
    from synth.recipes.sap.recipe import SapRecipe

    result = Result(NAME, TITLE)
    n = ctx.n(16)  # enough requests for max_concurrency 16 to matter
    config = sap_config(n, ["de"], WORK / "engines")
    recipe = SapRecipe(config, None, None)
    records = [r for _, r in zip(range(n), recipe.read_records())]
    requests = [recipe.summary_request(r) for r in records]
    engine = ctx.engine(config)

    def in_process() -> tuple[list, float]:
        engine.llm.reset_prefix_cache()
        with timed() as t:
            results = engine.generate(requests)
        return results, t.wall_s

    log(f"engines: in-process vLLM on {n} summary prompts (1/2)…")
    local, wall_a = in_process()
    local_tokens = sum(r.completion_tokens for r in local)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = WORK / "engines-server.log"
    WORK.mkdir(parents=True, exist_ok=True)
    log(f"engines: starting vllm serve on {url}…")
    proc = start_server(port, log_path)
    sweep = {}
    try:
        start_s = wait_healthy(proc, url)
        log(f"engines: server healthy after {start_s:.1f} s")
        # warm-up request, then one measured run per concurrency from a cold prefix cache
        warm = OpenAIEngine(EngineConfig(backend="openai", base_urls=[url], max_concurrency=1))
        warm.generate(requests[:1])
        warm.close()
        for c in CONCURRENCY:
            httpx.post(url + "/reset_prefix_cache", timeout=30)
            client = OpenAIEngine(EngineConfig(backend="openai", base_urls=[url], max_concurrency=c, timeout_s=900))
            log(f"engines: OpenAIEngine max_concurrency={c}…")
            with timed() as t:
                remote = client.generate(requests)
            client.close()
            errors = [r.error for r in remote if not r.ok]
            tokens = sum(r.completion_tokens for r in remote)
            same = sum(a.text == b.text for a, b in zip(local, remote))
            sweep[c] = {"wall_s": t.wall_s, "tokens": tokens, "tps": tokens / t.wall_s, "same": same, "errors": errors}
    finally:
        stop_server(proc)
        log("engines: server stopped")

    # polysynth's in-process engine with vLLM's engine-core process on (VLLM_ENABLE_V1_MULTIPROCESSING=1), which
    # overlaps scheduling/detokenising with the forward passes as the server does; a child process of its own.
    log("engines: VLLMEngine with VLLM_ENABLE_V1_MULTIPROCESSING=1 in a child process…")
    mp = multiprocessing_child(requests)
    log(f"engines: in-process vLLM on {n} summary prompts (2/2)…")
    local_b, wall_b = in_process()
    local_tokens_b = sum(r.completion_tokens for r in local_b)
    local_tps = (local_tokens + local_tokens_b) / (wall_a + wall_b)
    t_in_wall = (wall_a + wall_b) / 2

    best = max(v["tps"] for v in sweep.values())
    saturating = min(c for c, v in sweep.items() if v["tps"] >= SATURATION * best)
    result.headline.append(f"vllm serve + OpenAIEngine, best of the sweep / in-process VLLMEngine tokens/s: {best / local_tps:.2f} "
                           f"(saturates at max_concurrency={saturating}; no goal set)")
    if mp.get("ok"):
        result.headline.append(f"VLLMEngine with VLLM_ENABLE_V1_MULTIPROCESSING=1 / polysynth's default (0) tokens/s: "
                               f"{mp['tokens'] / mp['wall_s'] / local_tps:.2f}")
    result.add("prompts (SAP summary requests), max_tokens", f"{n}, {requests[0].sampling.max_tokens}")
    result.add("cost per kept row", "n/a: summary prompts only, no rows are checked or kept (tokens/s and s per summary below)")
    result.add("in-process: output tokens and wall s per summary", f"{(local_tokens + local_tokens_b) / (2 * n):.1f}, {t_in_wall / n:.2f}")
    result.add("in-process VLLMEngine (before and after the server): wall s / output tokens / tokens/s",
               f"{wall_a:.2f} + {wall_b:.2f} / {local_tokens} + {local_tokens_b} / {local_tps:.2f}")
    if mp.get("ok"):
        same_mp = sum(a.text == b for a, b in zip(local, mp["texts"]))
        result.add("VLLMEngine with VLLM_ENABLE_V1_MULTIPROCESSING=1: start s / wall s / tokens/s / ratio to in-process / same text",
                   f"{mp['start_s']:.1f} / {mp['wall_s']:.2f} / {mp['tokens'] / mp['wall_s']:.2f} / "
                   f"{mp['tokens'] / mp['wall_s'] / local_tps:.2f} / {same_mp}/{n}")
    else:
        result.add("VLLMEngine with VLLM_ENABLE_V1_MULTIPROCESSING=1", f"failed: {mp.get('error', '')[:300]}")
    result.add("vllm serve start to healthy s (in-process start, for comparison)", f"{start_s:.1f} ({ctx.engine_start_s or 0:.1f})")
    for c, v in sweep.items():
        result.add(f"OpenAIEngine max_concurrency={c}: wall s / tokens/s / ratio to in-process / same text",
                   f"{v['wall_s']:.2f} / {v['tps']:.2f} / {v['tps'] / local_tps:.2f} / {v['same']}/{n}"
                   + (f" / {len(v['errors'])} errors: {v['errors'][0]}" if v["errors"] else ""))
    result.add(f"concurrency that saturates the server (≥ {SATURATION:.0%} of best)", saturating)
    if any(v["same"] != n for v in sweep.values()):
        result.notes.append("Some server texts differ from the in-process ones at temperature 0 (batch composition "
                            "changes floating-point reductions); token counts are compared, not texts.")
    return result


MP_CHILD = """
import json, sys, time
from synth.config import EngineConfig
from synth.llm.base import Request, Sampling
from synth.llm.vllm_engine import VLLMEngine
job = json.load(open(sys.argv[1]))
requests = [Request(id=r["id"], prompt=r["prompt"], sampling=Sampling(**{**r["sampling"], "stop": tuple(r["sampling"]["stop"])}))
            for r in job]
t = time.perf_counter(); engine = VLLMEngine(EngineConfig()); start = time.perf_counter() - t
engine.generate(requests[:1])  # warm-up, as the in-process engine had
engine.llm.reset_prefix_cache()
t = time.perf_counter(); results = engine.generate(requests); wall = time.perf_counter() - t
with open(sys.argv[2], "w") as handle:
    json.dump({"ok": True, "start_s": start, "wall_s": wall, "tokens": sum(r.completion_tokens for r in results),
               "texts": [r.text for r in results]}, handle)
engine.close()  # shuts the engine-core process down; the parent also kills the process group afterwards
import os; os._exit(0)
"""


def multiprocessing_child(requests) -> dict:
    """Run MP_CHILD in its own session; read its result file; kill the whole group (vLLM's engine-core and
    worker processes) afterwards, so nothing outlives the benchmark and no inherited pipe keeps us waiting."""
    import json

    job = WORK / "engines-mp-job.json"
    out = WORK / "engines-mp-result.json"
    out.unlink(missing_ok=True)
    job.write_text(json.dumps([{"id": r.id, "prompt": r.prompt, "sampling": r.sampling.as_dict()} for r in requests]))
    env = {**ORIGINAL_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    run_to_end([sys.executable, "-c", MP_CHILD, str(job), str(out)], cwd=ROOT, env=env,
               log_path=WORK / "engines-mp.log", timeout_s=900)
    if out.exists():
        return json.loads(out.read_text())
    tail = (WORK / "engines-mp.log").read_text(errors="replace").strip().splitlines()[-1:]
    return {"ok": False, "error": f"exit {proc.returncode}: {tail}"}
