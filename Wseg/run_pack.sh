#!/usr/bin/env bash
# Wseg end to end with the commands of Wseg/README.md (from Wseg/config.py), then the PyTorch
# reference on the same bins and one summary row: see `python3 -m common.run_pack --help`.
#   bash Wseg/run_pack.sh WORK_DIR [--quick] [--data-root DIR] [--weights-dir DIR] [--count N] [--skip-pytorch]
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-"$REPO_ROOT/.venv/bin/python"}
[ -x "$PY" ] || PY=python3
exec "$PY" -m common.run_pack Wseg "$@"
