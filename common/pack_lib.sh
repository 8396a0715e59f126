# Sourced by every <Pack>/run_pack.sh: argument parsing and the shared last step.
# Usage of a pack script: bash <Pack>/run_pack.sh WORK_DIR [--data-root DIR] [--weights-dir DIR]
#                           [--quick] [--count N] [--skip-pytorch]
# Without --data-root the pack writes a synthetic dataset in the real layout; without
# --weights-dir it writes demo weights (random values) in the original checkpoint format.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-"$REPO_ROOT/.venv/bin/python"}
[ -x "$PY" ] || PY=python3

parse_pack_args() {
    WORK="" DATA_ROOT="" WEIGHTS_DIR="" QUICK=0 COUNT="" SKIP_PYTORCH=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --data-root) DATA_ROOT=$(cd "$2" && pwd); shift 2 ;;
            --weights-dir) WEIGHTS_DIR=$(cd "$2" && pwd); shift 2 ;;
            --quick) QUICK=1; shift ;;
            --count) COUNT=$2; shift 2 ;;
            --skip-pytorch) SKIP_PYTORCH=1; shift ;;
            -*) echo "error: unknown option $1" >&2; exit 2 ;;
            *) WORK=$1; shift ;;
        esac
    done
    [ -n "$WORK" ] || { echo "error: give a work folder" >&2; exit 2; }
    prepare_work_folder "$WORK"
    WORK=$(cd "$WORK" && pwd)
    DATA_LABEL=${DATA_ROOT:-synthetic}
}

# A run starts from an empty work folder, so files of an earlier run (another input size,
# more images) never mix with this one's; the demo checkpoint is kept, it does not change.
# Only a folder this script made (marked) is emptied: a wrong path never loses user files.
WORK_MARKER=.segzoo-pack-work
prepare_work_folder() {
    local work=$1
    if [ -d "$work" ] && [ -n "$(ls -A "$work")" ]; then
        [ -f "$work/$WORK_MARKER" ] || {
            echo "error: $work: folder is not empty and was not made by run_pack.sh; give a new or empty folder" >&2
            exit 2
        }
        find "$work" -mindepth 1 -maxdepth 1 ! -name demo_weights ! -name "$WORK_MARKER" -exec rm -rf {} +
    fi
    mkdir -p "$work"
    touch "$work/$WORK_MARKER"
}

# weights_file NAME: the real file under --weights-dir, else a demo file in the work folder
# written by the pack's model.py (write_demo_checkpoint) on first use.
weights_file() {
    local name=$1
    if [ -n "$WEIGHTS_DIR" ]; then
        [ -f "$WEIGHTS_DIR/$name" ] || { echo "error: $WEIGHTS_DIR/$name: checkpoint not found" >&2; exit 2; }
        echo "$WEIGHTS_DIR/$name"
    else
        mkdir -p "$WORK/demo_weights"
        [ -f "$WORK/demo_weights/$name" ] || "$PY" -c "import model; model.write_demo_checkpoint('$WORK/demo_weights/$name')" >&2
        echo "$WORK/demo_weights/$name"
    fi
}

step() { printf '\n== %s: %s\n' "$PACK" "$*"; }
