#!/usr/bin/env bash
# Debian's prometheus (server + promtool) for the dashboard tests (tests/dashboards/): a real
# Prometheus scrapes a real hub and agent, and every query of dashboards/*.json runs against it.
# Only the binaries are used; the package's service is never started by the tests (each test
# starts its own server on 127.0.0.1 and stops it). Idempotent. Needs root (or sudo) for apt.
set -euo pipefail
if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
  echo "prometheus.sh: $(/usr/bin/prometheus --version 2>&1 | head -1) already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null || { echo "prometheus.sh: need root or sudo to apt-get install prometheus" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# policy-rc.d 101: the package must not start its own server (no systemd here; and the tests
# want their own on free ports).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -q --no-install-recommends prometheus
/usr/bin/prometheus --version 2>&1 | head -1
