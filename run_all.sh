#!/usr/bin/env bash
# The main job: every pack end to end (the commands of its README), the PyTorch reference on
# the same bins, and one summary table in results/summary.{json,md}. Creates .venv on first use.
#
#   bash run_all.sh [--quick] [--data-root DIR] [--weights-dir DIR] [--packs "RefineNet 3D_HRNet"] [--count N]
#                   [--backend onnxruntime|openvino] [--precision fp32|bf16|fp16] [--skip-pytorch]
#
# --data-root holds VOCdevkit/, cityscapes/ and coco/; --weights-dir the original checkpoint
# files under their published names. Without them: synthetic datasets and demo weights.
# Without --quick each pack runs at its guide's real input size on a few images.
set -uo pipefail
# --help before anything is installed: the options are those of common/run_all.py.
for arg in "$@"; do
    case "$arg" in -h|--help) sed -n 2,9p "$0"; echo "(all options: python3 -m common.run_all --help, once .venv exists)"; exit 0 ;; esac
done
source "$(dirname "${BASH_SOURCE[0]}")/tools/ensure_venv.sh"
cd "$REPO_ROOT"
exec "$PY" -m common.run_all "$@"
