"""1. Orchestration overhead: the SAP flow end to end vs raw ``vllm.LLM.generate`` on the same prompts.

Both run in this process on one engine (the pipeline's own ``synth.llm.get_engine`` instance; the raw baseline
calls its underlying ``vllm.LLM``), so model, engine settings and SamplingParams are the same. The raw baseline
does what the SAP recipe does with the fewest moving parts: one ``generate`` for the summaries, then one for the
queries (built with ``SapRecipe.query_request`` from the summaries' first lines, sorted by language as the
recipe does). The pipeline is ``flows.recipe.run_flow`` (Prefect, LID, Parquet shards, manifest, card).

Kept out of both measurements and reported apart: engine start, the Prefect ephemeral server start and the LID
model loads (one-time costs of a process). The prefix cache is reset before each measured run, so neither run
profits from the other's cached prompts. The goal: pipeline output tokens/s ≥ 0.95 × raw. A second, smaller
pipeline run under pyinstrument shows where the non-generate time goes (bench/profiles/).
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import (PROFILES, WORK, Context, Repeat, Result, first_line, log, per_kept_row,
                          sap_config, timed, verdict, vllm_sampling_params)

NAME = "overhead"
TITLE = "1. Orchestration overhead: SAP flow vs raw vllm.LLM.generate"
LANGUAGES = ["de", "hi", "sw", "zh"]  # the shipped sap.yaml's languages
GOAL = 0.95
ROUNDS = 3  # ABBA rounds; the rule for a round's raw runs differing too much is bench.common.verdict


def _records(config, n: int) -> list[dict[str, Any]]:
    from synth.recipes.sap.recipe import SapRecipe

    recipe = SapRecipe(config, None, None)
    return [record for _, record in zip(range(n), recipe.read_records())]


def raw_sap(llm, config, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The SAP work with bare vLLM: two generate calls. Returns timings, tokens and every output text."""
    from synth.recipes.sap.recipe import SapRecipe

    recipe = SapRecipe(config, None, None)
    llm.reset_prefix_cache()
    with timed() as t:
        requests = [recipe.summary_request(record) for record in records]
        with timed() as g1:
            outs1 = llm.generate([r.prompt for r in requests], [vllm_sampling_params(r.sampling) for r in requests], use_tqdm=False)
        jobs = []
        for record, out in zip(records, outs1):
            summary = first_line(out.outputs[0].text)
            if summary:
                jobs += [(record, summary, lang) for lang in recipe.target_languages(record)]
        jobs.sort(key=lambda job: job[2])
        queries = [recipe.query_request(record, summary, lang) for record, summary, lang in jobs]
        with timed() as g2:
            outs2 = llm.generate([r.prompt for r in queries], [vllm_sampling_params(r.sampling) for r in queries], use_tqdm=False)
    steps = {}
    for step, outs in (("summary", outs1), ("query", outs2)):
        steps[step] = {
            "calls": len(outs),
            "prompt_tokens": sum(len(o.prompt_token_ids or ()) for o in outs),
            "cached_tokens": sum(o.num_cached_tokens or 0 for o in outs),
            "completion_tokens": sum(len(o.outputs[0].token_ids) for o in outs),
        }
    return {
        "wall_s": t.wall_s,
        "cpu_s": t.cpu_s,
        "generate_s": g1.wall_s + g2.wall_s,
        "completion_tokens": steps["summary"]["completion_tokens"] + steps["query"]["completion_tokens"],
        "steps": steps,
        "summaries": {r["source_id"]: first_line(o.outputs[0].text) for r, o in zip(records, outs1)},
        "queries": {(job[0]["source_id"], job[2]): first_line(o.outputs[0].text) for job, o in zip(jobs, outs2)},
        "summary_prompts": [r.prompt for r in requests],
        "query_prompts": [r.prompt for r in queries],
    }


