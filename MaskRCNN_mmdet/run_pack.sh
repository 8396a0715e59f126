#!/usr/bin/env bash
# MaskRCNN_mmdet end to end with the commands of MaskRCNN_mmdet/README.md (from MaskRCNN_mmdet/config.py), then the PyTorch
# reference on the same bins and one summary row: see `python3 -m common.run_pack --help`.
#   bash MaskRCNN_mmdet/run_pack.sh WORK_DIR [--quick] [--data-root DIR] [--weights-dir DIR] [--count N] [--skip-pytorch]
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-"$REPO_ROOT/.venv/bin/python"}
[ -x "$PY" ] || PY=python3
exec "$PY" -m common.run_pack MaskRCNN_mmdet "$@"
