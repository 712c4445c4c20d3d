"""2. SAP call economy: LLM calls and prompt tokens per passage (1 + k) vs the naive 2k, and prefix-cache hits.

Naive SAP (a summary per query request, as a straightforward "summarize, then ask" chain per language would do)
makes 2 calls per passage and language: k summary calls + k query calls. polysynth makes one summary call per
passage and reuses it for the k queries. Prompt tokens are exact (the engine's tokenizer counts, as reported
by vLLM); the naive figures are derived from the same measured per-call counts (k × the summary prompt).

The prefix-cache hit rate comes from vLLM's ``num_cached_tokens`` per request (polysynth's Result.cached_tokens)
against the few-shot prefix each prompt carries, measured from a cold cache (reset before the run). vLLM caches
whole KV blocks only, so the best possible hit is the prefix rounded down to the block size, for every request
but the first of each prefix.

Reuses benchmark 1's run when it ran in this process; else runs the SAP recipe itself on a few passages.
"""

from __future__ import annotations

from typing import Any

from bench.common import WORK, Context, Result, log, per_kept_row, sap_config, timed

NAME = "sap_calls"
TITLE = "2. SAP call economy and prefix-cache hits"
LANGUAGES = ["de", "hi", "sw", "zh"]


class _Recorder:
    """Wraps an engine: records every Result per call."""

    def __init__(self, engine):
        self.engine = engine
        self.model_name = engine.model_name
        self.calls: list[list[Any]] = []
        self.requests: list[list[Any]] = []

    def generate(self, requests):
        results = self.engine.generate(requests)
        self.requests.append(list(requests))
        self.calls.append(results)
        return results

    def close(self) -> None:
        pass


def _own_run(ctx: Context) -> dict[str, Any]:
    """Run the SAP recipe (polysynth's engine and recipe code, no flow) and collect per-step counts."""
    from synth.filters.lid import LanguageIdentifier
    from synth.llm.base import Usage
    from synth.recipes.sap.recipe import SapRecipe

    passages = ctx.n(4)
    config = sap_config(passages, LANGUAGES, WORK / "sap_calls")
    engine = ctx.engine(config)
    recorder = _Recorder(engine)
    recipe = SapRecipe(config, recorder, LanguageIdentifier(config.lid))
    records = [r for _, r in zip(range(passages), recipe.read_records())]
    engine.llm.reset_prefix_cache()
    usage = Usage()
    log(f"sap_calls: SAP recipe on {passages} passages × {len(LANGUAGES)} languages…")
    with timed() as t:
        rows = recipe.process(records, usage)
    summary_results, query_results = recorder.calls
    steps = {}
    for step, results in (("summary", summary_results), ("query", query_results)):
        steps[step] = {
            "calls": len(results),
            "prompt_tokens": sum(r.prompt_tokens for r in results),
            "cached_tokens": sum(r.cached_tokens for r in results),
            "completion_tokens": sum(r.completion_tokens for r in results),
        }
    return {
        "passages": passages,
        "config": config,
        "steps": steps,
        "summary_prompts": [r.prompt for r in recorder.requests[0]],
        "query_prompts": [r.prompt for r in recorder.requests[1]],
        "usage": usage.as_dict(),
        "source": f"own SAP recipe run ({passages} passages)",
        "wall_s": t.wall_s,
        "kept_rows": sum(1 for row in rows if not row.get("reject_reason")),
    }


