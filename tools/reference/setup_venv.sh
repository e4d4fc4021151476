#!/usr/bin/env bash
# Makes the Python reference stack (torch, transformers, sae-lens, ...) in a venv outside
# the repository. Only tools/reference and tools/bench need it; CI never does. Safe to
# run again: pip leaves what already matches requirements.txt alone.
#   usage: tools/reference/setup_venv.sh [VENV_DIR]   (default: $TP_REF_VENV or /opt/transpolmo-ref)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-${TP_REF_VENV:-/opt/transpolmo-ref}}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
"$venv/bin/python" -c 'import torch, transformers, sae_lens; print("reference venv ok:", torch.__version__, transformers.__version__, "sae_lens", sae_lens.__version__)'
echo "activate with: source $venv/bin/activate"
