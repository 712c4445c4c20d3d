"""Kill-and-resume harness: run a recipe in a subprocess, kill -9 it at seeded random moments, resume, compare.

The runner subprocess calls the library driver the flows use (``synth.pipeline.run_recipe``). Kill moments are
drawn uniformly over the uninterrupted run's duration, so they land anywhere: in generation, between a
segment's two writes, while shards are written and while the manifest and card are swapped in — not at batch
boundaries. ``kill_in_finalize`` waits for the first shard file of a new generation instead.
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
import yaml

RUNNER = """
import json, sys
from synth.config_file import load_config
from synth.pipeline import run_recipe
config = load_config(sys.argv[1], overrides=json.loads(sys.argv[2]))
print("STARTED", flush=True)
summary = run_recipe(config)
print("DONE", json.dumps({"generated": summary.units_generated, "total": summary.units_total}), flush=True)
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


def _kill(proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    return True


def kill_after(config: Path, overrides: dict, seconds: float) -> bool:
    """Start a run and kill -9 it ``seconds`` after it started; False when it finished first."""
    proc = start(config, overrides)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    try:
        return _kill(proc)
    finally:
        proc.kill()
        proc.communicate()


def kill_in_finalize(config: Path, overrides: dict, out: Path, recipe: str, delay: float) -> bool:
    """Kill -9 ``delay`` seconds after the first temp shard of a new generation appears under ``OUT/<recipe>``."""
    proc = start(config, overrides)
    try:
        while proc.poll() is None:
            if any((out / recipe).glob("*/.tmp-*")):
                time.sleep(delay)
                return _kill(proc)
            time.sleep(0.0005)
        return False
    finally:
        proc.kill()
        proc.communicate()


def rows(out: Path, recipe: str) -> list[tuple[str, str]]:
    """(group, id) of every row the committed generation publishes; checks the card and the disk agree."""
    manifest = json.loads((out / "manifest.json").read_text())
    paths = sorted(s["path"] for s in manifest["recipes"][recipe]["shards"])
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert sorted(p for c in card["configs"] if c["config_name"].startswith(recipe) for p in c["data_files"][0]["path"]) == paths
    assert sorted(str(p.relative_to(out)) for p in (out / recipe).glob("*/*.parquet")) == paths
    found = []
    for path in paths:
        found += [(Path(path).parent.name, i) for i in pq.read_table(out / path, columns=["id"]).column("id").to_pylist()]
    return found


def committed_is_whole(out: Path, recipe: str) -> bool:
    """After a kill: whatever manifest and README publish exists in full (no half-swapped generation)."""
    if not (out / "manifest.json").exists():
        return True
    manifest = json.loads((out / "manifest.json").read_text())
    shards = manifest["recipes"].get(recipe, {}).get("shards", [])
    if not all((out / s["path"]).exists() for s in shards):
        return False
    if (out / "README.md").exists():
        card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
        listed = [p for c in card.get("configs", []) if c["config_name"].startswith(recipe) for p in c["data_files"][0]["path"]]
        return all((out / p).exists() for p in listed)
    return True


def crash_resume_check(
    config: Path, overrides: dict, tmp: Path, recipe: str, seed: int, points: int = 5, finalize_points: int = 0
) -> dict:
    """Uninterrupted run vs a run killed at ``points`` random moments (and ``finalize_points`` moments inside
    finalize, each after a change of ``output.shard_rows`` so a new generation is written), then resumed."""
    clean = tmp / "clean"
    started = time.monotonic()
    finish(config, {**overrides, "output.dir": str(clean)})
    duration = time.monotonic() - started
    expected = rows(clean, recipe)
    crashed = tmp / "crashed"
    crashed_overrides = {**overrides, "output.dir": str(crashed)}
    rng = random.Random(seed)
    kills, whole = 0, []
    for moment in sorted(rng.uniform(0.5, duration) for _ in range(points)):
        kills += kill_after(config, crashed_overrides, moment)
        whole.append(committed_is_whole(crashed, recipe))
    finalize_kills = 0
    for number in range(finalize_points):
        # another shard size: finalize must write a new generation while the previous one stays published
        finish(config, {**crashed_overrides, "output.shard_rows": 1000 + number})
        finalize_kills += kill_in_finalize(
            config, {**crashed_overrides, "output.shard_rows": 3 + number}, crashed, recipe, rng.uniform(0, 0.05)
        )
        whole.append(committed_is_whole(crashed, recipe))
    resumed = finish(config, crashed_overrides)
    return {
        "expected": expected,
        "got": rows(crashed, recipe),
        "kills": kills,
        "finalize_kills": finalize_kills,
        "whole_after_each_kill": whole,
        "resumed": resumed,
        "temp_files": [str(p) for p in crashed.rglob(".tmp-*")],
    }
