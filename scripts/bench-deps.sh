#!/usr/bin/env bash
# Install what the benchmarks read from outside the repository: the real photographs of
# Debian's mate-backgrounds (GPL) that research/performance.md §1.6 measured adaptation on.
# bench/adapt_bench.py reads them where the package installs them; they are never copied
# into the repository. Non-interactive, idempotent.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ ! -f /usr/share/backgrounds/mate/nature/Storm.jpg ]; then
  echo "bench-deps: installing mate-backgrounds from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends mate-backgrounds >/dev/null
fi
ls /usr/share/backgrounds/mate/nature/Storm.jpg
