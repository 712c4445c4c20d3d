"""``python -m bench [--scale S] [--only NAME,...] [--no-write]``: run the benchmarks, print, append to RESULTS.md.

Scale 1 is sized for ~10 minutes on 2 idle CPU cores (plus the one-time install of the peers' venv);
``--scale 4`` and up for bigger machines. Benchmarks run one after another in this process (one in-process
vLLM engine is shared by those that need it; servers and peers run as child processes, never at the same time).

Names: overhead, sap_calls, resume, lid, shards, engines, peers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM logs INFO lines to stdout otherwise

from bench.common import RESULTS, Context, Result, append_results, log, machine  # noqa: E402

ORDER = ["overhead", "sap_calls", "resume", "lid", "shards", "engines", "peers"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="workload multiplier (1 = ~10 min on 2 cores)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(ORDER)}")
    parser.add_argument("--no-write", action="store_true", help=f"print only, do not append to {RESULTS.name}")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()] or ORDER
    unknown = [name for name in wanted if name not in ORDER]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    names = [name for name in ORDER if name in wanted]

    info = machine()
    log(f"{info['cores']} cores, {info['cpu']}, {info['ram_gib']} GiB, load {info['load_avg_at_start']}; running {', '.join(names)}")
    ctx = Context(args.scale)
    results: list[Result] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        log(f"--- {module.TITLE}")
        try:
            result = module.run(ctx)
        except Exception as exc:  # a broken benchmark is reported, the others still run
            traceback.print_exc()
            result = Result(name, module.TITLE, status="failed")
            result.notes.append(f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        result.wall_s = time.perf_counter() - started
        results.append(result)
        print(result.text(), flush=True)
        if not args.no_write:  # append as we go, so a later crash keeps earlier figures
            append_results([result], info, args.scale, argv, header=(len(results) == 1))
    if not args.no_write:
        log(f"figures appended to {RESULTS}")
    from synth.llm import close_engines

    close_engines()
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # vLLM and Prefect leave non-daemon threads behind; every figure is written, so do not wait for them.
    os._exit(code)