def pipeline_outputs(out: Path) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Summaries and queries of every row (kept and rejected) the pipeline wrote."""
    import pyarrow.parquet as pq

    summaries: dict[str, str] = {}
    queries: dict[tuple[str, str], str] = {}
    for path in sorted((out / "sap").glob("*/*.parquet")):
        for row in pq.read_table(path, columns=["source_id", "lang", "summary", "query"]).to_pylist():
            summaries[row["source_id"]] = row["summary"]
            queries[(row["source_id"], row["lang"])] = row["query"]
    return summaries, queries


def warm_up(ctx: Context, config) -> dict[str, float]:
    """Start everything a process starts once, timing each: engine, Prefect's ephemeral server, LID models."""
    starts: dict[str, float] = {}
    engine = ctx.engine(config)
    starts["engine start (vLLM, default model)"] = ctx.engine_start_s or 0.0
    if "prefect_start_s" not in ctx.shared:
        import flows  # noqa: F401  (sets polysynth's Prefect defaults)
        from prefect import flow

        @flow(name="polysynth-bench-warmup")
        def _noop() -> int:
            return 1

        with timed() as t:
            _noop()
        ctx.shared["prefect_start_s"] = t.wall_s
        from synth.filters.lid import _fasttext_model, _langdetect_factory

        with timed() as t:
            _fasttext_model()
            _langdetect_factory()
        ctx.shared["lid_load_s"] = t.wall_s
        # One tiny generate so neither measured run pays first-call costs.
        from vllm import SamplingParams

        engine.llm.generate(["Warm-up: the capital of France is"], SamplingParams(max_tokens=4, temperature=0), use_tqdm=False)
    starts["Prefect ephemeral server + first flow run"] = ctx.shared["prefect_start_s"]
    starts["LID models load (fastText + langdetect)"] = ctx.shared["lid_load_s"]
    return starts


def run_pipeline(ctx: Context, config, out: Path) -> dict[str, Any]:
    from flows.recipe import run_flow

    engine = ctx.engine(config)
    shutil.rmtree(out, ignore_errors=True)
    engine.llm.reset_prefix_cache()
    with timed() as t:
        summary = run_flow(config)
    return {"wall_s": t.wall_s, "cpu_s": t.cpu_s, "summary": summary}


def profile_breakdown(profiler) -> dict[str, Any]:
    """Time inside the engine's generate vs the rest, the rest by package and by top self-time functions."""
    root = profiler.last_session.root_frame()
    total = root.time
    generate_s = 0.0
    by_owner: dict[str, float] = defaultdict(float)
    by_function: dict[str, float] = defaultdict(float)

    def owner(path: str) -> str:
        path = path or ""
        for marker, name in (("/synth/", "synth"), ("/flows/", "flows"), ("/bench/", "bench")):
            if marker in path and "site-packages" not in path:
                return name
        if "site-packages/" in path:
            return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        if "<" in path or not path:
            return "builtin/other"
        return "python stdlib"

    def walk(frame, chain: list[str], parent=None, parent_owner: str = "python stdlib") -> None:
        nonlocal generate_s
        # pyinstrument's synthetic "[self]"/"[await]" frames carry the parent's own time: label them as the parent
        source = parent if (frame.is_synthetic and parent is not None) else frame
        path = source.file_path or ""
        if frame.function == "generate" and path.endswith("synth/llm/vllm_engine.py"):
            generate_s += frame.time
            return
        mine = owner(path)
        if mine == "builtin/other":  # a C function (a lock wait, a socket read): charge it to its caller's package
            mine = parent_owner
        children_time = sum(child.time for child in frame.children)
        self_time = max(frame.time - children_time, 0.0)
        if self_time:
            label = f"{source.function} ({Path(path).name}:{source.line_no})"
            caller = chain[-1] if chain else ""
            by_owner[mine] += self_time
            by_function[(caller + " → " if caller and not caller.endswith(f":{source.function}") else "") + label] += self_time
        entry = chain
        if not frame.is_synthetic and owner(path) != "builtin/other":
            entry = chain + [f"{mine}:{source.function}"]
        for child in frame.children:
            walk(child, entry, source, mine)

    walk(root, [])
    rest = total - generate_s
    return {
        "total_s": total,
        "generate_s": generate_s,
        "rest_s": rest,
        "by_owner": sorted(by_owner.items(), key=lambda kv: -kv[1]),
        "top_functions": sorted(by_function.items(), key=lambda kv: -kv[1])[:15],
    }


