#!/usr/bin/env bash
# The main job: every pack end to end (the commands of its README), the PyTorch reference on
# the same bins, one summary table in results/summary.{json,md}, and results/report.html (the
# table with thumbnails of each pack's predictions and where PyTorch and the backend disagree).
#
#   bash run_all.sh [--quick] [--data-root DIR] [--weights-dir DIR] [--packs "RefineNet 3D_HRNet"]
#
# --data-root holds VOCdevkit/, cityscapes/ and coco/; --weights-dir the original checkpoint
# files under their published names. Without them: synthetic datasets and demo weights.
# Without --quick each pack runs at its guide's real input size on a few images.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/ensure_venv.sh"
cd "$REPO_ROOT"

PACKS="RefineNet 3D_HRNet PointRend Wseg MaskRCNN_mmdet"
PACK_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --packs) PACKS=$2; shift 2 ;;
        --quick) PACK_ARGS+=(--quick); shift ;;
        --data-root|--weights-dir) PACK_ARGS+=("$1" "$(realpath "$2")"); shift 2 ;;
        --count) PACK_ARGS+=("$1" "$2"); shift 2 ;;
        --skip-pytorch) PACK_ARGS+=("$1"); shift ;;
        -h|--help) sed -n 2,11p "$0"; exit 0 ;;
        *) echo "error: unknown option $1" >&2; exit 2 ;;
    esac
done

RESULTS="$REPO_ROOT/results"
mkdir -p "$RESULTS"
for pack in $PACKS; do
    if [ ! -f "$pack/run_pack.sh" ]; then
        echo "== $pack: not available yet (no $pack/run_pack.sh), skipped"
        continue
    fi
    rm -f "$RESULTS/$pack/summary_row.json"
    start=$SECONDS
    bash "$pack/run_pack.sh" "$RESULTS/$pack" ${PACK_ARGS[@]+"${PACK_ARGS[@]}"} 2>&1 | tee "$RESULTS/$pack.log"
    status=${PIPESTATUS[0]}
    echo "== $pack: exit $status after $((SECONDS - start)) s (log: results/$pack.log)"
done
"$PY" -m common.collect_summary "$RESULTS" --packs $PACKS
summary_status=$?
"$PY" -m common.html_report "$RESULTS"
report_status=$?
# a pack without a result fails the run first; a report that could not be written fails it too
[ "$summary_status" != 0 ] && exit "$summary_status"
exit "$report_status"
