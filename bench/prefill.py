"""8. Prefill on CPU: what a small SAP run pays before its first output token, and what cuts it.

On 2 CPU cores a small SAP run is prefill-bound: every prompt is a 5-shot prefix (~1k tokens) and a passage
(~250 tokens); the first request of each group (the summaries; each target language's queries) pays its whole
prefix, the rest only their tail past the last full KV block they share. Measured here:

* **prompt tokens** per passage, and the **best possible prefix-cache hit rate** of the work (each prompt's
  longest block-aligned prefix shared with an earlier prompt), for KV block sizes 16…128 and for ``sap.shots``
  = all (5), 3 and 2 — from the tokenizer alone, no engine;
* **dtype**: prefill time of a 512-token SAP prompt with the model in float32 vs bfloat16, A B B A in one process,
  judged by bench.common.verdict (float32 / mean of the two bfloat16 runs around it; those must agree within
  15 %). On CPUs without bf16 units (AVX2) vLLM falls back to torch's bf16 matmuls, which are far slower;
* **shots**, each in its own fresh child process (engine start, warm-up, Prefect and LID start kept out), through
  the real SAP flow: ``sap.shots`` all (5), 3 and 2. Shots change the texts, so their **keep rate** (kept rows /
  all rows, deterministic at temperature 0) is the decision basis, with prompt tokens per passage, cache hits
  and cost per kept row.

``python -m bench.prefill --child JOB OUT`` is one variant's child.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any

from bench.common import (ORIGINAL_ENV, ROOT, WORK, Context, Repeat, Result, load_average, log, per_kept_row,
                          run_to_end, sap_config, timed, verdict)

NAME = "prefill"
TITLE = "8. Prefill on CPU: prompt tokens, prefix-cache hits, shots, dtype"
DEMO = (3, ["de", "zh"])  # the demo's SAP step (data/configs/demo.yaml)
KEEP = (8, ["de", "hi", "sw", "zh"])  # the keep-rate workload of issue 20
BLOCK_SIZES = (16, 32, 64, 128)
CHILD_TIMEOUT_S = 3600
DTYPE_ROUNDS = 3


# -- static: tokens and the best possible cache hits --------------------------------------------------------
def shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def best_cached(prompts: list[list[int]], block_size: int) -> int:
    """Tokens a prefix cache with ``block_size``-token blocks (and room for everything) could serve: each prompt's
    longest prefix shared with an earlier one, cut to whole blocks (the last prompt token is always computed)."""
    total = 0
    for i, tokens in enumerate(prompts):
        share = max((shared_prefix(tokens, other) for other in prompts[:i]), default=0)
        total += (min(share, len(tokens) - 1) // block_size) * block_size
    return total


def token_table(passages: int, languages: list[str], shots: int | None) -> dict[str, Any]:
    """Prompt tokens of the SAP work (placeholder summaries of typical length) and best cache hits per block size."""
    from transformers import AutoTokenizer

    from synth.llm.model import resolve_model
    from synth.recipes.sap.recipe import SapRecipe

    config = sap_config(passages, languages, WORK / "prefill" / "tokens", overrides={"sap.shots": shots})
    recipe = SapRecipe(config, None, None)
    records = [r for _, r in zip(range(passages), recipe.read_records())]
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.engine.model))
    encode = lambda text: tokenizer(text)["input_ids"]  # noqa: E731
    summary = [encode(recipe.summary_request(r).prompt) for r in records]
    jobs = sorted(((lang, i) for i, _ in enumerate(records) for lang in languages))
    placeholder = "The passage describes the main subject, where it is and why it is known."
    query = [encode(recipe.query_request(records[i], placeholder, lang).prompt) for lang, i in jobs]
    total = sum(map(len, summary)) + sum(map(len, query))
    return {
        "prompt_tokens": total,
        "per_passage": total / passages,
        "summary_prefix": len(encode(recipe.summary_prefix("en"))),
        "best": {bs: (best_cached(summary, bs) + best_cached(query, bs)) / total for bs in BLOCK_SIZES},
    }


def dtype_prefill(rounds: int, length: int = 512) -> tuple[list[Repeat], int]:
    """Forward passes (prefill, no KV cache, last logits only) of the first ``length`` tokens of a demo summary
    prompt with the model in bfloat16 and in float32, A B B A per round: each round's figure is float32 time /
    mean of the two bfloat16 times around it (bench.common.verdict judges the drift)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synth.llm.model import resolve_model
    from synth.recipes.sap.recipe import SapRecipe

    config = sap_config(1, ["de"], WORK / "prefill" / "tokens")
    recipe = SapRecipe(config, None, None)
    record = next(iter(recipe.read_records()))
    path = resolve_model(config.engine.model)
    ids = AutoTokenizer.from_pretrained(path)(recipe.summary_request(record).prompt, return_tensors="pt")["input_ids"][:, :length]
    models = {dt: AutoModelForCausalLM.from_pretrained(path, dtype=dt).eval() for dt in (torch.bfloat16, torch.float32)}

    def once(dtype) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            models[dtype](ids, use_cache=False, logits_to_keep=1)
        return time.perf_counter() - started

    for dtype in models:  # first-call costs
        once(dtype)
    repeats = []
    for number in range(1, rounds + 1):
        a1, b1, b2, a2 = once(torch.bfloat16), once(torch.float32), once(torch.float32), once(torch.bfloat16)
        repeats.append(Repeat(((b1 + b2) / 2) / ((a1 + a2) / 2), a1, a2))
        log(f"prefill: dtype round {number}: float32 {b1:.2f}/{b2:.2f} s, bfloat16 {a1:.2f}/{a2:.2f} s")
    return repeats, int(ids.shape[1])


