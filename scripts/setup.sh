#!/usr/bin/env bash
# Create .venv and install enginebench with the given extras (default: hf,test).
#   bash scripts/setup.sh             # CPU: transformers engine + tests
#   EXTRAS=hf,ollama bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${EXTRAS:-hf,test}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints/cpu.txt -e ".[${extras}]"
echo "enginebench installed in .venv with extras [${extras}]"
