#!/usr/bin/env bash
# The test command: bash tests/run.sh [pytest args]. Creates .venv on first use.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tools/ensure_venv.sh"
cd "$REPO_ROOT"
# Two workers (pytest-xdist; SEGZOO_TEST_WORKERS=0 runs in one process): much of a test is
# single-threaded (imports, file I/O, numpy), so two take about two thirds of the time of one on
# two cores. --dist loadfile keeps a file's tests on one worker: its module fixtures (an export,
# a synthetic dataset) are built once. (loadgroup would spread the e2e runs too, but xdist 3.8
# cannot tag groups under pytest 9.2: its node ids are no longer assignable.)
exec "$PY" -m pytest -q -n "${SEGZOO_TEST_WORKERS:-2}" --dist loadfile "$@"