def profile_pipeline(ctx: Context, config, out: Path) -> dict[str, Any]:
    from pyinstrument import Profiler

    from flows.recipe import run_flow

    engine = ctx.engine(config)
    shutil.rmtree(out, ignore_errors=True)
    engine.llm.reset_prefix_cache()
    profiler = Profiler(interval=0.001, async_mode="disabled")
    with timed() as t:
        profiler.start()
        try:
            summary = run_flow(config)
        finally:
            profiler.stop()
    PROFILES.mkdir(parents=True, exist_ok=True)
    text_path = PROFILES / "overhead-sap-flow.txt"
    text_path.write_text(profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8")
    WORK.mkdir(parents=True, exist_ok=True)  # the full session is ~80 MB: kept out of git, reload with pyinstrument --load
    profiler.last_session.save(str(WORK / "overhead-sap-flow.pyisession"))
    breakdown = profile_breakdown(profiler)
    lines = [f"pyinstrument, SAP flow: total {breakdown['total_s']:.2f} s, in VLLMEngine.generate "
             f"{breakdown['generate_s']:.2f} s, rest {breakdown['rest_s']:.2f} s", "", "rest by package (self time):"]
    lines += [f"  {s:8.3f} s  {name}" for name, s in breakdown["by_owner"]]
    lines += ["", "rest, top self-time functions (caller → function; C functions are charged to their caller's package):"]
    lines += [f"  {s:8.3f} s  {name}" for name, s in breakdown["top_functions"]]
    (PROFILES / "overhead-sap-flow-rest.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"wall_s": t.wall_s, "summary": summary, "breakdown": breakdown, "profile": str(text_path)}


def run(ctx: Context) -> Result:
    result = Result(NAME, TITLE)
    passages = ctx.n(8)
    # fewer languages below scale 1 (each 5-shot query is ~1.2k prompt tokens: prefill dominates on a CPU)
    languages = LANGUAGES[: max(1, round(len(LANGUAGES) * min(ctx.scale, 1.0)))]
    out = WORK / "overhead" / "pipeline"
    config = sap_config(passages, languages, out)
    starts = warm_up(ctx, config)
    records = _records(config, passages)
    engine = ctx.engine(config)

    # ROUNDS rounds in ABBA order (raw, flow, flow, raw): a steady drift of the machine's load hits both sides
    # alike within a round; the figure is the median of the rounds' ratios, with their spread.
    raws, pipes, repeats = [], [], []
    for number in range(1, ROUNDS + 1):
        round_raws, round_pipes = [], []
        for step, kind in enumerate(("raw", "flow", "flow", "raw"), start=1):
            log(f"overhead: round {number}/{ROUNDS}, run {step}/4 ({kind}) on {passages} passages × {len(languages)} languages…")
            if kind == "raw":
                round_raws.append(raw_sap(engine.llm, config, records))
            else:
                round_pipes.append(run_pipeline(ctx, config, out))
        raws += round_raws
        pipes += round_pipes
        raw_tps_round = sum(r["completion_tokens"] for r in round_raws) / sum(r["wall_s"] for r in round_raws)
        pipe_tps_round = sum(p["summary"]["usage"]["completion_tokens"] for p in round_pipes) / sum(p["wall_s"] for p in round_pipes)
        repeats.append(Repeat(pipe_tps_round / raw_tps_round, round_raws[0]["wall_s"], round_raws[1]["wall_s"]))
        log(f"overhead: round {number}: ratio {repeats[-1].ratio:.3f} (raw {repeats[-1].before_s:.1f} s / "
            f"{repeats[-1].after_s:.1f} s, drift {repeats[-1].drift:.0%})")
    raw, pipe = raws[-1], pipes[-1]
    usage = pipe["summary"]["usage"]
    raw_tokens = sum(r["completion_tokens"] for r in raws)
    pipe_tokens = sum(p["summary"]["usage"]["completion_tokens"] for p in pipes)
    raw_wall = sum(r["wall_s"] for r in raws)
    pipe_wall = sum(p["wall_s"] for p in pipes)
    pipe_generate = sum(p["summary"]["usage"]["generate_s"] for p in pipes)
    raw_tps = raw_tokens / raw_wall
    pipe_tps = pipe_tokens / pipe_wall
    ratio = pipe_tps / raw_tps
    cpu_ratio = (pipe_tokens / sum(p["cpu_s"] for p in pipes)) / (raw_tokens / sum(r["cpu_s"] for r in raws))
    once = sum(v for k, v in starts.items() if not k.startswith("engine"))
    ratio_with_starts = (pipe_tokens / (pipe_wall + once)) / raw_tps
    within = pipe_generate / pipe_wall
    pipe = {"wall_s": pipe_wall / len(pipes), "cpu_s": sum(p["cpu_s"] for p in pipes) / len(pipes), "summary": pipe["summary"]}

    # Equal work: the pipeline must have generated exactly the raw baseline's texts.
    summaries, queries = pipeline_outputs(out)
    same_summaries = sum(summaries.get(k) == v for k, v in raw["summaries"].items())
    same_queries = sum(queries.get(k) == v for k, v in raw["queries"].items())

    v = verdict(repeats)
    if v.inconclusive:
        result.add("pipeline/raw output tokens/s", v.describe())
    else:
        result.goal(f"pipeline/raw output tokens/s (median of the conclusive of {ROUNDS} ABBA rounds)", v.median, GOAL)
    result.add("round ratios (min / median / max over conclusive rounds; spread)", v.describe() if v.inconclusive else
               f"{v.low:.3f} / {v.median:.3f} / {v.high:.3f}; spread {v.spread:.1%}")
    result.add("per round: ratio (raw before s, raw after s, drift)", "; ".join(
        f"{r.ratio:.3f} ({r.before_s:.1f}, {r.after_s:.1f}, {r.drift:.0%}{' INCONCLUSIVE' if r.inconclusive else ''})"
        for r in repeats))
    result.add("pooled ratio over all runs", ratio)
    result.goal("share of the flow's wall time spent in engine.generate (within-run, load-insensitive)", within, GOAL)
    result.add("passages × languages (SAP cross-lingual, default model)", f"{passages} × {len(languages)} ({', '.join(languages)})")
    result.add("units (runner.batch_size)", f"{pipe['summary']['units_total']} ({config.runner.batch_size})")
    result.add("raw runs: wall s (each)", " / ".join(f"{r['wall_s']:.2f}" for r in raws))
    result.add("flow runs: wall s (each)", " / ".join(f"{p['wall_s']:.2f}" for p in pipes))
    result.add("raw (last run): wall s / generate s / CPU s", f"{raw['wall_s']:.2f} / {raw['generate_s']:.2f} / {raw['cpu_s']:.2f}")
    result.add("raw: LLM calls, output tokens", f"{raw['steps']['summary']['calls'] + raw['steps']['query']['calls']}, {raw['completion_tokens']}")
    result.add("raw output tokens/s", raw_tps)
    result.add("flow (mean of runs): wall s / CPU s; generate s (last run)", f"{pipe['wall_s']:.2f} / {pipe['cpu_s']:.2f}; {usage['generate_s']:.2f}")
    result.add("pipeline: LLM calls, output tokens", f"{usage['calls']}, {usage['completion_tokens']}")
    result.add("pipeline output tokens/s", pipe_tps)
    kept_rows = sum(pipe["summary"]["kept"].values())
    result.add("pipeline cost per kept row (last run's kept rows, mean run)",
               per_kept_row(pipe_tokens / len(pipes), pipe["wall_s"], kept_rows))
    result.add("flow non-generate time s per run (wall − generate, mean)", (pipe_wall - pipe_generate) / len(pipes))
    result.add("ratio by CPU time (tokens per CPU-second, less noisy on a shared machine)", cpu_ratio)
    result.add("ratio counting Prefect start + LID loads once", ratio_with_starts)
    for label, seconds in starts.items():
        result.add(f"one-time: {label} s", seconds)
    result.add("same texts as raw (summaries, queries)", f"{same_summaries}/{len(raw['summaries'])}, {same_queries}/{len(raw['queries'])}")
    if same_summaries != len(raw["summaries"]) or same_queries != len(raw["queries"]):
        result.notes.append("WARNING: the pipeline's texts differ from the raw baseline's; the comparison is not of equal work.")

    ctx.shared["sap"] = {
        "config": config,
        "out": out,
        "passages": passages,
        "languages": languages,
        "raw": raw,
        "pipeline": pipe,
        "rows": passages * len(languages),
        "pipeline_s_per_row": pipe["wall_s"] / (passages * len(languages)),
    }
    (WORK / "sap_figures.json").write_text(json.dumps({
        "pipeline_s_per_row": pipe["wall_s"] / (passages * len(languages)),
        "pipeline_wall_s": pipe["wall_s"], "rows": passages * len(languages),
    }))

    # Where the non-generate time goes: a smaller profiled run into another directory.
    n_prof = ctx.n(4)
    log(f"overhead: profiled flow run on {n_prof} passages…")
    prof = profile_pipeline(ctx, sap_config(n_prof, languages, WORK / "overhead" / "profiled"), WORK / "overhead" / "profiled")
    b = prof["breakdown"]
    result.add(f"profiled run ({n_prof} passages): total / in generate / rest s", f"{b['total_s']:.2f} / {b['generate_s']:.2f} / {b['rest_s']:.2f}")
    owners = ", ".join(f"{name} {s:.2f} s" for name, s in b["by_owner"][:6])
    result.notes.append(f"Non-generate time by package (profiled run, self time): {owners}.")
    top = "; ".join(f"{name} {s:.2f} s" for name, s in b["top_functions"][:6])
    result.notes.append(f"Top non-generate functions: {top}.")
    result.notes.append(f"Profiles: {Path(prof['profile']).relative_to(PROFILES.parent.parent)} and overhead-sap-flow-rest.txt beside it.")
    return result
