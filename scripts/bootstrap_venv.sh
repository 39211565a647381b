#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the project with its test tools, once per change
# of pyproject.toml. torch is pinned and installed first: an unpinned torch pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin=${PYTHON:-}
if [[ -z $python_bin ]]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin=$candidate; break; fi
  done
fi
[[ -n $python_bin ]] || { echo "bootstrap: no python3 found (need Python >= 3.11)" >&2; exit 2; }
"$python_bin" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "bootstrap: $python_bin is older than Python 3.11" >&2; exit 2; }

[[ -x .venv/bin/python ]] || "$python_bin" -m venv .venv
stamp=.venv/.tmws-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "bootstrap: installing into .venv (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
