#!/usr/bin/env bash
# RefineNet end to end with the commands of RefineNet/README.md (from RefineNet/config.py), then the PyTorch
# reference on the same bins and one summary row: see `python3 -m common.run_pack --help`.
#   bash RefineNet/run_pack.sh WORK_DIR [--quick] [--data-root DIR] [--weights-dir DIR] [--count N] [--skip-pytorch]
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-"$REPO_ROOT/.venv/bin/python"}
[ -x "$PY" ] || PY=python3
exec "$PY" -m common.run_pack RefineNet "$@"