def run(ctx: Context) -> Result:
    from synth.recipes.sap.recipe import SapRecipe

    result = Result(NAME, TITLE)
    shared = ctx.shared.get("sap")
    if shared:
        raw = shared["raw"]
        data = {
            "passages": shared["passages"],
            "config": shared["config"],
            "steps": raw["steps"],
            "summary_prompts": raw["summary_prompts"],
            "query_prompts": raw["query_prompts"],
            "usage": shared["pipeline"]["summary"]["usage"],
            "source": f"benchmark 1's runs ({shared['passages']} passages; per-step counts from its raw run, totals from its flow run)",
            "wall_s": shared["pipeline"]["wall_s"],
            "kept_rows": sum(shared["pipeline"]["summary"]["kept"].values()),
        }
    else:
        data = _own_run(ctx)
    config = data["config"]
    engine = ctx.engine(config)
    tokenizer = engine.llm.get_tokenizer()
    recipe = SapRecipe(config, None, None)
    k = len(LANGUAGES)
    p = data["passages"]
    s, q = data["steps"]["summary"], data["steps"]["query"]

    calls = (s["calls"] + q["calls"]) / p
    naive_calls = 2 * k
    summary_prompt = s["prompt_tokens"] / max(s["calls"], 1)
    prompt_per_passage = (s["prompt_tokens"] + q["prompt_tokens"]) / p
    naive_prompt_per_passage = (k * s["prompt_tokens"] + q["prompt_tokens"]) / p
    out_per_passage = (s["completion_tokens"] + q["completion_tokens"]) / p
    naive_out_per_passage = (k * s["completion_tokens"] + q["completion_tokens"]) / p

    result.goal("LLM calls per passage, naive/polysynth", naive_calls / calls, 2 * k / (1 + k))
    result.add("source", data["source"])
    result.add("languages k", f"{k} ({', '.join(LANGUAGES)})")
    result.add("LLM calls per passage: polysynth (1 + k) / naive (2k)", f"{calls:.2f} / {naive_calls}")
    result.add("prompt tokens per passage: polysynth / naive", f"{prompt_per_passage:,.0f} / {naive_prompt_per_passage:,.0f}")
    result.add("prompt tokens saved vs naive", 1 - prompt_per_passage / naive_prompt_per_passage)
    result.add("output tokens per passage: polysynth / naive", f"{out_per_passage:,.0f} / {naive_out_per_passage:,.0f}")
    tokens = data["usage"]["completion_tokens"]
    result.add("output tokens/s; cost per kept row", f"{tokens / max(data['wall_s'], 1e-9):.2f}; "
               + per_kept_row(tokens, data["wall_s"], data["kept_rows"]))
    result.add("summary prompt tokens (mean)", summary_prompt)
    result.add("query prompt tokens (mean)", q["prompt_tokens"] / max(q["calls"], 1))

    # Few-shot prefix sizes in tokens (what the prefix cache can serve) and the best possible hit.
    block = 16
    try:
        block = int(engine.llm.llm_engine.vllm_config.cache_config.block_size)
    except Exception:  # noqa: BLE001 - only for the "best possible" line
        pass
    summary_prefix = len(tokenizer(recipe.summary_prefix("en")).input_ids)
    query_prefix = {lang: len(tokenizer(recipe.query_prefix(lang)).input_ids) for lang in LANGUAGES}
    n_query_per_lang = q["calls"] / k
    best_summary = max(s["calls"] - 1, 0) * (summary_prefix // block * block)
    best_query = sum(max(n_query_per_lang - 1, 0) * (n // block * block) for n in query_prefix.values())
    total_prefix = s["calls"] * summary_prefix + sum(n_query_per_lang * n for n in query_prefix.values())
    cached = s["cached_tokens"] + q["cached_tokens"]
    prompt = s["prompt_tokens"] + q["prompt_tokens"]
    result.add("few-shot prefix tokens: summary / query per language", f"{summary_prefix} / " + ", ".join(f"{l} {n}" for l, n in query_prefix.items()))
    result.add("KV block size (cache granularity)", block)
    result.add("prefix-cache hit rate, all prompt tokens (cached/prompt)", cached / max(prompt, 1))
    result.add("prefix-cache hit rate, summary step", s["cached_tokens"] / max(s["prompt_tokens"], 1))
    result.add("prefix-cache hit rate, query step", q["cached_tokens"] / max(q["prompt_tokens"], 1))
    result.add("cached tokens / few-shot prefix tokens", cached / max(total_prefix, 1))
    result.add("cached tokens / best possible (whole blocks of every prefix after its first use)", cached / max(best_summary + best_query, 1))
    usage = data["usage"]
    result.add("polysynth Usage: calls, prompt, cached tokens (pipeline run)", f"{usage['calls']}, {usage['prompt_tokens']:,}, {usage['cached_tokens']:,}")
    stats = engine.prefix_cache_stats()
    result.add("engine prefix_cache_stats() since start (all benchmarks so far)", f"hit rate {stats['hit_rate']:.3f} of {stats['prompt_tokens']:,.0f} prompt tokens")
    return result
