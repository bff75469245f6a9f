#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/web/, marker `browser`). Playwright's own
# browser download cannot work offline/in CI here, so the tests drive /usr/bin/chromium.
# Idempotent: does nothing when chromium is already installed. Needs root (or sudo) for apt.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "browser.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null || { echo "browser.sh: need root or sudo to apt-get install chromium" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
