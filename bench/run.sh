#!/usr/bin/env bash
# Regenerate bench/RESULTS.md: `bash bench/run.sh [--quick] [--packs "RefineNet Wseg"] [...]`
# (the same as `python3 -m bench ...` from the repository root, inside the project's .venv).
# The full run takes about 25 minutes on a 2-core machine and needs a few GB under $TMPDIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/ensure_venv.sh"
cd "$REPO_ROOT"
# onnxsim / onnxslim are only tried by the tuning step (the `bench` extra of pyproject.toml)
"$PY" -c "import onnxsim, onnxslim" 2>/dev/null || "$PY" -m pip install --quiet -e "$REPO_ROOT[bench]" \
    || echo "warning: onnxsim/onnxslim not installed: the tuning table will say so" >&2
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --packs) read -r -a names <<< "$2"; ARGS+=(--packs "${names[@]}"); shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
exec "$PY" -m bench ${ARGS[@]+"${ARGS[@]}"}
