"""Kill-and-resume harness: run a recipe in a subprocess, kill -9 it at seeded points, resume, compare.

The runner subprocess calls the same library entry point the flows wrap (``synth.pipeline.run_recipe``),
so kill points land in generation, part writing, manifest updates and finalisation alike.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

RUNNER = """
import json, sys
from synth.config import load_config
from synth.pipeline import run_recipe
config = load_config(sys.argv[1], overrides=json.loads(sys.argv[2]))
summary = run_recipe(config)
print("DONE", json.dumps({"generated": summary.batches_generated, "total": summary.batches_total}), flush=True)
"""


def start(config: Path, overrides: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(config), json.dumps(overrides)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def finish(config: Path, overrides: dict, timeout: float = 900) -> dict:
    proc = start(config, overrides)
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-3000:]
    line = next(l for l in stdout.splitlines() if l.startswith("DONE "))
    return json.loads(line[5:])


def batches_done(out: Path, recipe: str) -> int:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        return len(manifest["recipes"][recipe]["batches"])
    except (OSError, ValueError, KeyError):
        return 0


def kill_at(config: Path, overrides: dict, out: Path, recipe: str, after_batches: int, jitter: float, timeout: float = 600) -> bool:
    """Start a run and kill -9 it once the manifest shows ``after_batches`` done (+ jitter seconds).

    Returns False when the run finished before the kill point was reached.
    """
    proc = start(config, overrides)
    deadline = time.monotonic() + timeout
    try:
        while batches_done(out, recipe) < after_batches:
            if proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, "run did not reach the kill point in time"
            time.sleep(0.01)
        time.sleep(jitter)
        if proc.poll() is not None:
            return False
        os.kill(proc.pid, signal.SIGKILL)
        return True
    finally:
        proc.kill()
        proc.communicate()


def rows(out: Path, recipe: str) -> list[tuple[str, str]]:
    """(group, id) of every row in the final shards, kept and rejected."""
    found = []
    for path in sorted((out / recipe).glob("*/train-*.parquet")):
        found += [(path.parent.name, row_id) for row_id in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    return found


def crash_resume_check(config: Path, overrides: dict, tmp: Path, recipe: str, seed: int, points: int = 5) -> dict:
    """Uninterrupted run vs a run killed at ``points`` seeded points and resumed; returns what happened."""
    clean = tmp / "clean"
    finish(config, {**overrides, "output.dir": str(clean)})
    expected = rows(clean, recipe)
    total = batches_done(clean, recipe)
    crashed = tmp / "crashed"
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(0, total + 1), min(points, total + 1)))
    kills = 0
    for target in targets:
        kills += kill_at(config, {**overrides, "output.dir": str(crashed)}, crashed, recipe, target, rng.uniform(0, 0.3))
    resumed = finish(config, {**overrides, "output.dir": str(crashed)})
    got = rows(crashed, recipe)
    return {
        "expected": expected,
        "got": got,
        "kills": kills,
        "resumed": resumed,
        "temp_files": [str(p) for p in crashed.rglob(".tmp-*")],
        "lock_left": (crashed / ".lock").exists(),
    }
