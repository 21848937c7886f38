#!/usr/bin/env bash
# Set up the virtual environment if needed and run `mmsc serve` (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mmsc serve "$@"
