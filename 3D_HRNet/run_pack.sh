#!/usr/bin/env bash
# 3D_HRNet end to end with the commands of 3D_HRNet/README.md (from 3D_HRNet/config.py), then the PyTorch
# reference on the same bins and one summary row: see `python3 -m common.run_pack --help`.
#   bash 3D_HRNet/run_pack.sh WORK_DIR [--quick] [--data-root DIR] [--weights-dir DIR] [--count N] [--skip-pytorch]
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-"$REPO_ROOT/.venv/bin/python"}
[ -x "$PY" ] || PY=python3
exec "$PY" -m common.run_pack 3D_HRNet "$@"
