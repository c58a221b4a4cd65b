#!/usr/bin/env bash
# Create or reuse the virtual environment at .venv (repo root) and install nestbench into it,
# editable, with its dependencies and test tools. Re-installs only when pyproject.toml or
# setup.py changed since the last install. PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "nestbench: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=.venv/.nestbench-installed
want=$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "nestbench: installing into .venv (first time: a few minutes, torch is large)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$want" > "$stamp"
fi
