"""Helpers of the fault, bad-input, concurrency and secrets tests.

* :func:`synth_cli` runs ``python -m flows.cli ...`` in a subprocess (what a user's shell does) and returns the
  completed process; :func:`error_line` checks a failed run's stderr: no traceback, one ``error:`` line.
* :func:`fingerprint` hashes every file of an output directory, to prove a failed run left it as it was.
* :func:`disk_full` is a ``preexec_fn`` that caps the size of any file the child writes (``RLIMIT_FSIZE``);
  SIGXFSZ is ignored so a write past the cap fails with EFBIG instead of killing the process.
* :func:`read_only_dir` makes a directory unwritable even for root (see its docstring for what works where).
* :func:`earlier_entitycs_output` / :func:`earlier_sap_output` write a small finished output in-process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent
CONFIGS = ROOT / "data" / "configs"
# Prefect's console log lines ("20:28:03.218 | INFO    | ...") and the hint it prints when its temporary server starts.
PREFECT_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| ")
PREFECT_HINT = "See https://docs.prefect.io"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: offline, Prefect analytics off, wide lines, no colours."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        TOKENIZERS_PARALLELISM="false",
        COLUMNS="200",
        NO_COLOR="1",
    )
    env.update(extra)
    return env


def synth_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None, preexec_fn: Any = None,
              cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``synth ARGS`` in a subprocess; never hangs past ``timeout`` (the test fails instead)."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
        cwd=cwd,
        preexec_fn=preexec_fn,
    )


def start_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """Start ``synth ARGS`` in the background (stdout/stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or cli_env(),
        cwd=cwd,
    )


def error_line(proc: subprocess.CompletedProcess[str], *, prefect_logs: bool = False) -> str:
    """The one ``error: ...`` line of a failed run, after checking exit code 2 and that nothing else went wrong.

    Errors found before the run starts (config, input, output directory) are the only line on stderr. Errors
    during a run (disk full, endpoint down) happen inside the Prefect flow, whose own log lines ("Beginning flow
    run", "Finished in state Failed") are on stderr too: with ``prefect_logs`` those are allowed around it.
    """
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-4000:]
    assert proc.returncode == 2, f"exit {proc.returncode}\n{output[-4000:]}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if prefect_logs:
        lines = [line for line in lines if not PREFECT_LOG_LINE.match(line) and not line.startswith(PREFECT_HINT)]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr[-4000:]}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def fingerprint(out: Path) -> dict[str, str]:
    """sha256 of every file under ``out`` (relative path -> digest), except the runs' log files (``OUT/logs/``),
    which a failed run rightly adds to."""
    if not out.exists():
        return {}
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.relative_to(out).parts[0] != "logs"
    }


def temp_files(out: Path) -> list[str]:
    """Temp files a run left visible (the shard store names them ``.tmp-*``)."""
    return [str(path) for path in out.rglob(".tmp-*")] if out.exists() else []


def disk_full(limit_bytes: int):
    """A ``preexec_fn``: the child may not write any file past ``limit_bytes`` (writes fail with EFBIG)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[str]:
    """Make ``path`` unwritable for this test; yields how (``chmod``, ``chattr``).

    A non-root user is stopped by ``chmod 0555``. Root ignores permission bits, so as root the directory is
    made immutable (``chattr +i``: needs CAP_LINUX_IMMUTABLE and ext2/3/4, xfs or btrfs, which this project's
    machines and CI have). Where neither works the test is skipped; the "output path under a regular file"
    case covers an unwritable output for everyone.
    """
    import pytest

    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield "chmod"
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i failed ({done.stderr.strip()}): cannot make a directory read-only")
    try:
        yield "chattr"
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def earlier_entitycs_output(out: Path, limit: int = 40) -> Path:
    """A finished EntityCS run (no LLM) in ``out``: the "earlier output" a failed run must leave intact."""
    from synth.config_file import load_config
    from synth.pipeline import run_recipe

    config = load_config(CONFIGS / "entitycs.yaml", overrides={"input.limit": limit, "runner.batch_size": 20, "output.dir": str(out)})
    run_recipe(config)
    return out


def sap_config_text(input_path: Path, base_url: str, *, languages: list[str] = ("de", "zh"), batch_size: int = 16,
                    timeout_s: float = 10, max_retries: int = 2, task_retries: int = 0, extra: str = "") -> str:
    """A SAP config (YAML) whose engine is an OpenAI-compatible server at ``base_url`` (a fake one in tests)."""
    return (
        "recipe: sap\n"
        f"input:\n  path: {input_path}\n"
        f"languages: {json.dumps(list(languages))}\n"
        "engine:\n"
        "  backend: openai\n"
        f"  base_urls: [{base_url}]\n"
        "  model: fake-model\n"
        f"  timeout_s: {timeout_s}\n"
        f"  max_retries: {max_retries}\n"
        "sap:\n  summary_max_tokens: 16\n  query_max_tokens: 8\n"
        f"runner:\n  retries: {task_retries}\n  batch_size: {batch_size}\n" + extra
    )


def earlier_sap_output(out: Path, base_url: str) -> Path:
    """A finished SAP run (3 passages, engine at ``base_url``) in ``out``."""
    from synth.config_file import load_config
    from synth.pipeline import run_recipe

    config_path = out.parent / f"{out.name}-sap.yaml"
    config_path.write_text(sap_config_text(CORPUS / "sap" / "smaller_than_batch.jsonl", base_url), encoding="utf-8")
    run_recipe(load_config(config_path, overrides={"output.dir": str(out)}))
    return out


def shard_rows(out: Path, recipe: str) -> list[dict[str, Any]]:
    """Every row of a recipe's final shards (kept and rejected), with its group (language or ``_rejected``)."""
    import pyarrow.parquet as pq

    rows = []
    for path in sorted((out / recipe).glob("*/train-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            rows.append({**row, "_group": path.parent.name})
    return rows
