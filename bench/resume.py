"""5. Resume cost: rerunning a finished run (same config, same output) makes 0 LLM calls and takes ≤ 2 % of the
first run's wall time.

The finished run is benchmark 1's last SAP flow run when it ran in this process (else a small SAP flow run made
here). The rerun is measured three ways: the flow in this process (warm: engine, Prefect and LID already up), the
library driver ``run_recipe`` without Prefect, and ``synth run`` in a fresh process as a user would type it
(interpreter, imports and Prefect's ephemeral server start included). LLM calls are counted by the engine's own
prompt-token counter, which any generate call would move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.common import ORIGINAL_ENV, ROOT, WORK, Context, Result, log, per_kept_row, sap_config, timed

NAME = "resume"
TITLE = "5. Resume cost: rerun of a finished run"
GOAL = 0.02


def run(ctx: Context) -> Result:
    from flows.recipe import run_flow
    from synth.pipeline import run_recipe

    result = Result(NAME, TITLE)
    shared = ctx.shared.get("sap")
    if shared:
        config, first_wall = shared["config"], shared["pipeline"]["wall_s"]
        first = shared["pipeline"]["summary"]
        source = f"benchmark 1's flow run ({shared['passages']} passages × {len(shared['languages'])} languages)"
    else:
        from bench.overhead import warm_up

        passages = ctx.n(2)
        config = sap_config(passages, ["de", "hi", "sw", "zh"], WORK / "resume")
        warm_up(ctx, config)
        import shutil

        shutil.rmtree(WORK / "resume", ignore_errors=True)
        log(f"resume: first SAP flow run on {passages} passages…")
        with timed() as t:
            first = run_flow(config)
        first_wall, source = t.wall_s, f"a SAP flow run here ({passages} passages × 4 languages)"
    engine = ctx.engine(config)
    before = engine.prefix_cache_stats()["prompt_tokens"]

    with timed() as t_flow:
        summary = run_flow(config)
    with timed() as t_lib:
        lib_summary = run_recipe(config)
    calls_tokens = engine.prefix_cache_stats()["prompt_tokens"] - before

    # As a user would: a fresh process running `synth run` with the same config and output.
    config_path = WORK / "resume-config.json"
    config_path.write_text(config.model_dump_json())
    code = (
        "import json,sys,time; t=time.perf_counter()\n"
        "from synth.config import SapConfig\n"
        "from flows.recipe import run_flow\n"
        "c=SapConfig.model_validate_json(open(sys.argv[1]).read())\n"
        "s=run_flow(c)\n"
        "print('RESULT', json.dumps({'generated': s['units_generated'], 'in_process_s': time.perf_counter()-t}))\n"
    )
    env = {**ORIGINAL_ENV, "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    log("resume: rerun in a fresh process…")
    with timed() as t_cli:
        proc = subprocess.run([sys.executable, "-c", code, str(config_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    fresh = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            fresh = json.loads(line[7:])

    share = t_flow.wall_s / first_wall
    result.goal("rerun wall / first run wall (flow, warm process)", share, GOAL, higher_is_better=False)
    result.goal("LLM calls made by the reruns (prompt tokens sent)", float(calls_tokens), 0.0, higher_is_better=False)
    result.add("first run", source)
    result.add("first run wall s (engine start excluded)", first_wall)
    first_tokens = first["usage"]["completion_tokens"]
    result.add("first run: output tokens/s; cost per kept row", f"{first_tokens / max(first_wall, 1e-9):.2f}; "
               + per_kept_row(first_tokens, first_wall, sum(first["kept"].values())))
    result.add("rerun: units generated (flow / run_recipe)", f"{summary['units_generated']} / {lib_summary.units_generated}")
    result.add("rerun wall s: flow (Prefect) / run_recipe (no Prefect)", f"{t_flow.wall_s:.3f} / {t_lib.wall_s:.3f}")
    result.add("rerun / first: run_recipe", t_lib.wall_s / first_wall)
    if fresh is not None:
        result.add("rerun in a fresh process: total wall s (interpreter, imports, Prefect server) / after imports",
                   f"{t_cli.wall_s:.2f} / {fresh['in_process_s']:.2f}")
        result.add("fresh-process rerun / (first run + engine start)", t_cli.wall_s / (first_wall + (ctx.engine_start_s or 0)))
        result.add("fresh-process rerun: units generated", fresh["generated"])
    else:
        result.notes.append(f"fresh-process rerun failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:] }")
    result.notes.append(
        "A rerun still re-reads the input to plan batches, rebuilds the final shards from the parts (re-reading, "
        "re-compressing, fsync and sha256 of every shard) and rewrites the dataset card; with a finished "
        "manifest those could be skipped."
    )
    return result
