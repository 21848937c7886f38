#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install mmsc with its test and benchmark extras.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
      PY=$candidate; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 or newer is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Reinstall when the project metadata changed, or when a module that setup.py
# compiles with mypyc changed (its .so would otherwise shadow the new source).
stamp=.venv/.mmsc-installed
stale=""
if [ -f "$stamp" ]; then
  stale=$(find pyproject.toml setup.py protocol storage/_durable.c -name '*.py' -newer "$stamp" -o \
               -name pyproject.toml -newer "$stamp" -o -name '*.c' -newer "$stamp" | head -n 1)
fi
if [ ! -f "$stamp" ] || [ -n "$stale" ]; then
  echo "setup: installing mmsc into .venv (compiling the codec with mypyc takes a minute)"
  log=.venv/install.log
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
         .venv/bin/python -m pip install --disable-pip-version-check -e '.[test,bench]'; } \
       >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: pip install failed (full log: $log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
