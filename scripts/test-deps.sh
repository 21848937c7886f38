#!/usr/bin/env bash
# Install what the test suite needs from outside PyPI: Wireshark's tshark (the
# independent decoder the cross-check tests compare against). Non-interactive.
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
