# Sourced by run_all.sh and tests/run.sh: create .venv when missing and install the project.
# pip takes torch 2.14.1 / torchvision 0.29.1 from the machine's local wheel store when it has
# one; nothing else on the machine is assumed.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO_ROOT/.venv"
PY="$VENV/bin/python"
stamp="$VENV/.segzoo-installed"
# A venv whose creation was interrupted has a python but no pip: make it again.
if [ ! -x "$PY" ] || ! "$PY" -m pip --version >/dev/null 2>&1; then
    echo "creating $VENV"
    rm -rf "$VENV" "$stamp"
    python3 -m venv "$VENV" || { echo "error: python3 -m venv $VENV failed" >&2; exit 1; }
fi
# Reinstall only when pyproject.toml changed since the last install.
if [ ! -f "$stamp" ] || [ "$REPO_ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing segzoo and its dependencies into $VENV (first run: a few minutes)"
    "$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$PY" -m pip install --quiet -e "$REPO_ROOT[test]" 2>&1 | grep -v "^WARNING: Location" || true
    "$PY" -c "import common, refinenet, torch, onnxruntime" || { echo "error: installing into $VENV failed" >&2; exit 1; }
    touch "$stamp"
fi
export PY
