#!/usr/bin/env bash
# Installs Debian packages for the tests, once: does nothing when every BINARY is already there.
#   scripts/apt-install.sh BINARY[,BINARY...] PACKAGE...
# (a BINARY may also be another file the packages install, e.g. a module: it need only exist)
# Needs root (or sudo) for apt. Package services are never started (policy-rc.d 101 during
# the install): the tests start their own servers on free ports.
set -euo pipefail
IFS=, read -r -a BINS <<< "$1"
shift
NAME="$(basename "${BINS[0]}")"
missing=0
for b in "${BINS[@]}"; do [ -e "$b" ] || missing=1; done
if [ "$missing" = 0 ]; then
  echo "apt-install: $("${BINS[0]}" --version 2>/dev/null | head -1) already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null || { echo "apt-install: need root or sudo to apt-get install $*" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "$@"
echo "apt-install: $NAME: $("${BINS[0]}" --version 2>/dev/null | head -1)"
