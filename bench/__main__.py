"""``python -m bench [--scale S] [--only NAME,...] [--no-write] [--device cpu|gpu]``: run the benchmarks, print, append to RESULTS.md.

Scale 1 is sized for ~10 minutes on 2 idle CPU cores (plus the one-time install of the peers' venv);
``--scale 4`` and up for bigger machines. Benchmarks run one after another in this process (one in-process
vLLM engine is shared by those that need it; servers and peers run as child processes, never at the same time).

Names: overhead, sap_calls, keep, resume, lid, answerability, shards, engines, peers, prefill.

``--device gpu`` (on a machine with CUDA and the GPU build of vLLM; ``bench/gpu.sh`` installs it and runs this):
the overhead, engines and SAP-call benchmarks at a larger batch, the same tables, and the projected GPU-hours of
1M passages × 33 languages. Without CUDA it refuses with one line and exit status 2.
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

ORDER = ["overhead", "sap_calls", "keep", "resume", "lid", "answerability", "shards", "engines", "peers", "prefill", "prefix_warmup"]
GPU_ORDER = ["overhead", "engines", "sap_calls"]
GPU_SCALE = 8.0  # --device gpu without --scale: larger batches (a GPU is idle at the CPU's sizes)


def cuda_problem() -> str | None:
    """Why ``--device gpu`` cannot run here (``None``: CUDA and a CUDA build of torch are present)."""
    import shutil

    if not shutil.which("nvidia-smi") and not os.path.exists("/proc/driver/nvidia/version"):
        return "no NVIDIA driver (nvidia-smi not found)"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (the CPU build of torch/vLLM is installed; bench/gpu.sh installs the GPU build)"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="workload multiplier (1 = ~10 min on 2 cores)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(ORDER)}")
    parser.add_argument("--no-write", action="store_true", help=f"print only, do not append to {RESULTS.name}")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: overhead, engines and SAP calls on CUDA with larger batches (see bench/gpu.sh)")
    args = parser.parse_args(argv)
    if args.device == "gpu":
        problem = cuda_problem()
        if problem:
            print(f"python -m bench --device gpu: needs a CUDA GPU: {problem}; run bench/gpu.sh on a machine with CUDA",
                  file=sys.stderr)
            return 2
        if args.scale == 1.0:
            args.scale = GPU_SCALE
        from bench.common import ENGINE_OVERRIDES

        ENGINE_OVERRIDES["engine.dtype"] = "auto"
    wanted = [name.strip() for name in args.only.split(",") if name.strip()] or (GPU_ORDER if args.device == "gpu" else ORDER)
    unknown = [name for name in wanted if name not in ORDER]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    names = [name for name in ORDER if name in wanted]

    info = machine()
    log(f"{info['cores']} cores, {info['cpu']}, {info['ram_gib']} GiB, load {info['load_avg_at_start']}; running {', '.join(names)}")
    ctx = Context(args.scale, device=args.device)
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
    if args.device == "gpu":
        from bench.common import gpu_projection

        projection = gpu_projection(ctx)
        results.append(projection)
        print(projection.text(), flush=True)
        if not args.no_write:
            append_results([projection], info, args.scale, argv, header=False)
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
