#!/usr/bin/env bash
# Makes the Python reference stack (torch, transformers, ...) in a venv outside the
# repository. Only tools/reference and tools/bench need it; CI never does.
#   usage: tools/reference/setup_venv.sh [VENV_DIR]   (default: $TP_REF_VENV or /opt/transpolmo-ref)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-${TP_REF_VENV:-/opt/transpolmo-ref}}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
"$venv/bin/python" -c 'import torch, transformers; print("reference venv ok:", torch.__version__, transformers.__version__)'
echo "activate with: source $venv/bin/activate"
