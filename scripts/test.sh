#!/usr/bin/env bash
# Set up and run the whole test suite: venv, test tools, lint, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k wsp).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/test-deps.sh

if [ ! -d "${MMSC_SHARED:-../shared}/corpus" ]; then
  echo "test: the shared corpus is missing (expected ${MMSC_SHARED:-../shared}/corpus)" >&2
  exit 1
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
# protocol/ is compiled by mypyc, which trusts its annotations: keep them exact
# (and the rest of the code typed as strictly).
.venv/bin/mypy --strict protocol mmsc storage

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
