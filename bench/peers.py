"""7. Peers side by side: polysynth, bespokelabs-curator and distilabel, each against raw vLLM in its own process.

Why this design: timings of identical work on a shared 2-core machine vary 2–4× with other processes' load, so
peers measured minutes apart (or polysynth on a warm shared engine, a peer cold) cannot be compared. Here every
side runs in its **own fresh child process** (``bench/peers_child.py``; the peers in their venv
``bench/.work/peers-venv``, made once by ``bench/peers_venv.py``; polysynth in its own venv), equally warm:
engine start, the same warm-up generate, the framework's one-time start (all reported apart), then

    raw A  →  framework  →  raw B        (prefix cache reset before each)

on one ``vllm.LLM`` made with polysynth's engine settings (polysynth's is the one ``synth.llm.get_engine`` makes
and the real SAP flow, ``flows.recipe.run_flow``, uses). "raw" is the SAP work with bare ``vllm.LLM.generate``
(two calls: the summaries, then the queries from their first lines), the same code on every side. The figure is
**framework time / mean raw time within that process**, so the machine's load at the time cancels; it is
measured ``repeats`` times, sides interleaved (P C D, D C P, P C D, …), and reported as the median with min and
max. A repeat whose raw A and raw B differ by more than 15 % is inconclusive (bench.common.verdict, the rule the
overhead benchmark uses too); a side with a minority of conclusive repeats gets no figure.

Equal work is checked, not assumed: each child reports every ``generate`` call (prompts, prompt and cached
tokens) per phase and the engine's actual settings read back from vLLM; the parent checks (:func:`check_children`)
that each framework made the same calls as the raw runs beside it, and that every child's raw calls and engine
settings are the same. A mismatch fails the benchmark. Caches are off (curator's ``CURATOR_DISABLE_CACHE``;
distilabel is used as standalone steps, which have no cache). Output texts are compared with polysynth's.
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

from bench import peers_venv
from bench.common import (BENCH_DIR, ORIGINAL_ENV, ROOT, WORK, Context, Repeat, Result, load_average, log, median,
                          per_kept_row, run_to_end, sap_config, timed, verdict)

NAME = "peers"
TITLE = "7. Peers side by side: polysynth, bespokelabs-curator and distilabel, each / raw vLLM in its own process"
LANGUAGES = ["de", "hi", "sw", "zh"]
SUMMARY_MARK = "\ue000SUMMARY\ue000"
SIDES = ("polysynth", "curator", "distilabel")
FRAMEWORKS = ("curator", "distilabel")
REPEATS = 3
CHILD_TIMEOUT_S = 1800
# Engine settings every child must report identically (read back from vLLM; these set the work's speed).
SETTINGS_CHECKED = ("model", "dtype", "max_model_len", "enforce_eager", "seed", "enable_prefix_caching", "block_size",
                    "kv_cache_memory_bytes", "num_gpu_blocks", "max_num_seqs", "max_num_batched_tokens",
                    "enable_chunked_prefill", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_OMP_THREADS_BIND")
# The raw runs ask one answer per query: polysynth's flow must too (sap.yaml ships candidates: 6, which asks more
# for a query that fails a check: other work, measured in bench/keep.py).
POLYSYNTH_OVERRIDES = {"sampling.candidates": 1}
CALL_FIELDS = ("prompts", "prompt_tokens", "cached_tokens")
WORK_FIELDS = ("prompts", "prompt_tokens")


def build_job(config, records, work) -> dict:
    from synth.llm.model import resolve_model
    from synth.llm.device import CPU_KV_CACHE_BYTES, CPU_MAX_BATCHED_TOKENS
    from synth.recipes.sap.recipe import SapRecipe

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
            # as polysynth's engine on CPU (synth.llm.vllm_engine): whole prompts per step, no chunked prefill
            "enable_chunked_prefill": False, "max_num_batched_tokens": max(e.max_model_len, CPU_MAX_BATCHED_TOKENS),
            # polysynth also sets structured_outputs_config={"disable_any_whitespace": True}; it only matters for
            # JSON-schema requests (none here) and vLLM refuses it in the peers' venv, whose structured-output
            # backend resolves differently: left out.
        },
        "summary_prompts": [r.prompt for r in summary_requests],
        "summary_sampling": sampling(summary_requests[0]),
        "query_sampling": sampling(recipe.query_request(records[0], "x", config.languages[0])),
        "queries": queries,
        "source_ids": [r["source_id"] for r in records],
        "passages": len(records),
        "languages": list(config.languages),
        "work": str(work),
        "overrides": POLYSYNTH_OVERRIDES,
    }


def child_env() -> dict[str, str]:
    from synth.llm.device import cpu_list

    env = {k: v for k, v in ORIGINAL_ENV.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env.update({
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": cpu_list(),  # as polysynth on CPU
        "VLLM_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "TELEMETRY_ENABLED": "false", "CURATOR_DISABLE_CACHE": "1",
        "CURATOR_DISABLE_RICH_DISPLAY": "1", "CURATOR_CACHE_DIR": str(WORK / "peers" / "curator-cache"),
        "DISTILABEL_CACHE_DIR": str(WORK / "peers" / "distilabel-cache"),
    })
    return env


def interleaved(repeats: int, sides: tuple[str, ...] = SIDES) -> list[tuple[int, str]]:
    """(repeat, side) in the order they run: P C D, D C P, P C D, … (each side's position alternates)."""
    order = []
    for number in range(1, repeats + 1):
        order += [(number, side) for side in (sides if number % 2 else tuple(reversed(sides)))]
    return order


# -- pure checks and figures (tested in tests/test_bench_rules.py) ---------------------------------------
def call_signature(calls: list[dict], fields: tuple[str, ...] = CALL_FIELDS) -> list[tuple]:
    return [tuple(call.get(f) for f in fields) for call in work_calls(calls)]


def work_calls(calls: list[dict]) -> list[dict]:
    """The calls that generate the SAP work; a framework's prefill calls (one-token requests that only put shared
    prompt prefixes into the prefix cache, as polysynth's vLLM engine makes) are its own way of doing it."""
    return [call for call in calls if not call.get("prefill")]


def check_children(reports: list[dict]) -> list[str]:
    """Mismatches between children that must have done the same work on the same engine (empty: consistent).

    In each child the framework's work calls (prefill calls aside) must match the raw runs' in prompts per call and
    prompt tokens, with at least their cached tokens (fewer would mean work redone), and the two raw runs must match
    each other exactly; across children the raw calls and the engine's actual settings must be identical.
    """
    errors: list[str] = []
    if not reports:
        return ["no child reported"]
    reference = reports[0]
    ref_raw = call_signature(reference["runs"]["raw A"]["calls"])
    for report in reports:
        who = f"{report['side']} (repeat {report.get('repeat', '?')})"
        raw_a = call_signature(report["runs"]["raw A"]["calls"])
        raw_b = call_signature(report["runs"]["raw B"]["calls"])
        framework_calls = work_calls(report["runs"]["framework"]["calls"])
        framework = call_signature(framework_calls, WORK_FIELDS)
        if raw_b != raw_a:
            errors.append(f"{who}: raw B made other calls than raw A: {raw_b} vs {raw_a}")
        raw_work = call_signature(report["runs"]["raw A"]["calls"], WORK_FIELDS)
        if framework != raw_work:
            errors.append(f"{who}: the framework's calls (prompts, prompt tokens per call) {framework} "
                          f"differ from the raw run's {raw_work}")
        elif any(mine["cached_tokens"] < raw["cached_tokens"]
                 for mine, raw in zip(framework_calls, work_calls(report["runs"]["raw A"]["calls"]))):
            errors.append(f"{who}: the framework's calls hit the prefix cache less than the raw run's: "
                          f"{call_signature(framework_calls)} vs {raw_a}")
        if raw_a != ref_raw:
            errors.append(f"{who}: raw calls {raw_a} differ from {reference['side']}'s {ref_raw}")
        for key in SETTINGS_CHECKED:
            mine, theirs = report["settings"].get(key), reference["settings"].get(key)
            if mine != theirs:
                errors.append(f"{who}: engine setting {key}={mine!r}, {reference['side']} has {theirs!r}")
    return errors


def repeat_of(report: dict) -> Repeat:
    """Framework wall time / mean of raw A and raw B, bracketed by those two (lower is better)."""
    runs = report["runs"]
    before, after = runs["raw A"]["wall_s"], runs["raw B"]["wall_s"]
    return Repeat(runs["framework"]["wall_s"] / ((before + after) / 2), before, after)


def generate_ratio(report: dict) -> float:
    """Time inside vllm.LLM.generate during the framework run / the same in the raw runs (mean)."""
    runs = report["runs"]
    gen = {phase: sum(c["generate_s"] for c in runs[phase]["calls"]) for phase in ("raw A", "framework", "raw B")}
    return gen["framework"] / ((gen["raw A"] + gen["raw B"]) / 2)


def same_texts(report: dict, reference: dict) -> tuple[int, int]:
    """How many of the framework's first lines (summaries + queries) equal the reference's raw run's."""
    mine, theirs = report["runs"]["framework"], reference["runs"]["raw A"]
    pairs = list(zip(mine["summaries"], theirs["summaries"])) + list(zip(mine["queries"], theirs["queries"]))
    total = len(theirs["summaries"]) + len(theirs["queries"])
    return sum(first_line_of(a) == first_line_of(b) for a, b in pairs), total


# -- running ------------------------------------------------------------------------------------------------
def run_child(side: str, repeat: int, job: dict, work) -> dict:
    """One fresh child for ``side``; its report, with the parent's load average before and after."""
    job_path = work / f"{side}-{repeat}-job.json"
    out_path = work / f"{side}-{repeat}-out.json"
    job_path.write_text(json.dumps({**job, "side": side}), encoding="utf-8")
    env = child_env()
    if side == "polysynth":
        argv, cwd = [sys.executable, "-m", "bench.peers_child", str(job_path), str(out_path)], ROOT
    else:
        argv, cwd = [str(peers_venv.python()), str(BENCH_DIR / "peers_child.py"), str(job_path), str(out_path)], work
        env["PATH"] = f"{peers_venv.VENV / 'bin'}:{env.get('PATH', '')}"
    log_path = work / f"{side}-{repeat}.log"
    load_before = load_average()
    with timed() as t:
        code = run_to_end(argv, cwd=cwd, env=env, log_path=log_path, timeout_s=CHILD_TIMEOUT_S)
    if code != 0 or not out_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        errors = [line for line in tail if "Error" in line or "error" in line][-2:] or tail[-2:]
        if code == -9:
            code = "-9, SIGKILL: the kernel's OOM killer on a crowded machine, or a timeout"
        raise RuntimeError(f"{side} (repeat {repeat}) could not run (exit {code} after {t.wall_s:.0f} s): "
                           f"{' | '.join(errors)[:400]}; log in {log_path.relative_to(ROOT)}")
    report = json.loads(out_path.read_text(encoding="utf-8"))
    report.update(repeat=repeat, child_wall_s=t.wall_s, load_before=load_before, load_after=load_average())
    return report


def run(ctx: Context) -> Result:
    result = Result(NAME, TITLE)
    log("peers: preparing the peers' venv (cached after the first time)…")
    ok, install_s, message = peers_venv.ensure()
    result.add("peers venv", f"{message} ({peers_venv.VENV.relative_to(ROOT)}: {', '.join(peers_venv.REQUIREMENTS)})")
    if not ok:
        result.status = "could not run"
        result.notes.append(f"could not run: the peers' venv could not be installed: {message}")
        return result

    passages = ctx.n(2, minimum=2)
    languages = LANGUAGES[: max(1, min(len(LANGUAGES), round(len(LANGUAGES) * ctx.scale)))]
    repeats = max(REPEATS, int(ctx.shared.get("peers_repeats", REPEATS)))
    work = WORK / "peers"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = sap_config(passages, languages, work / "polysynth-out", overrides=POLYSYNTH_OVERRIDES)
    from synth.recipes.sap.recipe import SapRecipe

    records = [r for _, r in zip(range(passages), SapRecipe(config, None, None).read_records())]
    job = build_job(config, records, work)
    order = interleaved(repeats)
    reports: list[dict] = []
    failures: list[str] = []
    for index, (repeat, side) in enumerate(order, start=1):
        log(f"peers: child {index}/{len(order)}: {side}, repeat {repeat}/{repeats} "
            f"({passages} passages × {len(languages)} languages), load {load_average()}…")
        try:
            report = run_child(side, repeat, job, work)
        except RuntimeError as exc:  # one lost child (e.g. the OOM killer on a crowded machine) loses one repeat
            log(f"peers: {exc}")
            failures.append(str(exc))
            continue
        rep = repeat_of(report)
        log(f"peers: {side} framework/raw {rep.ratio:.3f} (raw A {rep.before_s:.1f} s, framework "
            f"{report['runs']['framework']['wall_s']:.1f} s, raw B {rep.after_s:.1f} s; drift {rep.drift:.0%})")
        reports.append(report)
    if not reports:
        raise RuntimeError("no child finished: " + " / ".join(failures))
    tabulate(result, reports, order, passages, languages, repeats)
    if failures:
        result.status = "failed"
        result.notes += [f"child failed (its repeat is missing): {failure}" for failure in failures]
    return result


def tabulate(result: Result, reports: list[dict], order: list[tuple[int, str]], passages: int, languages: list[str],
             repeats: int) -> None:
    """The figures, checks and notes of the children's ``reports`` (also usable on a partial set of them)."""
    errors = check_children(reports)
    by_side = {side: [r for r in reports if r["side"] == side] for side in SIDES}
    poly = by_side["polysynth"]
    calls = reports[0]["runs"]["raw A"]["calls"]
    result.add("work: passages × languages; calls (prompts per call); prompt / cached tokens per run",
               f"{passages} × {len(languages)} ({', '.join(languages)}); {len(calls)} ({', '.join(str(c['prompts']) for c in calls)}); "
               f"{sum(c['prompt_tokens'] for c in calls):,} / {sum(c['cached_tokens'] for c in calls):,}")
    result.add("order of the children (repeat: sides)", "; ".join(
        f"{n}: {' '.join(s[0].upper() for r, s in order if r == n)}" for n in range(1, repeats + 1)))
    result.add("engine (read back from vLLM, identical in every child)", {k: reports[0]["settings"].get(k) for k in
               ("dtype", "max_model_len", "block_size", "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching", "num_gpu_blocks")})

    kept = [r["runs"]["framework"]["kept_rows"] for r in poly]
    kept_rows = kept[0] if kept else 0
    verdicts = {}
    for side in [side for side in SIDES if by_side[side]]:
        reps = [repeat_of(r) for r in by_side[side]]
        v = verdicts[side] = verdict(reps)
        version = by_side[side][0]["version"] if by_side[side] else "?"
        label = side if side == "polysynth" else f"{side} {version}"
        result.headline.append(f"{label}: framework time / raw vLLM time in the same process: {v.describe()}")
        result.add(f"{side}: per repeat framework/raw (raw A s, framework s, raw B s, drift)", "; ".join(
            f"{x.ratio:.3f} ({x.before_s:.1f}, {r['runs']['framework']['wall_s']:.1f}, {x.after_s:.1f}, {x.drift:.0%}"
            f"{' INCONCLUSIVE' if x.inconclusive else ''})" for x, r in zip(reps, by_side[side])))
        result.add(f"{side}: generate-only framework/raw per repeat", " / ".join(f"{generate_ratio(r):.3f}" for r in by_side[side]))
        result.add(f"{side}: load average (1 min) before → after each child", "; ".join(
            f"{r['load_before'].split()[0]} → {r['load_after'].split()[0]}" for r in by_side[side]))
        result.add(f"{side}: one-time s (median): engine start / warm-up / framework start", " / ".join(
            f"{median([r[k] for r in by_side[side]]):.1f}" for k in ("engine_start_s", "warmup_s", "framework_start_s")))
        tokens = median([sum(c["completion_tokens"] for c in r["runs"]["framework"]["calls"]) for r in by_side[side]])
        wall = median([r["runs"]["framework"]["wall_s"] for r in by_side[side]])
        same = [same_texts(r, poly[0] if poly else r) for r in by_side[side]]
        all_same = all(a == b for a, b in same)
        cost = (per_kept_row(tokens, wall, kept_rows) if poly and all_same else
                "n/a (texts differ from polysynth's, so its kept rows do not apply)" if poly else
                "n/a (no polysynth child, whose checks decide the kept rows)")
        result.add(f"{side}: framework output tokens, tokens/s (median); cost per kept row", f"{tokens:.0f}, {tokens / wall:.2f}; {cost}")
        result.add(f"{side}: same texts as {'polysynth' if poly else 'its own'} raw run (per repeat)", ", ".join(f"{a}/{b}" for a, b in same))
    if poly:
        reasons = poly[0]["runs"]["framework"].get("reject_reasons") or {}
        result.add("rows kept / all rows (polysynth's checks; the peers' texts are the same)",
                   f"{kept_rows}/{poly[0]['runs']['framework'].get('rows', 0)}" + (f" (rejected: {reasons})" if reasons else ""))
    if "polysynth" in verdicts and not verdicts["polysynth"].inconclusive:
        for side in FRAMEWORKS:
            if side in verdicts and not verdicts[side].inconclusive:
                rel = verdicts[side].median / verdicts["polysynth"].median
                result.add(f"{side} / polysynth (medians of framework/raw; < 1: the peer is faster)", rel)
    for side in FRAMEWORKS:
        if by_side[side]:
            result.notes.append(f"{side} needed: " + "; ".join(dict.fromkeys(by_side[side][0]["patches"])) + ".")
    result.notes.append(
        "framework/raw = 1 means no cost over bare vLLM. polysynth's framework run is the whole SAP flow (Prefect, "
        "LID, dedup, Parquet shards, manifest, dataset card); a peer's is its two steps and a Parquet file of the "
        "queries. Engine start, warm-up and each framework's one-time start are outside the ratio.")
    if errors:
        result.status = "failed"
        result.headline.insert(0, f"CONSISTENCY CHECK FAILED ({len(errors)} mismatches): the sides did not do the same work")
        for error in errors[:12]:
            result.notes.append(f"mismatch: {error}")
    else:
        result.add("consistency check (calls, prompts per call, prompt + cached tokens, engine settings)",
                   f"passed for all {len(reports)} children")
    (WORK / "peers-reports.json").write_text(json.dumps([{k: v for k, v in r.items()} for r in reports], default=str))


def first_line_of(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip() if text else ""