# -- a variant in a fresh child ---------------------------------------------------------------------------
def child_main(job_path: str, out_path: str) -> None:
    """One variant: engine, warm-up, Prefect + LID start, then the SAP flow once (prefix cache reset before)."""
    job = json.loads(open(job_path, encoding="utf-8").read())
    from pathlib import Path

    from bench.overhead import warm_up
    from flows.recipe import run_flow

    out = Path(job["out"])
    config = sap_config(job["passages"], job["languages"], out, overrides=job["overrides"])
    ctx = Context(1.0)
    starts = warm_up(ctx, config)
    engine = ctx.engine(config)
    shutil.rmtree(out, ignore_errors=True)
    engine.llm.reset_prefix_cache()
    load_before = load_average()
    with timed() as t:
        summary = run_flow(config)
    report = {"wall_s": t.wall_s, "cpu_s": t.cpu_s, "usage": summary["usage"], "kept": sum(summary["kept"].values()),
              "rejected": sum(summary["rejected"].values()), "reject_reasons": summary["reject_reasons"],
              "starts": starts, "load_before": load_before, "load_after": load_average(),
              "block_size": engine.llm.llm_engine.vllm_config.cache_config.block_size,
              "dtype": str(engine.llm.llm_engine.vllm_config.model_config.dtype)}
    Path(out_path).write_text(json.dumps(report), encoding="utf-8")
    sys.stdout.flush()
    os._exit(0)


def run_variant(name: str, passages: int, languages: list[str], overrides: dict[str, Any], tag: str) -> dict:
    work = WORK / "prefill"
    work.mkdir(parents=True, exist_ok=True)
    job = {"passages": passages, "languages": languages, "overrides": overrides, "out": str(work / f"out-{tag}")}
    job_path, out_path, log_path = work / f"{tag}-job.json", work / f"{tag}-out.json", work / f"{tag}.log"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    out_path.unlink(missing_ok=True)
    env = {k: v for k, v in ORIGINAL_ENV.items() if not k.startswith("PYTHONPATH")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "VLLM_LOGGING_LEVEL": "WARNING"})
    log(f"prefill: {name} ({passages} passages × {', '.join(languages)}; {overrides or 'defaults'}), load {load_average()}…")
    code = run_to_end([sys.executable, "-m", "bench.prefill", "--child", str(job_path), str(out_path)],
                      cwd=ROOT, env=env, log_path=log_path, timeout_s=CHILD_TIMEOUT_S)
    if code != 0 or not out_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"prefill variant {name} failed (exit {code}): {' | '.join(tail)[:400]}")
    report = json.loads(out_path.read_text(encoding="utf-8"))
    u = report["usage"]
    log(f"prefill: {name}: {report['wall_s']:.1f} s, kept {report['kept']}/{report['kept'] + report['rejected']}, "
        f"prompt {u['prompt_tokens']} cached {u['cached_tokens']} output {u['completion_tokens']}")
    return {"name": name, **report}


def describe(report: dict, passages: int) -> str:
    u = report["usage"]
    rows = report["kept"] + report["rejected"]
    return (f"wall {report['wall_s']:.1f} s (load {report['load_before'].split()[0]} → {report['load_after'].split()[0]}); "
            f"kept {report['kept']}/{rows} ({report['kept'] / max(rows, 1):.0%}); prompt tokens/passage "
            f"{u['prompt_tokens'] / passages:.0f}, cache hits {u['cached_tokens'] / max(u['prompt_tokens'], 1):.2f}; "
            f"{u['completion_tokens'] / max(report['wall_s'], 1e-9):.2f} output tokens/s; "
            + per_kept_row(u["completion_tokens"], report["wall_s"], report["kept"]))


def run(ctx: Context) -> Result:
    result = Result(NAME, TITLE)
    shutil.rmtree(WORK / "prefill", ignore_errors=True)
    for label, (passages, languages) in (("demo SAP step", DEMO), ("keep-rate workload", KEEP)):
        for shots in (None, 3, 2):
            table = token_table(passages, languages, shots)
            best = ", ".join(f"{bs}: {rate:.3f}" for bs, rate in table["best"].items())
            result.add(f"{label} ({passages} × {','.join(languages)}), shots {shots or 'all (5)'}: prompt tokens per passage; "
                       f"best possible cache hit rate by block size",
                       f"{table['per_passage']:.0f}; {best}")

    # dtype: prefill of one demo summary prompt, bf16 vs float32, A B B A in this process (same model weights).
    repeats, tokens = dtype_prefill(ctx.n(DTYPE_ROUNDS, minimum=3))
    v = verdict(repeats)
    result.headline.append(f"prefill of {tokens} prompt tokens, float32 / bfloat16 time (A B B A, {len(repeats)} rounds): {v.describe()}")
    result.add("dtype rounds: float32/bfloat16 (bf16 before s, bf16 after s, drift)", "; ".join(
        f"{r.ratio:.3f} ({r.before_s:.2f}, {r.after_s:.2f}, {r.drift:.0%}{' INCONCLUSIVE' if r.inconclusive else ''})" for r in repeats))

    # Shots: keep rate (texts change) on the keep-rate workload.
    passages, languages = (ctx.n(KEEP[0]), KEEP[1])
    for shots in (None, 3, 2):
        overrides = {"sap.shots": shots} if shots else {}
        r = run_variant(f"keep rate, shots {shots or 5}", passages, languages, overrides, f"shots-{shots or 5}")
        result.add(f"keep-rate workload ({passages} × {','.join(languages)}), shots {shots or 'all (5)'}, "
                   f"engine dtype {r['dtype']}", describe(r, passages))
    return result


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        child_main(sys.argv[2], sys.argv[3])
    else:
        print("usage: python -m bench.prefill --child JOB OUT (the benchmark runs with python -m bench --only prefill)")
        sys.exit(2)
