"""Keep rate and cost per kept row, without and with candidates (issue 17).

Each recipe runs twice in this process on the same engine, with its shipped config: once with
``sampling.candidates: 1`` (one answer per checked request, as before candidates existed) and once with the
shipped ``sampling.candidates``. Same input, same checks, same seeds; the prefix cache is reset before each
arm so neither inherits the other's cached prompts. Printed per arm: rows kept / rows, output tokens and wall
seconds per kept row, candidates generated, and the reject reasons.

* SAP: the first 8 passages of data/configs/sap.yaml × de, hi, sw, zh (goal: ≥ 85 % kept).
* COD: the first 3 dialogues of data/configs/cod.yaml × ar, id, ru, sw (goal: ≥ 3 of 12 dialogues kept whole).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

from bench.common import COD_CONFIG, ENGINE_OVERRIDES, ROOT, SAP_CONFIG, WORK, Context, Result, log, per_kept_row, timed

NAME = "keep"
TITLE = "Keep rate and cost per kept row, without and with candidates"
ARMS = {
    "sap": (SAP_CONFIG, 8, ["de", "hi", "sw", "zh"], 0.85),
    "cod": (COD_CONFIG, 3, ["ar", "id", "ru", "sw"], 3 / 12),
}


def _arm(ctx: Context, recipe_name: str, candidates: int | None) -> dict[str, Any]:
    """One recipe run over the arm's records; ``candidates`` None: the shipped setting."""
    from synth.config_file import load_config
    from synth.filters.lid import LanguageIdentifier
    from synth.llm.base import Usage
    from synth.recipes import recipe_class

    path, records, languages, _ = ARMS[recipe_name]
    overrides = {
        "input.limit": ctx.n(records),
        "languages": languages,
        "output.dir": str(WORK / f"keep-{recipe_name}"),
        **ENGINE_OVERRIDES,
    }
    if candidates is not None:
        overrides["sampling.candidates"] = candidates
    config = load_config(path, recipe=recipe_name, overrides=overrides)
    engine = ctx.engine(config)
    recipe = recipe_class(recipe_name)(config, engine, LanguageIdentifier(config.lid))
    batch = list(itertools.islice(recipe.read_records(), config.input.limit))
    engine.llm.reset_prefix_cache()
    usage = Usage()
    log(f"keep: {recipe_name} on {len(batch)} records × {len(languages)} languages, "
        f"candidates {config.sampling.candidates}…")
    with timed() as t:
        rows = recipe.process(batch, usage)
    kept = [row for row in rows if not row.get("reject_reason")]
    return {
        "k": config.sampling.candidates,
        "rows": len(rows),
        "kept": len(kept),
        "reasons": Counter(row["reject_reason"] for row in rows if row.get("reject_reason")),
        "usage": usage,
        "wall_s": t.wall_s,
        "kept_rows": kept,
    }


def run(ctx: Context) -> Result:
    result = Result(NAME, TITLE)
    for recipe_name, (_, _, languages, goal) in ARMS.items():
        before = _arm(ctx, recipe_name, 1)
        after = _arm(ctx, recipe_name, None)
        unit = "dialogues" if recipe_name == "cod" else "rows"
        for label, arm in (("candidates 1", before), (f"candidates {after['k']}", after)):
            usage = arm["usage"]
            result.add(
                f"{recipe_name}, {label}: {unit} kept",
                f"{arm['kept']}/{arm['rows']} ({arm['kept'] / max(arm['rows'], 1):.1%}); "
                + per_kept_row(usage.completion_tokens, arm["wall_s"], arm["kept"])
                + f"; {usage.calls} calls, {usage.candidates} candidates, {usage.completion_tokens} output tokens, "
                f"{arm['wall_s']:.0f} s",
            )
            result.add(f"{recipe_name}, {label}: reject reasons", dict(arm["reasons"].most_common()))
        result.goal(f"{recipe_name} share of {unit} kept with candidates {after['k']}",
                    after["kept"] / max(after["rows"], 1), goal)
        kept_file = WORK / f"keep-{recipe_name}-kept.json"  # the kept rows in full, for reading them
        kept_file.write_text(json.dumps(after["kept_rows"], ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        result.add(f"{recipe_name}: kept rows with candidates {after['k']}", str(kept_file.relative_to(ROOT)))
    return result
