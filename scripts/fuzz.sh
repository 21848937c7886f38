#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders (fuzz/run.py): sets up the venv, installs
# atheris (the "fuzz" extra), then runs every target or those named, e.g.
#   bash scripts/fuzz.sh --seconds 600 mm7 uaprof
# Exit status 1 if a target found an input that lets anything but DecodeError out.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if ! .venv/bin/python -c "import atheris" 2>/dev/null; then
  echo "fuzz: installing atheris into .venv"
  .venv/bin/python -m pip install -q "atheris>=2.3"
fi
exec .venv/bin/python -m fuzz.run "$@"
