#!/usr/bin/env bash
# The test command: bash tests/run.sh [pytest args]. Creates .venv on first use.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/ensure_venv.sh"
cd "$REPO_ROOT"
exec "$PY" -m pytest -q "$@"
