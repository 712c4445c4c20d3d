"""9. Shared prefixes prefilled first: prefix-cache hits and time of the demo's SAP work, with and without.

The in-process engine prefills each few-shot prefix that several prompts of a batch share once, alone, before the
batch (``VLLMEngine._prefill_shared_prefixes``): a vLLM step admits every whole prompt that fits, and prompts
admitted beside the first one carrying a prefix find nothing cached. Here the demo's SAP work (3 passages × de,
zh, the shipped sap.yaml, candidates included) runs through the SAP recipe on one engine, alternately without
(A) and with (B) the warm-up, A B B A, the prefix cache reset before each run. Reported: prompt tokens, cached
tokens and hit rate per arm, generate wall seconds per arm (median of each), and whether B's texts equal A's.
"""

from __future__ import annotations

import itertools
from typing import Any

from bench.common import WORK, Context, Result, log, median, sap_config, timed

NAME = "prefix_warmup"
TITLE = "9. Shared prefixes prefilled first: prefix-cache hits of the demo's SAP work"
DEMO = (3, ["de", "zh"])  # the demo's SAP step (data/configs/demo.yaml)


def _once(ctx: Context, warm: bool) -> dict[str, Any]:
    from synth.filters.lid import LanguageIdentifier
    from synth.llm.base import Usage
    from synth.recipes.sap.recipe import SapRecipe

    passages, languages = DEMO
    config = sap_config(passages, languages, WORK / "prefix_warmup")
    engine = ctx.engine(config)
    recipe = SapRecipe(config, engine, LanguageIdentifier(config.lid))
    records = list(itertools.islice(recipe.read_records(), passages))
    if not warm:  # arm A: what the engine did before it prefilled shared prefixes first
        engine._prefill_shared_prefixes = lambda prompts: None
    try:
        engine.llm.reset_prefix_cache()
        usage = Usage()
        with timed() as t:
            rows = recipe.process(records, usage)
    finally:
        engine.__dict__.pop("_prefill_shared_prefixes", None)
    return {
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": usage.cached_tokens,
        "wall_s": t.wall_s,
        "texts": [(row["summary"], row["query"]) for row in rows],
        "kept": sum(1 for row in rows if not row["reject_reason"]),
    }


def run(ctx: Context) -> Result:
    result = Result(NAME, TITLE)
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for warm in (False, True, True, False):
        log(f"prefix_warmup: demo SAP work, shared prefixes prefilled first: {warm}")
        runs[warm].append(_once(ctx, warm))
    for warm, label in ((False, "A: without warm-up"), (True, "B: shared prefixes prefilled first")):
        arm = runs[warm]
        prompt, cached = arm[0]["prompt_tokens"], arm[0]["cached_tokens"]
        result.add(f"{label}: prompt tokens / cached / hit rate", f"{prompt:,} / {cached:,} / {cached / max(prompt, 1):.3f}")
        result.add(f"{label}: SAP work wall s (runs; median)",
                   ", ".join(f"{r['wall_s']:.1f}" for r in arm) + f"; {median([r['wall_s'] for r in arm]):.1f}")
        result.add(f"{label}: rows kept", arm[0]["kept"])
    a, b = runs[False], runs[True]
    result.goal("hit rate B / A", (b[0]["cached_tokens"] / max(b[0]["prompt_tokens"], 1))
                / max(a[0]["cached_tokens"] / max(a[0]["prompt_tokens"], 1), 1e-9), 1.0)
    result.add("wall B / A (medians; same process, alternating)", median([r["wall_s"] for r in b]) / median([r["wall_s"] for r in a]))
    same = sum(x == y for x, y in zip(a[0]["texts"], b[0]["texts"]))
    result.add("rows with the same summary and query in A and B", f"{same}/{len(a[0]['texts'])}")
    return result
