"""Answerability judge: can the run's own model tell a passage that answers a question from one that does not?

The optional SAP filter ``sap.answerability`` (``synth.recipes.sap.answerability``) asks the engine whether the passage answers
the query and scores p(yes) / (p(yes) + p(no)) from the log-probabilities of one generated token. Before it could
be a default it is measured here on the SWIM-IR exemplars shipped in ``prompts/sap/exemplars/`` (human-written
questions, none of them in the judge's own few-shot prompt):

* cross-lingual (XOR-Retrieve, XTREME-UP): per language, each of its 5 questions with its own English passage
  (matched) and with each of the other 4 passages (mismatched);
* monolingual (MIRACL): per language, each of its 3 questions with its own passage in that language (matched) and
  with the language's 2 other passages (mismatched).

Mismatched pairs stay within one language, so the language alone gives nothing away. Per language: pairs,
ROC AUC of the score (matched = positive; a pair without a score counts 0.5), the mean score of each side, and
at the filter's default threshold the share of matched pairs kept and of mismatched pairs rejected.
Goal: pooled AUC ≥ 0.7, below which the filter stays off by default (README, SAP options).

The engine is the shipped SAP config's (default model, dtype float32); the prefix cache is on (the few-shot header
and each passage are shared by many requests). Scale does not change the workload (the exemplars are fixed).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean

from bench.common import WORK, Context, Result, log, sap_config, timed

NAME = "answerability"
TITLE = "Answerability judge: matched vs mismatched SWIM-IR exemplar pairs (ROC AUC per language)"
GOAL_AUC = 0.7


def pairs() -> list[tuple[str, str, str, str, bool]]:
    """(language, mode, passage, question, matched) for every exemplar question, with its passage and the others
    of its language's set."""
    from synth.recipes.sap.recipe import cross_lingual_exemplars, monolingual_exemplars

    out = []
    for mode, table in (("cross-lingual", cross_lingual_exemplars()), ("monolingual", monolingual_exemplars())):
        for lang, examples in sorted(table.items()):
            passages = list(dict.fromkeys(e.passage for e in examples))
            for example in examples:
                for passage in passages:
                    out.append((lang, mode, passage, example.question, passage == example.passage))
    return out


def measure(engine) -> tuple[list[tuple[str, str, bool, float | None, str | None]], float]:
    """Every pair's (language, mode, matched, score, reason) and the wall seconds of the engine call."""
    from synth.recipes.sap.answerability import score_pairs

    todo = pairs()
    # sorted by passage: requests sharing a passage (and the header) are scheduled together for the prefix cache
    todo.sort(key=lambda pair: (pair[2], pair[0], pair[3]))
    with timed() as t:
        judgements = score_pairs(engine, [(p, q, lang) for lang, _, p, q, _ in todo],
                                 ids=[f"pair/{i}" for i in range(len(todo))])
    return [(lang, mode, matched, j.score, j.reason) for (lang, mode, _, _, matched), j in zip(todo, judgements)], t.wall_s


def table(scored, threshold: float) -> list[dict]:
    """Per language (and ``all``): n matched, n mismatched, n unscored, AUC, mean scores, kept/rejected shares."""
    from synth.recipes.sap.answerability import roc_auc

    groups: dict[str, list] = defaultdict(list)
    for item in scored:
        groups[item[0]].append(item)
    rows = []
    for lang, items in sorted(groups.items()) + [("all", list(scored))]:
        scores = [0.5 if score is None else score for _, _, _, score, _ in items]
        labels = [matched for _, _, matched, _, _ in items]
        matched = [s for s, label in zip(scores, labels) if label]
        mismatched = [s for s, label in zip(scores, labels) if not label]
        rows.append({
            "lang": lang,
            "modes": "+".join(sorted({mode[:5] for _, mode, _, _, _ in items})),
            "matched": len(matched),
            "mismatched": len(mismatched),
            "unscored": sum(1 for *_, score, _ in items if score is None),
            "auc": roc_auc(scores, labels),
            "mean_matched": mean(matched),
            "mean_mismatched": mean(mismatched),
            "kept_matched": sum(s >= threshold for s in matched) / len(matched),
            "rejected_mismatched": sum(s < threshold for s in mismatched) / len(mismatched),
        })
    return rows


def format_table(rows: list[dict], threshold: float) -> list[str]:
    lines = [
        f"| lang | sets | matched | mismatched | unscored | AUC | mean score matched / mismatched | "
        f"matched kept at {threshold:g} | mismatched rejected at {threshold:g} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['lang']} | {r['modes']} | {r['matched']} | {r['mismatched']} | {r['unscored']} | {r['auc']:.3f} | "
            f"{r['mean_matched']:.3f} / {r['mean_mismatched']:.3f} | {r['kept_matched']:.0%} | "
            f"{r['rejected_mismatched']:.0%} |"
        )
    return lines


def run(ctx: Context) -> Result:
    from synth.recipes.sap.config import SapOptions

    result = Result(NAME, TITLE)
    config = sap_config(1, ["de"], WORK / "answerability")
    engine = ctx.engine(config)
    threshold = SapOptions().answerability.threshold
    log(f"answerability: {len(pairs())} exemplar pairs…")
    scored, wall_s = measure(engine)
    rows = table(scored, threshold)
    overall = rows[-1]
    by_auc = [r for r in rows[:-1]]
    result.goal("pooled ROC AUC, matched vs mismatched", overall["auc"], GOAL_AUC)
    result.add("model", f"{engine.model_name} (dtype {config.engine.dtype})")
    result.add("pairs", f"{overall['matched']} matched, {overall['mismatched']} mismatched, "
                        f"{overall['unscored']} without a yes/no token; {wall_s:.0f} s")
    result.add("languages with AUC ≥ 0.7", f"{sum(r['auc'] >= GOAL_AUC for r in by_auc)} of {len(by_auc)}")
    result.add("median per-language AUC", sorted(r["auc"] for r in by_auc)[len(by_auc) // 2])
    reasons = sorted({reason for *_, reason in scored if reason})
    if reasons:
        result.notes.append(f"unscored pairs' reasons: {'; '.join(reasons[:3])}")
    result.notes.append("per language (sets: cross = XOR-Retrieve/XTREME-UP, 5 questions × 5 English passages; "
                        "mono = MIRACL, 3 × 3 in the language):\n\n" + "\n".join(format_table(rows, threshold)))
    ctx.shared["answerability"] = rows
    return result
