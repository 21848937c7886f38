#!/usr/bin/env bash
# Install what the test suite needs from outside PyPI: Wireshark's tshark and
# Prometheus's promtool (independent checkers the tests compare against), ffmpeg,
# PostgreSQL and Jasmin. Non-interactive.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v tshark >/dev/null 2>&1; then
  echo "test-deps: installing tshark from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get install -y -qq --no-install-recommends tshark >/dev/null
fi
tshark --version 2>/dev/null | head -n 1

# ffmpeg: content adaptation transcodes audio and video with it when it is installed (the
# tests cover both that and the path without it).
if ! command -v ffmpeg >/dev/null 2>&1; then
  echo "test-deps: installing ffmpeg from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi

# promtool, Prometheus's own checker of the alert rules and dashboard queries in conf/
# (Debian's prometheus package; its server is not started).
if ! command -v promtool >/dev/null 2>&1; then
  echo "test-deps: installing promtool from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>/dev/null | head -n 1

# PostgreSQL for the multi-node tests: use the one on 127.0.0.1:5432 when it answers,
# start the installed cluster when it does not, install it when there is none.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "test-deps: installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main
  # Loopback only, trust auth for local test connections (as these machines ship it).
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf/pg_hba.conf"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

# Jasmin, the SMSC-side SMPP server of the integration tests, in its own venv under
# .cache/jasmin (Redis and RabbitMQ too, where neither answers nor is installed). Fast once done.
bash "$(dirname "$0")/jasmin.sh" install
